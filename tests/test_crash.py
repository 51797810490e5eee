"""What the server acknowledged survives `kill -9`, and a document always reads as one whole version.

A real `prism serve` on Milvus Lite (MiniLM, the tiny CLIP, Whisper tiny.en) is killed with SIGKILL at
random moments while writers re-ingest documents of varying length (several per request, and one at a
time), a picture (new captions) and a recording (new metadata). After each restart, and at the end:
- every acknowledged document reads as exactly one complete version, at least as new as acknowledged
  and no newer than what was sent;
- the CLIP copies of its chunks are exactly its current chunks (no ghosts of old versions, none missing);
- the picture and the recording read as one version in both vector spaces, their originals are served,
  and the blob store holds exactly their files;
- `prism doctor` finds nothing to repair.
Every word of a version's text names its document and version ("b3v7w12"), so a chunk matches the text
of one version only.
"""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from retrieval.blobs import BlobOwner, BlobStore
from tests.audio_files import speak
from tests.commands import minilm_env, prism
from tests.image_files import encode
from tests.servers import poll
from tests.tiny_clip import make_shape_image

COLLECTION = "crash"
BATCH_DOCS = [f"b{index}" for index in range(8)]  # re-ingested together, one request for all
SINGLE_DOCS = [f"s{index}" for index in range(3)]  # re-ingested one request each, longer texts
KILLS = 4


def document_text(doc_id: str, version: int) -> str:
    """Version `version` of a document: 6 to 120 words, so the number of chunks changes between versions."""
    words = 6 + (version * 37 + sum(map(ord, doc_id)) * 11) % (115 if doc_id.startswith("s") else 50)
    return " ".join(f"{doc_id}v{version}w{index}" for index in range(words)) + "."


@dataclass
class Ledger:
    """Per key (a document id, "picture", "recording"): the newest version acknowledged and sent."""

    acknowledged: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, keys: list[str]) -> int:
        with self.lock:
            version = max([self.sent.get(key, 0) for key in keys], default=0) + 1
            self.sent.update({key: version for key in keys})
            return version

    def acknowledge(self, keys: list[str], version: int) -> None:
        with self.lock:
            for key in keys:
                self.acknowledged[key] = max(self.acknowledged.get(key, 0), version)


class Server:
    """`prism serve` as a subprocess that the test can kill and start again on the same data."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.url = f"http://127.0.0.1:{env['PRISM_PORT']}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        poll(self._ready, 300, "the restarted server to be ready", interval=0.2)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"prism serve exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Writers:
    """Threads re-ingesting their keys until stopped; a request cut off by the kill is simply not acknowledged."""

    def __init__(self, url: str, ledger: Ledger, picture: bytes, recording: bytes) -> None:
        self.url, self.ledger, self.picture, self.recording = url, ledger, picture, recording
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def start(self) -> None:
        self.stopping.clear()
        loops = [self._batches, self._singles, self._media]
        self.threads = [threading.Thread(target=self._run, args=(loop,), daemon=True) for loop in loops]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def _run(self, loop) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stopping.is_set():
                try:
                    loop(client)
                except httpx.TransportError:
                    return  # the server was killed: this round is over

    def _check(self, response: httpx.Response, keys: list[str], version: int) -> None:
        if response.status_code == 200:
            self.ledger.acknowledge(keys, version)
        else:
            self.errors.append(f"{keys} v{version}: {response.status_code} {response.text[:300]}")

    def _batches(self, client: httpx.Client) -> None:
        version = self.ledger.send(BATCH_DOCS)
        documents = [{"id": doc_id, "text": document_text(doc_id, version)} for doc_id in BATCH_DOCS]
        self._check(client.post("/v1/documents", json={"collection": COLLECTION, "documents": documents}), BATCH_DOCS, version)

    def _singles(self, client: httpx.Client) -> None:
        for doc_id in SINGLE_DOCS:
            version = self.ledger.send([doc_id])
            body = {"collection": COLLECTION, "documents": [{"id": doc_id, "text": document_text(doc_id, version)}]}
            self._check(client.post("/v1/documents", json=body), [doc_id], version)

    def _media(self, client: httpx.Client) -> None:
        version = self.ledger.send(["picture"])
        form = {"collection": COLLECTION, "caption": f"a red circle picture caption v{version}"}
        self._check(client.post("/v1/images", data=form, files={"files": ("circle.png", self.picture)}), ["picture"], version)
        version = self.ledger.send(["recording"])
        form = {"collection": COLLECTION, "metadata": f'{{"v": {version}}}'}
        self._check(client.post("/v1/audio", data=form, files={"files": ("talk.wav", self.recording)}), ["recording"], version)


# ---------------------------------------------------------------- what must hold


def all_items(client: httpx.Client) -> list[dict]:
    response = client.get(f"/v1/collections/{COLLECTION}/items", params={"limit": 1000})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["items"]) == body["total"], "more items than one page: raise the limit"
    return body["items"]


def check_document(doc_id: str, chunks: list[dict], ledger: Ledger) -> None:
    acknowledged, sent = ledger.acknowledged.get(doc_id, 0), ledger.sent.get(doc_id, 0)
    if not chunks:
        assert acknowledged == 0, f"{doc_id}: acknowledged v{acknowledged} is gone"
        return
    # Chunks are cut by tokens, so a chunk may start inside a word: its version is the one whose text
    # it matches at its offsets (every word of a version names it, so no two versions match).
    versions = [
        version
        for version in range(1, sent + 1)
        if all(document_text(doc_id, version)[c["char_start"] : c["char_end"]] == c["text"] for c in chunks)
    ]
    assert len(versions) == 1, f"{doc_id}: its chunks are not one version ({[c['text'][:40] for c in chunks]})"
    version = versions[0]
    assert acknowledged <= version <= sent, f"{doc_id}: reads as v{version}, acknowledged v{acknowledged}, sent up to v{sent}"
    positions = sorted(chunk["position"] for chunk in chunks)
    assert positions == list(range(len(chunks))), f"{doc_id} v{version}: chunk positions {positions}"
    text = document_text(doc_id, version)
    assert min(c["char_start"] for c in chunks) == 0 and max(c["char_end"] for c in chunks) == len(text), f"{doc_id} v{version} is incomplete"


def check_clip_copies(client: httpx.Client, picture: bytes, doc_id: str, chunks: list[dict]) -> None:
    """A picture query over text (image->text) finds exactly the document's current chunks."""
    query = {
        "query": {"image": base64.b64encode(picture).decode()},
        "collection": COLLECTION,
        "modalities": ["text"],
        "filters": {"doc_id": doc_id},
        "top_k": 1000,
    }
    response = client.post("/v1/search", json=query)
    assert response.status_code == 200, response.text
    found = sorted((hit["id"], hit["text"]) for hit in response.json()["results"])
    assert found == sorted((chunk["id"], chunk["text"]) for chunk in chunks), f"{doc_id}: CLIP copies differ from its chunks"
    for chunk in chunks[:2]:
        assert client.get(f"/v1/items/{chunk['id']}").json()["text"] == chunk["text"], f"{doc_id}: GET item {chunk['id']}"


def check_media(client: httpx.Client, items: list[dict], ledger: Ledger, picture: bytes, recording: bytes) -> None:
    pictures = [item for item in items if item["modality"] == "image"]
    assert len(pictures) == 1, pictures
    caption_version = int(pictures[0]["caption"].rsplit("v", 1)[1])
    assert ledger.acknowledged["picture"] <= caption_version <= ledger.sent["picture"]
    assert client.get(pictures[0]["content_url"]).content == picture
    assert client.get(pictures[0]["thumbnail_url"]).status_code == 200
    search = {"query": {"text": "a red circle picture caption"}, "collection": COLLECTION, "modalities": ["image"], "top_k": 5}
    found = client.post("/v1/search", json=search).json()["results"]
    assert [hit["caption"] for hit in found] == [pictures[0]["caption"]], "the caption row and the picture disagree"

    windows = [item for item in items if item["modality"] == "audio"]
    assert windows, "the acknowledged recording is gone"
    versions = {window["metadata"]["v"] for window in windows}
    assert len(versions) == 1, f"the recording reads as several versions: {versions}"
    assert ledger.acknowledged["recording"] <= versions.pop() <= ledger.sent["recording"]
    assert sorted(window["position"] for window in windows) == list(range(len(windows)))
    assert client.get(windows[0]["content_url"].split("#")[0]).content == recording


def check_everything(client: httpx.Client, ledger: Ledger, picture: bytes, recording: bytes, blob_dir: Path) -> None:
    items = all_items(client)
    for doc_id in BATCH_DOCS + SINGLE_DOCS:
        chunks = [item for item in items if item["doc_id"] == doc_id]
        check_document(doc_id, chunks, ledger)
        check_clip_copies(client, picture, doc_id, chunks)
    check_media(client, items, ledger, picture, recording)
    originals = sorted(path.name for path in blob_dir.rglob("*.blob"))
    assert len(originals) == 3, f"the blob store should hold the picture, its thumbnail and the recording: {originals}"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> tuple[bytes, bytes]:
    folder = tmp_path_factory.mktemp("crash-media")
    picture = encode(make_shape_image("red", "circle"), "PNG")
    recording = speak("The quarterly budget meeting moved to Thursday afternoon.", folder / "talk.wav").read_bytes()
    return picture, recording


def test_acknowledged_writes_survive_kill_9_and_documents_read_as_one_version(tmp_path, tiny_clip_dir, media):
    picture, recording = media
    env = minilm_env(
        tmp_path / "data",
        PRISM_IMAGE_MODEL=f"local-dir:{tiny_clip_dir}",
        PRISM_RERANK_BACKEND="none",
        PRISM_CHUNK_TOKENS="24",
        PRISM_CHUNK_OVERLAP="4",
        PRISM_AUDIO_JOB_THRESHOLD_S="600",
        PRISM_LOG_LEVEL="INFO",
    )
    server = Server(env, tmp_path / "server.log")
    ledger = Ledger()
    rng = random.Random(13)
    try:
        server.start()
        writers = Writers(server.url, ledger, picture, recording)
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for loop in (writers._batches, writers._singles, writers._media):  # everything acknowledged once
                loop(client)
        assert not writers.errors, writers.errors
        for _ in range(KILLS):
            writers.start()
            threading.Event().wait(rng.uniform(1.0, 6.0))  # the kill lands wherever the writers are then
            server.kill()
            writers.stop()
            server.start()
            with httpx.Client(base_url=server.url, timeout=120) as client:
                check_everything(client, ledger, picture, recording, Path(env["PRISM_DATA_DIR"]) / "blobs")
        assert not writers.errors, writers.errors
        assert "doctor: no problems found" in server.log.read_text()  # the same check at every start
        doctor = prism("--url", server.url, "doctor", env=env)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "no problems" in doctor.stdout, doctor.stdout
        # A file nothing owns (as a crash between a delete's rows and its files would leave).
        BlobStore(Path(env["PRISM_DATA_DIR"]) / "blobs").put("img-orphan", b"x", "image/png", "x.png", BlobOwner("picture", COLLECTION, "img-gone"))
        found = prism("--url", server.url, "doctor", env=env)
        assert found.returncode == 1 and "orphan_blob" in found.stdout, found.stdout
        repaired = prism("--url", server.url, "doctor", "--fix", env=env)
        assert repaired.returncode == 0 and "repaired: orphan_blob" in repaired.stdout, repaired.stdout
    finally:
        server.stop()
