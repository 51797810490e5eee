"""OpenAI-compatible POST /v1/chat/completions: Prism as a grounded chat model.

`model` names a Prism answer model, listed by GET /v1/models: `prism` answers from the default
collection, `prism:COLLECTION` from another. The last user message is the question (and what is
searched for); the turns before it are passed to the model as the conversation so far, and a system
message as the user's own instructions. The reply is the answer followed by its cited sources as a
numbered list with links (pictures, and recordings from the cited second), so any OpenAI chat client
(Open WebUI, the `openai` package) shows them; `citations` carries them as data too.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any, Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from api.answer_schemas import SSE, ChatChoiceOut, ChatCompletionIn, ChatCompletionOut, ChatMessageIn, ChatMessageOut, CitationOut, UsageOut
from api.errors import error_responses
from api.metrics import observe_stages
from api.routes.answer import STREAM_HEADERS, error_data, first_then_rest, get_generators, streamed_responses
from api.routes.deps import get_library
from encoders.generate import LazyGenerator
from retrieval import InvalidInput, Library, NotFound, Query
from retrieval.answer import Answer, AnswerRequest, AnswerRun
from retrieval.validation import COLLECTION_NAME_PATTERN

router = APIRouter(prefix="/v1", tags=["answers"])

MODEL_PREFIX = "prism"
DEFAULT_COLLECTION = "default"
SNIPPET_CHARS = 160
_COLLECTION = re.compile(f"^{COLLECTION_NAME_PATTERN}$")


def answer_model_ids(library: Library) -> list[str]:
    """`prism` (the default collection) and `prism:NAME` for every collection."""
    return [MODEL_PREFIX] + [f"{MODEL_PREFIX}:{info.name}" for info in library.store.list_collections()]


def collection_of(model: str) -> str:
    prefix, colon, name = model.partition(":")
    if prefix == MODEL_PREFIX and not colon:
        return DEFAULT_COLLECTION
    if prefix == MODEL_PREFIX and _COLLECTION.match(name):
        return name
    raise NotFound(f"model {model!r} is not a Prism answer model: use `prism` (the default collection) or `prism:COLLECTION`; GET /v1/models lists them")


def text_of(message: ChatMessageIn) -> str:
    if isinstance(message.content, list):
        return "\n".join(part.text for part in message.content if part.type == "text" and part.text)
    return message.content or ""


def without_sources(reply: str) -> str:
    """An earlier reply of ours without its source list: the model gets fresh sources every turn."""
    return re.split(r"\n\nSources( given to the model \(the answer cites none\))?:\n", reply, maxsplit=1)[0]


def conversation(messages: list[ChatMessageIn]) -> tuple[str, tuple[dict[str, str], ...], str | None]:
    """(question, history, instructions): the last user message, the user and assistant turns before
    it, and the system messages."""
    last = next((index for index in range(len(messages) - 1, -1, -1) if messages[index].role == "user"), None)
    if last is None:
        raise InvalidInput("messages has no user message: the last user message is the question")
    question = text_of(messages[last]).strip()
    if not question:
        raise InvalidInput(f"messages[{last}] (the last user message) has no text: it is the question")
    history = tuple(
        {"role": m.role, "content": without_sources(text_of(m)) if m.role == "assistant" else text_of(m)}
        for m in messages[:last]
        if m.role in ("user", "assistant") and text_of(m).strip()
    )
    instructions = "\n".join(text_of(m) for m in messages if m.role in ("system", "developer") and text_of(m).strip()) or None
    return question, history, instructions


def source_list(result: Answer, base_url: str) -> str:
    """The cited sources as a numbered list (or, when the answer cites none, the sources it was given)."""
    if result.nothing_found:
        return ""
    sources, heading = (result.citations, "Sources") if result.citations else (result.sources, "Sources given to the model (the answer cites none)")
    lines = []
    for source in sources:
        citation = CitationOut.of(source)
        snippet = " ".join(citation.text.split())
        snippet = snippet if len(snippet) <= SNIPPET_CHARS else snippet[:SNIPPET_CHARS].rstrip() + "…"
        link = f" {base_url}{citation.content_url}" if citation.content_url else ""
        lines.append(f'[{citation.n}] {citation.label}: "{snippet}"{link}')
    return f"\n\n{heading}:\n" + "\n".join(lines)


@router.post(
    "/chat/completions",
    response_model=ChatCompletionOut,
    summary="Chat with a collection: grounded, cited answers (OpenAI-compatible)",
    responses={**streamed_responses(ChatCompletionOut, "A chat completion, or with `stream: true` chat completion chunks as server-sent events."), **error_responses(400, 404, 413, 502)},
)
def chat_completions(body: ChatCompletionIn, request: Request, library: Library = Depends(get_library), generators: LazyGenerator = Depends(get_generators)):
    """For OpenAI chat clients. `model` is `prism` or `prism:COLLECTION`; the last user message is
    the question. The reply's content is the answer, then its sources as a numbered list; when no
    source reaches PRISM_ANSWER_MIN_SCORE it says the library has nothing on it (and `nothing_found`)."""
    settings = request.app.state.prism.settings
    collection = collection_of(body.model)
    question, history, instructions = conversation(body.messages)
    max_tokens = min(body.max_completion_tokens or body.max_tokens or settings.answer_max_tokens, settings.answer_max_tokens)
    answer_request = AnswerRequest(
        query=Query(text=question, collection=collection, top_k=settings.answer_top_k),
        question=question,
        min_score=settings.answer_min_score,
        max_tokens=max_tokens,
        temperature=body.temperature or 0.0,
        history=history,
        instructions=instructions,
    )
    run = library.answer(answer_request, generators.get)
    completion_id = f"chatcmpl-{secrets.token_hex(12)}"
    base_url = str(request.base_url).rstrip("/")
    if body.stream:
        return StreamingResponse(chunks(run, completion_id, body.model, base_url, max_tokens), media_type=SSE, headers=STREAM_HEADERS)
    result = run.result()
    observe_stages("chat", result.timings_ms)
    content = result.text + source_list(result, base_url)
    return ChatCompletionOut(
        id=completion_id,
        created=int(time.time()),
        model=body.model,
        choices=[ChatChoiceOut(message=ChatMessageOut(content=content), finish_reason=finish_reason(result, max_tokens))],
        usage=UsageOut(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens, total_tokens=result.prompt_tokens + result.completion_tokens),
        citations=[CitationOut.of(source) for source in result.citations],
        nothing_found=result.nothing_found,
    )


def finish_reason(result: Answer, max_tokens: int) -> str:
    return "length" if not result.nothing_found and result.completion_tokens >= max_tokens else "stop"


def chunks(run: AnswerRun, completion_id: str, model: str, base_url: str, max_tokens: int) -> Iterator[str]:
    """chat.completion.chunk events: the role, the answer's pieces, the source list, then the finish
    reason (with the citations as data), then [DONE]."""
    pieces = first_then_rest(run)  # errors before the first word still get their status
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def events() -> Iterator[str]:
        try:
            yield chunk({"role": "assistant", "content": ""})
            for piece in pieces:
                yield chunk({"content": piece})
            result = run.result()
            observe_stages("chat", result.timings_ms)
            yield chunk({"content": result.text if result.nothing_found else source_list(result, base_url)})
            citations = [CitationOut.of(source).model_dump(mode="json") for source in result.citations]
            yield chunk({}, finish_reason(result, max_tokens), citations=citations, nothing_found=result.nothing_found)
        except Exception as error:  # noqa: BLE001 - the status is sent already: OpenAI clients read `error` events
            yield f"data: {json.dumps(error_data(error), ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    return events()
