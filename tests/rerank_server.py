"""A stand-in for SGLang's `POST /v1/rerank`, on a loopback port, backed by the in-process Qwen3 reranker.

It speaks the protocol as SGLang implements it (python/sglang/srt/entrypoints/openai/protocol.py and
serving_rerank.py): the request carries `query`, `documents`, optional `instruct`, `top_n` and
`return_documents`; blank queries and documents are refused with 400; the answer is a JSON list of
{"score", "index", "document" (when return_documents)} sorted by descending score, so a client that
ignored `index` would get the order wrong. Knobs for tests: answer the next requests with given error
statuses or a given raw body, and record every request seen.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from encoders.rerank_qwen3 import Qwen3Reranker
from tests.servers import serve_app


class RerankServer:
    """What the server saw, and how it should misbehave next."""

    def __init__(self, reranker: Qwen3Reranker):
        self.reranker = reranker
        self.requests: list[dict] = []  # JSON bodies, in arrival order
        self.headers: list[dict] = []
        self.fail_next: list[tuple[int, str]] = []  # (status, message), answered before any real work
        self.raw_next: list[str] = []  # bodies answered verbatim (status 200), after fail_next
        self.app = self._build_app()
        self.url = ""  # set by serve_rerank: the base URL, ending in /v1

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/rerank")
        async def rerank(request: Request):
            body = await request.json()
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            if self.fail_next:
                status, message = self.fail_next.pop(0)
                return error(status, message)
            if self.raw_next:
                return Response(self.raw_next.pop(0), media_type="application/json")
            query, documents = body.get("query"), body.get("documents")
            if not isinstance(query, str) or not query.strip():
                return error(400, "Query cannot be empty or whitespace only")
            if not documents:
                return error(400, "Documents cannot be empty")
            if any(not isinstance(doc, str) or not doc.strip() for doc in documents):
                return error(400, "Each document cannot be empty or whitespace only")
            scores = self.reranker.score(query, documents, instruction=body.get("instruct"))
            results = []
            for index, score in enumerate(scores.tolist()):
                item = {"score": score, "index": index}
                if body.get("return_documents", True):
                    item["document"] = documents[index]
                results.append(item)
            results.sort(key=lambda item: item["score"], reverse=True)
            return results[: body.get("top_n") or len(results)]

        return app

    def reset(self) -> None:
        self.requests.clear()
        self.headers.clear()
        self.fail_next.clear()
        self.raw_next.clear()


def error(status: int, message: str) -> JSONResponse:
    """SGLang's error body (ErrorResponse)."""
    return JSONResponse(
        {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": status},
        status_code=status,
    )


@contextmanager
def serve_rerank(reranker: Qwen3Reranker) -> Iterator[RerankServer]:
    """Serve `reranker` on a loopback port; the yielded server's `url` is the base URL (…/v1)."""
    server = RerankServer(reranker)
    with serve_app(server.app) as url:
        server.url = f"{url}/v1"
        yield server
