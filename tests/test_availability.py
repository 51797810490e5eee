"""Backends that are down: the server still starts, says which one is missing, and writes nothing."""

from contextlib import ExitStack

import httpx
import pytest

from api.app import create_app
from tests.conftest import minilm_settings
from tests.servers import free_port, poll, prism_server, serve_app


def not_ready_reason(url: str) -> str:
    """/readyz says only that the server is not ready; /v1/info (behind the key, when keys are set) says why."""
    assert httpx.get(f"{url}/readyz").status_code == 503
    return httpx.get(f"{url}/v1/info").json()["error"] or ""


def test_unreachable_milvus_server_is_reported_not_fatal(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with prism_server(minilm_settings(tmp_path, milvus_uri=dead), wait_ready=False) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        poll(lambda: dead in (httpx.get(f"{url}/v1/info").json()["error"] or ""), 120, "the store error")
        assert dead in not_ready_reason(url)
        response = httpx.post(f"{url}/v1/search", json={"query": {"text": "x"}})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "not_ready" and dead in response.json()["error"]["message"]


def test_unreachable_embedding_server_is_reported_not_fatal(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    settings = minilm_settings(tmp_path, text_backend="openai", text_model="default", openai_base_url=dead, openai_max_retries=1, openai_timeout_s=2)
    with prism_server(settings, wait_ready=False) as url:
        poll(lambda: httpx.get(f"{url}/readyz").status_code == 503 and dead in not_ready_reason(url), 60, "the encoder error")
        info = httpx.get(f"{url}/v1/info").json()
        assert info["ready"] is False and dead in info["error"]
        response = httpx.post(f"{url}/v1/documents", json={"documents": [{"text": "x"}]})
        assert response.status_code == 503 and dead in response.json()["error"]["message"]


def test_embedding_server_going_down_is_503_and_stores_nothing(tmp_path):
    """Prism on the `openai` backend, pointed at a second Prism that serves /v1/embeddings."""
    upstream_app = create_app(minilm_settings(tmp_path / "upstream"))
    with ExitStack() as upstream:
        upstream_url = upstream.enter_context(serve_app(upstream_app))
        assert upstream_app.state.prism.wait_loaded(300)
        settings = minilm_settings(
            tmp_path / "front", text_backend="openai", text_model="default", openai_base_url=f"{upstream_url}/v1", openai_max_retries=1, openai_timeout_s=5
        )
        with prism_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
            info = client.get("/v1/info").json()["models"]["text"]
            assert info["backend"] == "openai" and info["dimension"] == 384
            documents = [{"id": "tea", "text": "Green tea is brewed from unoxidised leaves."}, {"id": "rails", "text": "Trains run on steel rails."}]
            assert client.post("/v1/documents", json={"collection": "c", "documents": documents}).status_code == 200
            hits = client.post("/v1/search", json={"query": {"text": "a cup of tea"}, "collection": "c"}).json()["results"]
            assert hits[0]["doc_id"] == "tea"

            assert client.get("/readyz").json()["checks"]["text_encoder"] == "ok"
            assert client.get("/v1/info").json()["checks"]["text_encoder"] == "openai default ok"
            upstream.close()  # the embeddings server goes away
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["error"]["code"] == "encoder_unavailable"
            assert ready.json()["checks"]["text_encoder"] == "unavailable" and upstream_url not in ready.text
            assert upstream_url in client.get("/v1/info").json()["checks"]["text_encoder"]
            response = client.post("/v1/documents", json={"collection": "c", "documents": [{"id": "new", "text": "Never stored."}]})
            assert response.status_code == 503
            error = response.json()["error"]
            assert error["code"] == "encoder_unavailable" and upstream_url in error["message"]
            response = client.post("/v1/search", json={"query": {"text": "a brand new query"}, "collection": "c"})
            assert response.status_code == 503 and response.json()["error"]["code"] == "encoder_unavailable"
            # The store is untouched: the two documents and nothing else.
            (listed,) = client.get("/v1/collections").json()["collections"]
            assert listed["items"] == 2


def test_store_going_down_is_503_naming_it(tmp_path, milvus_server_process):
    """A real Milvus server that stops after the API started."""
    server = milvus_server_process(tmp_path / "milvus")
    settings = minilm_settings(tmp_path, milvus_uri=server.uri)
    with prism_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/v1/documents", json={"collection": "c", "documents": [{"text": "hello"}]}).status_code == 200
        server.stop()
        response = client.post("/v1/search", json={"query": {"text": "hello"}, "collection": "c"})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "store_unavailable" and server.uri in error["message"]
        response = client.get("/readyz")
        assert response.status_code == 503 and response.json()["error"]["code"] == "store_unavailable"
        assert response.json()["checks"]["store"] in ("unavailable", "not answering")
        assert server.uri in client.get("/v1/info").json()["checks"]["store"]


def test_unknown_backend_is_rejected_by_settings(tmp_path):
    with pytest.raises(ValueError, match="text_backend"):
        minilm_settings(tmp_path, text_backend="openai-typo")
