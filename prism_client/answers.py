"""Grounded answers (POST /v1/answer), whole or streamed, written once for both clients.

A streamed answer comes as server-sent events: `token` events with pieces of the answer, then one
`answer` event with the whole answer and its citations (or an `error` event if the model fails
midway). AnswerEvents reads them line by line, so the sync and the async client only feed it lines.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Sequence, TypedDict

from prism_client.calls import Call, FileInput, read_file
from prism_client.errors import AnswerFailedError, PrismError
from prism_client.types import Answer, Modality

PATH = "/v1/answer"


class AnswerOptions(TypedDict, total=False):
    """Options of an answer (see POST /v1/answer in /openapi.json); unset ones take the server's defaults."""

    collection: str
    modalities: Sequence[Modality] | None
    filters: dict[str, Any] | None
    top_k: int | None  # sources retrieved; default PRISM_ANSWER_TOP_K
    rerank: bool
    min_score: float | None  # relevance threshold; default PRISM_ANSWER_MIN_SCORE
    max_tokens: int | None  # default and at most PRISM_ANSWER_MAX_TOKENS
    temperature: float
    language: str | None  # of a spoken question


def answer_call(question: str | None, image: FileInput | None, audio: FileInput | None, options: AnswerOptions, stream: bool) -> Call:
    """Exactly one of a text question, a picture or an audio clip (whose transcript is the question)."""
    given = [(kind, value) for kind, value in (("text", question), ("image", image), ("audio", audio)) if value is not None]
    if len(given) != 1:
        raise ValueError("ask with one of: a question text, image=..., audio=...")
    kind, value = given[0]
    query = {kind: value if kind == "text" else base64.b64encode(read_file(value, "query")[1]).decode()}
    body: dict[str, Any] = {"query": query, **{key: value for key, value in options.items() if value is not None}, "stream": stream}
    if "modalities" in body:
        body["modalities"] = list(body["modalities"])
    return Call("POST", PATH, json=body)


class AnswerEvents:
    """Reads a streamed answer's lines: feed() returns a piece of text (a `token` event), the whole
    Answer (the last event), or None; an `error` event raises AnswerFailedError."""

    def __init__(self) -> None:
        self.event: str | None = None
        self.answer: Answer | None = None

    def feed(self, line: str) -> str | Answer | None:
        if line.startswith("event:"):
            self.event = line.removeprefix("event:").strip()
            return None
        if not line.startswith("data:"):
            return None  # a blank line ends an event; comments and ids are not used
        data = json.loads(line.removeprefix("data:").strip())
        if self.event == "token":
            return str(data["text"])
        if self.event == "error":
            error = data.get("error") or {}
            raise AnswerFailedError(f"the answer failed midway: {error.get('message')}", code=str(error.get("code", "error")), method="POST", path=PATH)
        if self.event == "answer":
            self.answer = data
            return self.answer
        return None

    def finished(self) -> None:
        """At the end of the stream: it must have carried the answer."""
        if self.answer is None:
            raise PrismError("the server ended the streamed answer without its `answer` event", code="incomplete_stream", method="POST", path=PATH)
