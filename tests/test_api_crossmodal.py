"""One query of any modality against a collection of text, pictures and recordings: routes, fusion
with provenance, and reranking, over the real API (tiny CLIP, MiniLM, Whisper tiny.en, a tiny Qwen3
reranker, Milvus Lite)."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from encoders.rerank import RerankerConfig, create_reranker
from tests.audio_files import speak
from tests.conftest import minilm_settings
from tests.image_files import encode
from tests.rerank_server import serve_rerank
from tests.servers import free_port, prism_server
from tests.tiny_clip import make_shape_image
from tests.tiny_rerankers import build_tiny_qwen3_reranker

COLLECTION = "mixed"
DOCUMENTS = [
    {"id": "train", "text": "The morning train to the city leaves at seven from platform two."},
    {"id": "library", "text": "The library opens at nine and lends books, films and music."},
    {"id": "weather", "text": "Next week brings rain and cold weather to the whole region."},
    {"id": "bread", "text": "Bake the bread for forty minutes until the crust is brown."},
]
SPOKEN = "When does the morning train to the city leave?"


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory):
    return build_tiny_qwen3_reranker(tmp_path_factory.mktemp("tiny-reranker"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_clip_dir, reranker_dir):
    data_dir = tmp_path_factory.mktemp("crossmodal")
    settings = minilm_settings(
        data_dir,
        image_model=f"local-dir:{tiny_clip_dir}",
        rerank_backend="qwen3",
        rerank_model=str(reranker_dir),
    )
    with prism_server(settings) as url, httpx.Client(base_url=url, timeout=120) as client:
        assert client.post("/v1/documents", json={"collection": COLLECTION, "documents": DOCUMENTS}).status_code == 200
        pictures = [("red-circle.png", encode(make_shape_image("red", "circle"), "PNG")), ("blue-square.png", encode(make_shape_image("blue", "square"), "PNG"))]
        response = client.post(
            "/v1/images",
            data={"collection": COLLECTION, "caption": ["A red ball on the platform before the morning train", ""]},
            files=[("files", picture) for picture in pictures],
        )
        assert response.status_code == 200, response.text
        recording = speak(SPOKEN, data_dir / "question.wav").read_bytes()
        response = client.post("/v1/audio", data={"collection": COLLECTION, "language": "en"}, files={"files": ("question.wav", recording)})
        assert response.status_code == 200, response.text
        client.recording = recording
        yield client


def search(client, **body):
    response = client.post("/v1/search", json={"collection": COLLECTION, "top_k": 20, **body})
    assert response.status_code == 200, response.text
    return response.json()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_text_query_returns_every_modality_with_provenance(server):
    result = search(server, query={"text": "the morning train to the city"})
    assert result["routes"] == {"ran": ["text->text", "text->image", "text->caption", "text->audio"], "skipped": {}}
    kinds = {r["modality"] for r in result["results"]}
    assert kinds == {"text", "image", "audio"}
    by_id = {r["doc_id"]: r for r in result["results"]}
    assert "text->text" in by_id["train"]["routes"]
    (window,) = [r for r in result["results"] if r["modality"] == "audio"]
    assert set(window["routes"]) == {"text->audio"}
    pictures = [r for r in result["results"] if r["modality"] == "image"]
    assert all("text->image" in r["routes"] for r in pictures)  # CLIP's text tower sees every picture
    captioned = next(r for r in pictures if r["caption"])
    assert set(captioned["routes"]) == {"text->image", "text->caption"}  # and the text encoder its caption
    for result_ in result["results"]:
        for name, route in result_["routes"].items():
            assert route["rank"] >= 1 and -1 <= route["score"] <= 1, name
    scores = [r["score"] for r in result["results"]]
    assert scores == sorted(scores, reverse=True)
    timings = result["timings_ms"]
    assert {"encode.text", "encode.clip-text", "search.text-space", "search.text->image", "fusion", "total"} <= set(timings)


def test_text_routes_compare_by_cosine_and_fuse_with_clip_by_rank(server):
    result = search(server, query={"text": "the morning train to the city"}, modalities=["text", "audio"])
    # Only the text encoder ran: one group, so scores are its cosines, and the train sentence (text)
    # and the spoken question (audio) are ordered by them.
    assert result["routes"]["ran"] == ["text->text", "text->audio"]
    for r in result["results"]:
        (route,) = r["routes"].values()
        assert r["score"] == pytest.approx(route["score"])
    mixed = search(server, query={"text": "the morning train to the city"})
    assert all(r["score"] < 0.05 for r in mixed["results"])  # RRF scores: sums of 1 / (60 + rank)


def test_a_picture_query_finds_pictures_text_and_recordings(server):
    query = encode(make_shape_image("red", "circle").resize((48, 48)), "JPEG", quality=60)
    result = search(server, query={"image": b64(query)})
    assert result["routes"]["ran"] == ["image->image", "image->text", "image->audio"]
    # Each route's first place ties in rank fusion; picture to picture goes first among them.
    top = result["results"][0]
    assert top["source"] == "red-circle.png" and top["routes"]["image->image"]["rank"] == 1
    kinds = {r["modality"] for r in result["results"]}
    assert kinds == {"text", "image", "audio"}
    assert all(set(r["routes"]) == {"image->text"} for r in result["results"] if r["modality"] == "text")
    assert all(set(r["routes"]) == {"image->audio"} for r in result["results"] if r["modality"] == "audio")


def test_a_spoken_query_takes_the_text_routes_through_its_transcript(server):
    response = server.post(
        "/v1/search/upload",
        data={"collection": COLLECTION, "modalities": "text,audio", "language": "en", "top_k": "3"},
        files={"file": ("q.wav", server.recording)},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert "train" in result["transcript"]["text"].lower()
    assert result["routes"]["ran"] == ["audio->text", "audio->audio"]
    assert {r["modality"] for r in result["results"]} == {"text", "audio"}
    assert result["timings_ms"]["transcribe"] > 0


def test_filters_min_score_and_per_modality_limit_hold_across_modalities(server):
    result = search(server, query={"text": "the morning train"}, filters={"source": ["red-circle.png", "question.wav"]})
    assert {r["source"] for r in result["results"]} == {"red-circle.png", "question.wav"}
    strict = search(server, query={"text": "the morning train to the city"}, min_score=0.5)
    for r in strict["results"]:
        assert all(route["score"] >= 0.5 for route in r["routes"].values())
    assert len(strict["results"]) < len(search(server, query={"text": "the morning train to the city"})["results"])
    limited = search(server, query={"text": "the morning train"}, per_modality_limit=1)
    modalities = [r["modality"] for r in limited["results"]]
    assert sorted(modalities) == ["audio", "image", "text"]
    # Each modality filled its own list: the text encoder's routes searched apart.
    assert {"search.text->text", "search.text->audio", "search.text->caption"} <= set(limited["timings_ms"])


def test_rerank_reorders_by_the_reranker_and_false_leaves_fusion_alone(server, reranker_dir):
    query = {"text": "the morning train to the city"}
    fused = search(server, query=query, modalities=["text", "image"])
    assert fused["rerank"] == {"applied": False, "model": None, "skipped": None}
    assert all(r["rerank_score"] is None for r in fused["results"])
    again = search(server, query=query, modalities=["text", "image"], rerank=False)
    assert [r["id"] for r in again["results"]] == [r["id"] for r in fused["results"]]

    reranked = search(server, query=query, modalities=["text", "image"], rerank=True, rerank_top_n=20)
    assert reranked["rerank"]["applied"] is True and reranked["rerank"]["model"] == str(reranker_dir)
    assert "rerank" in reranked["timings_ms"]
    # What the reranker thinks, asked directly: the text-bearing results must come in that order,
    # while the picture without a caption keeps its fused place.
    reranker = create_reranker(RerankerConfig(backend="qwen3", model=str(reranker_dir)))
    fused_results = fused["results"]
    readable = [r for r in fused_results if r["text"].strip()]
    scores = reranker.score(query["text"], [r["text"] for r in readable])
    expected = [readable[i]["id"] for i in np.argsort(-scores, kind="stable")]
    assert [r["id"] for r in reranked["results"] if r["text"].strip()] == expected
    assert expected != [r["id"] for r in readable], "the case needs a reranker that disagrees with recall"
    for place, r in enumerate(fused_results):
        if not r["text"].strip():
            assert reranked["results"][place]["id"] == r["id"] and reranked["results"][place]["rerank_score"] is None
    for r in reranked["results"]:
        if r["text"].strip():
            assert r["rerank_score"] == pytest.approx(float(scores[[x["id"] for x in readable].index(r["id"])]), abs=1e-5)


def test_rerank_of_only_the_top_n(server):
    query = {"text": "the morning train to the city"}
    fused = search(server, query=query, modalities=["text"])
    reranked = search(server, query=query, modalities=["text"], rerank=True, rerank_top_n=2)
    assert sorted(r["id"] for r in reranked["results"][:2]) == sorted(r["id"] for r in fused["results"][:2])
    assert [r["id"] for r in reranked["results"][2:]] == [r["id"] for r in fused["results"][2:]]
    assert all(r["rerank_score"] is None for r in reranked["results"][2:])


def test_stage_histograms_in_metrics(server):
    search(server, query={"text": "bread"}, rerank=True)
    metrics = server.get("/metrics").text
    for stage in ("encode.text", "search.text-space", "fusion", "rerank"):
        assert f'prism_stage_seconds_count{{operation="search",stage="{stage}"}}' in metrics, stage


def test_unknown_route_weights_are_rejected(server):
    response = server.post("/v1/search", json={"query": {"text": "x"}, "collection": COLLECTION, "fusion": {"weights": {"text->nowhere": 2}}})
    assert response.status_code == 400 and "unknown routes" in response.json()["error"]["message"]


def test_without_clip_or_reranker_routes_are_skipped_and_reported(prism_url, collection):
    """The session server has no CLIP weights and no reranker weights offline."""
    httpx.post(f"{prism_url}/v1/documents", json={"collection": collection, "documents": DOCUMENTS[:1]}).raise_for_status()
    result = httpx.post(f"{prism_url}/v1/search", json={"query": {"text": "train"}, "collection": collection, "rerank": True}, timeout=60).json()
    assert result["routes"]["ran"] == ["text->text", "text->caption", "text->audio"]
    assert "laion2b_s34b_b79k" in result["routes"]["skipped"]["text->image"]
    assert result["rerank"]["applied"] is False and "reranking is unavailable" in result["rerank"]["skipped"]
    assert result["results"][0]["doc_id"] == "train"
    picture = b64(encode(make_shape_image("red", "circle"), "PNG"))
    response = httpx.post(f"{prism_url}/v1/search", json={"query": {"image": picture}, "collection": collection}, timeout=60)
    assert response.status_code == 503 and "image search is unavailable" in response.json()["error"]["message"]


def test_reranking_through_an_sglang_rerank_server_and_when_it_is_down(tmp_path, reranker_dir, collection):
    """PRISM_RERANK_URL: the same scores from a server speaking SGLang's /v1/rerank; a server that is
    down costs the reordering, not the results, and the response names it."""
    reranker = create_reranker(RerankerConfig(backend="qwen3", model=str(reranker_dir)))
    body = {"query": {"text": "the morning train"}, "collection": collection, "rerank": True}
    with serve_rerank(reranker) as rerank_server:
        settings = minilm_settings(tmp_path / "up", image_model="", whisper_model="", whisper_fallback_model="", rerank_url=rerank_server.url, rerank_model="tiny-reranker")
        with prism_server(settings) as url:
            assert httpx.get(f"{url}/v1/info").json()["models"]["rerank"]["backend"] == "qwen3-http"
            httpx.post(f"{url}/v1/documents", json={"collection": collection, "documents": DOCUMENTS}).raise_for_status()
            result = httpx.post(f"{url}/v1/search", json=body, timeout=60).json()
    assert result["rerank"] == {"applied": True, "model": "tiny-reranker", "skipped": None}
    texts = [r["text"] for r in result["results"]]
    expected = reranker.score("the morning train", texts)
    assert [r["rerank_score"] for r in result["results"]] == pytest.approx(sorted(expected, reverse=True), abs=1e-5)
    assert rerank_server.requests and rerank_server.requests[0]["query"] == "the morning train"

    dead = f"http://127.0.0.1:{free_port()}/v1"
    settings = minilm_settings(tmp_path / "down", image_model="", whisper_model="", whisper_fallback_model="", rerank_url=dead, rerank_max_retries=0)
    with prism_server(settings) as url:
        httpx.post(f"{url}/v1/documents", json={"collection": collection, "documents": DOCUMENTS}).raise_for_status()
        response = httpx.post(f"{url}/v1/search", json=body, timeout=60)
    assert response.status_code == 200
    assert response.json()["rerank"]["applied"] is False and dead in response.json()["rerank"]["skipped"]
    assert len(response.json()["results"]) == len(DOCUMENTS)


def test_a_collection_lists_its_items_newest_first_a_page_at_a_time(server):
    first = server.get(f"/v1/collections/{COLLECTION}/items", params={"limit": 3}).json()
    total = first["total"]
    counted = next(c["items"] for c in server.get("/v1/collections").json()["collections"] if c["name"] == COLLECTION)
    assert total == counted == len(DOCUMENTS) + 2 + 1  # chunks, pictures (a captioned one once), one window
    pages = first["items"] + server.get(f"/v1/collections/{COLLECTION}/items", params={"limit": 3, "offset": 3}).json()["items"]
    pages += server.get(f"/v1/collections/{COLLECTION}/items", params={"limit": 3, "offset": 6}).json()["items"]
    assert len({item["id"] for item in pages}) == total == len(pages)
    assert {item["modality"] for item in pages} == {"text", "image", "audio"}
    stamps = [item["created_at"] for item in pages]
    assert stamps == sorted(stamps, reverse=True)
    picture = next(item for item in pages if item["modality"] == "image")
    assert picture["thumbnail_url"] == f"/v1/items/{picture['id']}/thumbnail"
    assert server.get("/v1/collections/no-such-collection/items").status_code == 404
