"""A stand-in for an OpenAI-compatible embeddings server (SGLang, vLLM, TEI) on a loopback port, that
misbehaves on demand: it answers with a given malformed body, or accepts requests and never answers.

While it behaves it answers `POST /v1/embeddings` in OpenAI's format with deterministic unit vectors
(derived from a hash of each text; the tests that use it are about faults, not meaning) and
`GET /v1/models` with its one model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.servers import serve_app

DIMENSION = 16

# A malformed answer, built from the texts of the request it answers.
Malformed = Callable[[list[str]], str]


def vector_of(text: str, dimension: int = DIMENSION) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimension)
    return (vector / np.linalg.norm(vector)).tolist()


def answer(embeddings: list, model: str = "standin") -> dict:
    data = [{"object": "embedding", "index": index, "embedding": embedding} for index, embedding in enumerate(embeddings)]
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 1, "total_tokens": 1}}


class StandInEmbeddings:
    """What the server saw, and how it answers next: `malformed` (a function of the texts) for every
    request while it is set, or nothing at all while `hanging` is set."""

    def __init__(self) -> None:
        self.malformed: Malformed | None = None
        self.hanging = False
        self.requests = 0  # embeddings requests received
        self.waiting = 0  # requests held open right now
        self.url = ""  # the base URL, ending in /v1, once served
        self.app = self._build_app()

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models():
            if await self._hang():
                return JSONResponse({"error": {"message": "released"}}, status_code=503)
            return {"object": "list", "data": [{"id": "standin", "object": "model"}]}

        @app.post("/v1/embeddings")
        async def embeddings(request: Request):
            body = await request.json()
            self.requests += 1
            if await self._hang():
                return JSONResponse({"error": {"message": "released"}}, status_code=503)
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            if self.malformed is not None:
                return Response(self.malformed(texts), media_type="application/json")
            # Token ids (a list of ids per input) are answered by their JSON: a vector per input all the same.
            return answer([vector_of(text if isinstance(text, str) else json.dumps(text)) for text in texts], body.get("model", "standin"))

        return app

    async def _hang(self) -> bool:
        """Hold the request while `hanging` is set (the client sees an open connection and no answer);
        True if it was held, so the caller answers 503 once released."""
        if not self.hanging:
            return False
        self.waiting += 1
        try:
            while self.hanging:
                await asyncio.sleep(0.05)
        finally:
            self.waiting -= 1
        return True

    def behave(self) -> None:
        self.malformed = None
        self.hanging = False


@contextmanager
def serve_embeddings() -> Iterator[StandInEmbeddings]:
    server = StandInEmbeddings()
    with serve_app(server.app) as url:
        server.url = f"{url}/v1"
        try:
            yield server
        finally:
            server.behave()  # release held requests, so the server can stop


def dumps(value) -> str:
    """JSON as Python writes it, NaN included (as some servers do)."""
    return json.dumps(value, allow_nan=True)
