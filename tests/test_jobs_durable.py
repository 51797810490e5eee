"""A 202 means accepted: background jobs survive a crash of the server and a restart.

Real `prism serve` processes (MiniLM, Whisper tiny.en, Milvus Lite), espeak-ng speech, SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from retrieval.job_store import JobStore
from tests.audio_files import speak, spoken_recording
from tests.commands import minilm_env
from tests.conftest import minilm_settings
from tests.servers import free_port, poll, prism_server

SENTENCES = [
    "Welcome to the weekly news about our garden.",
    "The tomatoes are finally red and ready to pick.",
    "Next week we will talk about the weather and the rain.",
    "Thank you for listening and see you soon.",
]
START_S = 240  # loading MiniLM and Whisper on two busy cores
JOB_S = 300


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    data, _ = spoken_recording(SENTENCES, 1.5, tmp_path_factory.mktemp("speech"))
    return data


def server_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """A server whose uploads longer than 5 s become jobs; no CLIP and no reranker (not needed here)."""
    values = dict(
        PRISM_AUDIO_JOB_THRESHOLD_S="5",
        PRISM_AUDIO_WINDOW_S="8",
        PRISM_AUDIO_WINDOW_OVERLAP_S="2",
        PRISM_IMAGE_MODEL="",
        PRISM_RERANK_BACKEND="none",
    )
    values.update(overrides)
    return minilm_env(data_dir, **values)


@contextmanager
def prism_serve(env: dict[str, str], log: Path) -> Iterator[tuple[subprocess.Popen, httpx.Client]]:
    """`prism serve` as a subprocess, ready; killed at the end if the test did not kill it."""
    port = str(free_port())
    with open(log, "ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", port], env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:

            def ready() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"prism serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    return client.get("/readyz").status_code == 200
                except httpx.TransportError:
                    return False

            poll(ready, START_S, "prism serve to become ready", interval=0.2)
            yield process, client
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)


def job_state(client: httpx.Client, job_id: str) -> dict:
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, f"GET /v1/jobs/{job_id} -> {response.status_code}: {response.text}"
    return response.json()


def test_an_accepted_job_survives_sigkill_and_finishes_after_a_restart(tmp_path, recording):
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    env = server_env(data_dir)
    collection = "crash"

    with prism_serve(env, log) as (process, client):
        response = client.post("/v1/audio", data={"collection": collection}, files={"files": ("garden.wav", recording, "audio/wav")})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        poll(lambda: job_state(client, job_id)["state"] != "queued", JOB_S, "the job to start")
        assert job_state(client, job_id)["state"] == "running"
        os.kill(process.pid, signal.SIGKILL)  # mid-transcription: no shutdown code runs
        process.wait(timeout=60)

    with prism_serve(env, log) as (_, client):
        poll(lambda: job_state(client, job_id)["state"] in ("succeeded", "failed"), JOB_S, "the resumed job", interval=0.2)
        job = job_state(client, job_id)
        assert job["state"] == "succeeded", job
        assert job["progress"] == 1.0 and job["result"]["chunks"] >= 2
        recording_id = job["result"]["ids"][0]

        body = {"query": {"text": "the weather and the rain next week"}, "collection": collection, "modalities": ["audio"], "top_k": 1}
        (hit,) = client.post("/v1/search", json=body).json()["results"]
        assert hit["recording_id"] == recording_id and "weather" in hit["text"].lower()
        content = client.get(hit["content_url"].split("#")[0])
        assert content.status_code == 200 and content.content == recording
        # Run again from the start, not twice: the windows are there once.
        listed = {c["name"]: c["items"] for c in client.get("/v1/collections").json()["collections"]}
        assert listed[collection] == job["result"]["chunks"]

    # The saved upload went once the job had finished; its status stays.
    job_dir = data_dir / "jobs" / job_id
    assert (job_dir / "job.json").is_file() and not list(job_dir.glob("input-*"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An in-process server that accepts one background job at a time."""
    data_dir = tmp_path_factory.mktemp("prism-jobs")
    settings = minilm_settings(
        data_dir, audio_job_threshold_s=5, audio_window_s=8, audio_window_overlap_s=2, job_queue_size=1, image_model="", rerank_backend="none"
    )
    with prism_server(settings) as url, httpx.Client(base_url=url, timeout=120) as client:
        client.data_dir = data_dir
        yield client


def stored_things(client: httpx.Client, collection: str) -> tuple[list[str], list[Path], int]:
    """Job directories, blobs, and the collection's items."""
    listed = {c["name"]: c["items"] for c in client.get("/v1/collections").json()["collections"]}
    return sorted(os.listdir(client.data_dir / "jobs")), sorted((client.data_dir / "blobs").rglob("*")), listed.get(collection, 0)


def test_a_full_job_queue_answers_503_and_stores_nothing(server, collection, recording, tmp_path):
    store = JobStore(server.data_dir / "jobs")
    waiting = store.create("video-ingest", {}, [("film.mp4", b"...")])  # a kind no replica here runs: it waits
    try:
        before = stored_things(server, collection)
        response = server.post("/v1/audio", data={"collection": collection}, files={"files": ("garden.wav", recording, "audio/wav")})
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "overloaded" and "PRISM_JOB_QUEUE_SIZE=1" in error["message"]
        assert stored_things(server, collection) == before

        short = speak("The library opens at nine.", tmp_path / "short.wav").read_bytes()
        assert server.post("/v1/audio", data={"collection": collection}, files={"files": ("short.wav", short)}).status_code == 200
    finally:
        store.remove(waiting.id)


def test_a_job_keeps_every_file_and_the_form_fields_of_its_upload(server, collection, recording, tmp_path):
    short = speak("The library opens at nine.", tmp_path / "short.wav").read_bytes()
    files = [("files", ("garden.wav", recording, "audio/wav")), ("files", ("short.wav", short, "audio/wav"))]
    response = server.post("/v1/audio", data={"collection": collection, "language": "en", "metadata": '{"show": "garden"}'}, files=files)
    assert response.status_code == 202, response.text
    status_url = response.json()["status_url"]
    poll(lambda: server.get(status_url).json()["state"] in ("succeeded", "failed"), JOB_S, "the job", interval=0.2)
    job = server.get(status_url).json()
    assert job["state"] == "succeeded" and job["kind"] == "audio-ingest", job
    assert len(job["result"]["ids"]) == 2

    body = {"query": {"text": "library opens"}, "collection": collection, "modalities": ["audio"], "top_k": 1}
    (hit,) = server.post("/v1/search", json=body).json()["results"]
    assert hit["source"] == "short.wav" and hit["metadata"]["show"] == "garden" and hit["metadata"]["language"] == "en"
    assert server.get(hit["content_url"].split("#")[0]).content == short


def test_an_unknown_job_is_a_json_404(server):
    for job_id in ("0" * 32, "not-a-job"):
        response = server.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
