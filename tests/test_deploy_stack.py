"""The production shape without containers: Prism on an OpenAI-compatible embeddings server (a second
Prism serving /v1/embeddings, as SGLang would), a rerank server speaking SGLang's /v1/rerank, and a real
Milvus server, all on loopback, configured only through the settings docker-compose.yml sets."""

from __future__ import annotations

from contextlib import ExitStack

import httpx
from pymilvus import MilvusClient

from api.app import create_app
from encoders.rerank import RerankerConfig, create_reranker
from tests.conftest import minilm_settings
from tests.rerank_server import serve_rerank
from tests.servers import prism_server, serve_app
from tests.tiny_rerankers import build_tiny_qwen3_reranker

DOCUMENTS = [
    {"id": "tea", "text": "Green tea is brewed from unoxidised leaves."},
    {"id": "rails", "text": "Trains run on steel rails between cities."},
    {"id": "owls", "text": "Owls hunt small animals at night."},
]


def test_the_api_on_sglang_shaped_servers_and_a_milvus_server(tmp_path, milvus_server_uri):
    admin = MilvusClient(uri=milvus_server_uri)
    admin.create_database("prism_stack")
    admin.close()
    milvus_uri = f"{milvus_server_uri}/prism_stack"
    reranker = create_reranker(RerankerConfig(backend="qwen3", model=str(build_tiny_qwen3_reranker(tmp_path / "reranker"))))
    embedder_app = create_app(minilm_settings(tmp_path / "embedder", image_model="", whisper_model="", rerank_backend="none"))
    with ExitStack() as stack:
        embedder_url = stack.enter_context(serve_app(embedder_app))
        assert embedder_app.state.prism.wait_loaded(300)
        rerank_server = stack.enter_context(serve_rerank(reranker))

        def api_settings(**overrides):
            return minilm_settings(
                tmp_path / "api",
                text_backend="openai",
                text_model="default",
                openai_base_url=f"{embedder_url}/v1",
                milvus_uri=milvus_uri,
                rerank_url=rerank_server.url,
                rerank_model="Qwen/Qwen3-Reranker-4B",
                image_model="",
                whisper_model="",
                **overrides,
            )

        with prism_server(api_settings()) as url, httpx.Client(base_url=url, timeout=120) as client:
            assert client.get("/readyz").json()["checks"]["reranker"] == "ok"
            info = client.get("/v1/info").json()
            assert info["checks"]["text_encoder"] == "openai default ok"
            assert info["checks"]["store"] == "milvus ok"
            assert info["checks"]["reranker"] == "qwen3-http Qwen/Qwen3-Reranker-4B ok"
            assert info["checks"]["image_encoder"].startswith("disabled: images are disabled")
            assert info["models"]["text"]["dimension"] == 384  # learnt from the embeddings server
            assert info["store"] == {"kind": "milvus", "uri": milvus_uri}

            assert client.post("/v1/documents", json={"collection": "c", "documents": DOCUMENTS}).status_code == 200
            result = client.post("/v1/search", json={"query": {"text": "a cup of green tea"}, "collection": "c", "rerank": True}).json()
            assert result["rerank"] == {"applied": True, "model": "Qwen/Qwen3-Reranker-4B", "skipped": None}
            assert len(rerank_server.requests) == 1 and len(rerank_server.requests[0]["documents"]) == 3

        # The same store with the embeddings server asked for 128 dimensions: MiniLM was not trained for
        # Matryoshka truncation, so the embeddings server refuses (400) and the start fails with a clear
        # error reported by /v1/info; the stored vectors are untouched. (A store of another dimension is
        # refused with StoreMismatch: tests/test_store.py.)
        with prism_server(api_settings(text_dimensions=128), wait_ready=False) as url:
            response = _wait_for_start_failure(url, "Matryoshka")
            message = response.json()["error"]
            assert "dimensions" in message and "(400)" in message
    client = MilvusClient(uri=milvus_uri)
    try:
        assert client.query("prism_text", filter='collection == "c"', output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 3
    finally:
        client.close()


def _wait_for_start_failure(url: str, reason: str) -> httpx.Response:
    from tests.servers import poll

    responses: list[httpx.Response] = []

    def failed() -> bool:
        assert httpx.get(f"{url}/readyz").status_code == 503
        response = httpx.get(f"{url}/v1/info")  # the reason, which the public probe does not tell
        responses.append(response)
        return reason in response.text

    poll(failed, 120, f"the start to fail with {reason}")
    return responses[-1]
