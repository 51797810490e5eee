"""An embeddings server that misbehaves, seen through a real Prism server on the `openai` backend.

Malformed answers are a 502 naming the server and what was wrong, and store nothing; a server that
accepts connections and never answers costs each request one deadline (retries included), never the
liveness probe; and the public readiness probe tells status words only, the details being behind the key.
"""

from __future__ import annotations

import json
import math
import socket
import threading
from contextlib import contextmanager
from typing import Iterator

import httpx
import numpy as np
import pytest

from encoders.http import EncoderTimeout
from encoders.rerank import RerankerConfig
from encoders.rerank_http import SGLangReranker

from tests.conftest import minilm_settings
from tests.embeddings_standin import DIMENSION, answer, dumps, serve_embeddings, vector_of
from tests.servers import poll, prism_server

API_KEY = "upstream-faults-key"
TIMEOUT_S = 3.0  # PRISM_OPENAI_TIMEOUT_S of the server under test
STORED = "upstream_faults_stored"  # a collection filled while the stand-in behaved


def _nan_first(texts):
    vectors = [vector_of(text) for text in texts]
    vectors[0][0] = math.nan
    return dumps(answer(vectors))


def _ragged(texts):
    return dumps(answer([vector_of(text, DIMENSION - 1 if index == 0 else DIMENSION) for index, text in enumerate(texts)]))


def _zero_first(texts):
    return dumps(answer([[0.0] * DIMENSION] + [vector_of(text) for text in texts[1:]]))


# shape -> (what the error message must say about a request of several texts, the malformed answer)
SHAPES = {
    "missing embedding": ("no `embedding`", lambda texts: dumps({"data": [{"object": "embedding", "index": i} for i in range(len(texts))]})),
    "wrong dimension": (f"expected {DIMENSION}", lambda texts: dumps(answer([vector_of(text, 2 * DIMENSION) for text in texts]))),
    "ragged vectors": ("different lengths", _ragged),
    "NaN": ("not finite", _nan_first),
    "strings": ("not a list of numbers", lambda texts: dumps(answer([[str(x) for x in vector_of(text)] for text in texts]))),
    "zero vector": ("zero vector", _zero_first),
    "index out of range": ("index", lambda texts: dumps({"data": [{"index": len(texts), "embedding": vector_of(text)} for text in texts]})),
    "no data": ("data", lambda texts: dumps({"object": "list", "results": []})),
}


@pytest.fixture(scope="module")
def standin():
    with serve_embeddings() as server:
        yield server


@pytest.fixture(scope="module")
def prism_url(standin, tmp_path_factory):
    settings = minilm_settings(
        tmp_path_factory.mktemp("upstream-faults"),
        text_backend="openai",
        text_model="standin",
        openai_base_url=standin.url,
        openai_timeout_s=TIMEOUT_S,
        openai_max_retries=3,
        whisper_model="",
        image_model="",
        rerank_backend="none",
        api_keys=API_KEY,
    )
    with prism_server(settings) as url:
        with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            documents = [{"id": "tea", "text": "Green tea is brewed from leaves."}]
            assert client.post("/v1/documents", json={"collection": STORED, "documents": documents}).status_code == 200
        yield url


@pytest.fixture
def prism(prism_url, standin):
    standin.behave()
    with httpx.Client(base_url=prism_url, timeout=60, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client
    standin.behave()


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_malformed_embeddings_are_502_naming_the_server_and_store_nothing(prism, standin, collection, shape):
    fragment, malformed = SHAPES[shape]
    standin.malformed = malformed
    documents = [{"id": f"doc-{i}", "text": f"Document {i} about {shape}, never to be stored."} for i in range(3)]
    response = prism.post("/v1/documents", json={"collection": collection, "documents": documents})
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "encoder_error"
    assert standin.url in error["message"] and fragment in error["message"], error["message"]
    assert prism.get(f"/v1/collections/{collection}/items").status_code == 404  # nothing was stored

    response = prism.post("/v1/search", json={"query": {"text": f"a question about {shape}"}, "collection": STORED})
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "encoder_error" and standin.url in error["message"]
    items = prism.get(f"/v1/collections/{STORED}/items").json()
    assert [item["doc_id"] for item in items["items"]] == ["tea"]


def test_token_ids_go_to_the_embeddings_server_as_they_are(prism, standin):
    """The openai backend has no tokenizer: token ids are passed on (the stand-in answers each list by its
    JSON), counted in usage, and held to the model's limit (PRISM_TEXT_MAX_LENGTH) unless truncated."""
    ids = [[101, 2023, 7], [5, 6]]
    body = prism.post("/v1/embeddings", json={"input": ids}).json()
    np.testing.assert_allclose([item["embedding"] for item in body["data"]], [vector_of(json.dumps(each)) for each in ids], atol=1e-6)
    assert body["usage"]["prompt_tokens"] == 5
    limit = prism.get("/v1/info").json()["models"]["text"]["max_tokens"]
    long = {"input": [[7] * (limit + 1)]}
    error = prism.post("/v1/embeddings", json=long)
    assert error.status_code == 400 and f"at most {limit}" in error.json()["error"]["message"]
    cut = prism.post("/v1/embeddings", json={**long, "truncate": True}).json()
    np.testing.assert_allclose(cut["data"][0]["embedding"], vector_of(json.dumps([7] * limit)), atol=1e-6)
    assert cut["usage"]["prompt_tokens"] == limit


def test_a_server_that_never_answers_is_a_503_within_one_deadline(prism, standin):
    standin.hanging = True
    before = standin.requests
    # Retries share the one deadline: the answer comes after about TIMEOUT_S, not (1 + retries) times it.
    response = prism.post("/v1/search", json={"query": {"text": "is anybody there?"}, "collection": STORED}, timeout=2.5 * TIMEOUT_S)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "encoder_unavailable"
    assert standin.url in error["message"] and "did not answer" in error["message"]
    assert standin.requests - before == 1  # no retry could have finished in time, so none was started


def test_a_rerank_server_that_never_answers_costs_one_deadline():
    with silent_server() as (url, accepted):
        reranker = SGLangReranker(RerankerConfig(backend="qwen3", model="any", base_url=url, timeout_s=1.0, max_retries=3))
        try:
            with pytest.raises(EncoderTimeout, match="did not answer within 1 s"):
                reranker.score("a query", ["a document"])
        finally:
            reranker.close()
        assert len(accepted) == 1


@contextmanager
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A server that accepts connections, reads nothing and never answers; yields its base URL and
    the connections it accepted."""
    accepted: list[socket.socket] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.1)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    accepted.append(listener.accept()[0])
                except (socket.timeout, OSError):
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", accepted
        finally:
            stop.set()
            thread.join(timeout=5)
            for connection in accepted:
                connection.close()


def test_liveness_answers_while_many_searches_wait_on_a_hanging_server(prism_url, prism, standin):
    standin.hanging = True
    before = standin.requests
    answers: list[int] = []

    def search(number: int) -> None:
        with httpx.Client(base_url=prism_url, timeout=120, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            answers.append(client.post("/v1/search", json={"query": {"text": f"waiting query {number}"}, "collection": STORED}).status_code)

    threads = [threading.Thread(target=search, args=(number,)) for number in range(45)]
    for thread in threads:
        thread.start()
    try:
        poll(lambda: standin.requests - before >= 30, 30, "searches to reach the hanging server")
        health = httpx.get(f"{prism_url}/healthz", timeout=5)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        ready = httpx.get(f"{prism_url}/readyz", timeout=15)
        assert ready.status_code == 503
        body = ready.json()
        assert body["checks"]["text_encoder"] == "not answering"
        assert body["error"]["code"] == "encoder_unavailable" and "text_encoder" in body["error"]["message"]
    finally:
        standin.behave()
        for thread in threads:
            thread.join(timeout=120)
    assert len(answers) == 45 and set(answers) <= {200, 503}


def test_public_readiness_tells_status_words_and_the_key_tells_details(prism_url, prism, standin):
    ready = httpx.get(f"{prism_url}/readyz", timeout=15)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"store": "ok", "text_encoder": "ok", "image_encoder": "disabled", "audio_transcriber": "disabled", "reranker": "disabled"},
    }
    for secret in (standin.url, "127.0.0.1", "standin", "milvus"):
        assert secret not in ready.text

    assert httpx.get(f"{prism_url}/v1/info").status_code == 401
    info = prism.get("/v1/info").json()
    assert info["checks"]["text_encoder"] == "openai standin ok"
    assert info["checks"]["store"] == "milvus-lite ok"
    assert info["checks"]["image_encoder"].startswith("disabled: images are disabled")

    standin.hanging = True
    ready = httpx.get(f"{prism_url}/readyz", timeout=15)
    assert ready.status_code == 503 and ready.json()["checks"]["text_encoder"] == "not answering"
    assert standin.url not in ready.text
    info = prism.get("/v1/info", timeout=15).json()
    assert standin.url in info["checks"]["text_encoder"] and "not answering" in info["checks"]["text_encoder"]
