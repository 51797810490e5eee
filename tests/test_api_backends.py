"""The whole API on the other real backends: a Milvus server, and the in-process Qwen3 encoder."""

import httpx
from pymilvus import MilvusClient

from tests.conftest import minilm_settings
from tests.servers import prism_server
from tests.tiny_models import build_tiny_qwen3_embedding

DOCUMENTS = [
    {"id": "tea", "text": "Green tea is brewed from unoxidised leaves.", "metadata": {"kind": "drink"}},
    {"id": "rails", "text": "Trains run on steel rails between cities.", "metadata": {"kind": "transport"}},
]


def exercise(url: str) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        body = client.post("/v1/documents", json={"collection": "c", "documents": DOCUMENTS}).json()
        assert body["chunks"] == 2
        result = client.post("/v1/search", json={"query": {"text": "Green tea is brewed from unoxidised leaves."}, "collection": "c"}).json()
        assert result["results"][0]["doc_id"] == "tea"
        assert result["results"][0]["score"] > 0.99
        filtered = client.post("/v1/search", json={"query": {"text": "tea"}, "collection": "c", "filters": {"metadata": {"kind": "transport"}}}).json()
        assert [r["doc_id"] for r in filtered["results"]] == ["rails"]
        assert client.delete("/v1/documents/tea", params={"collection": "c"}).json() == {"deleted": 1}
        assert [c["items"] for c in client.get("/v1/collections").json()["collections"]] == [1]


def test_api_on_a_milvus_server(tmp_path, milvus_server_uri):
    admin = MilvusClient(uri=milvus_server_uri)
    admin.create_database("prism_api")
    admin.close()
    uri = f"{milvus_server_uri}/prism_api"
    with prism_server(minilm_settings(tmp_path, milvus_uri=uri)) as url:
        info = httpx.get(f"{url}/v1/info").json()
        assert info["store"] == {"kind": "milvus", "uri": uri}
        exercise(url)


def test_api_on_the_local_qwen3_backend(tmp_path):
    model_dir = build_tiny_qwen3_embedding(tmp_path / "tiny-qwen3")
    # A random model knows no meaning; with no query instruction, a query equal to a document must
    # find it with a score of ~1, which proves the path (tokenizer spans, pooling, store) end to end.
    settings = minilm_settings(tmp_path, text_backend="local", text_model=str(model_dir), text_fallback_model=None, text_query_task="")
    with prism_server(settings) as url:
        text = httpx.get(f"{url}/v1/info").json()["models"]["text"]
        assert text["backend"] == "local" and text["name"] == str(model_dir) and text["fallback_used"] is False
        exercise(url)
