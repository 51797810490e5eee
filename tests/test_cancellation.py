"""Work stops when nobody waits for it: a client that disconnects, and a server told to stop.

A real `prism serve` process (MiniLM, Milvus Lite) gets an ingest of a few thousand documents, which
takes it minutes of CPU. The test watches the process's CPU time in /proc: after the client hangs up
it stops growing, and nothing was stored; after SIGTERM the process is gone within
PRISM_SHUTDOWN_TIMEOUT_S, the request answered 503.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.commands import minilm_env
from tests.servers import free_port, poll

# The work in flight is cancelled at half of this, and its answer must be out before uvicorn stops waiting
# (nine tenths): generous, so that a slow, busy machine still answers within the bound.
SHUTDOWN_TIMEOUT_S = 20
WORDS = "owl river stone lantern market violin harbour meadow copper garden winter signal bridge orchard".split()


def large_ingest(collection: str, documents: int = 3000) -> bytes:
    """A JSON body of `documents` distinct documents of about 150 words (one chunk each)."""
    rng = random.Random(7)
    docs = [{"id": f"d{i}", "text": f"Document {i}. " + " ".join(rng.choice(WORDS) for _ in range(150))} for i in range(documents)]
    return json.dumps({"collection": collection, "documents": docs}).encode()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of the process, all its threads, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy(pid: int, since: float, seconds: float) -> bool:
    return cpu_seconds(pid) - since >= seconds


def settled(pid: int, window_s: float = 1.0, most_s: float = 0.25) -> bool:
    """Whether the process used under `most_s` of CPU over the next `window_s` (a measurement window)."""
    before = cpu_seconds(pid)
    time.sleep(window_s)
    return cpu_seconds(pid) - before < most_s


@pytest.fixture
def server(tmp_path):
    """`prism serve` in a process of its own; yields (process, base URL). Killed if a test leaves it running."""
    port = free_port()
    env = minilm_env(
        tmp_path,
        PRISM_PORT=str(port),
        PRISM_WHISPER_MODEL="",
        PRISM_IMAGE_MODEL="",
        PRISM_RERANK_BACKEND="none",
        PRISM_SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_TIMEOUT_S),
        PRISM_MAX_DOCUMENTS_PER_REQUEST="5000",  # one request long enough to be cut off
    )
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve"], env=env, stdout=output, stderr=subprocess.STDOUT)
    process.log = log
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"prism serve exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        poll(ready, 300, "prism serve to be ready", interval=0.5)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_work_stops_when_the_client_disconnects(server, collection):
    process, url = server
    body = large_ingest(collection)
    head = f"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    start = cpu_seconds(process.pid)
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as client:
        client.sendall(head.encode() + body)
        poll(lambda: busy(process.pid, start, 3.0), 120, "the server to work on the ingest", interval=0.2)
    # The client has hung up: within a batch or two, the server stops.
    poll(lambda: settled(process.pid), 30, "the server's CPU time to stop growing", interval=0)
    assert httpx.get(f"{url}/v1/collections/{collection}/items").status_code == 404  # nothing stored
    # And it still serves.
    small = {"collection": collection, "documents": [{"id": "one", "text": "A single short document."}]}
    assert httpx.post(f"{url}/v1/documents", json=small, timeout=60).status_code == 200


def test_sigterm_stops_the_server_within_the_shutdown_timeout(server, collection):
    process, url = server
    answers: list[httpx.Response | Exception] = []

    def ingest() -> None:
        try:
            answers.append(httpx.post(f"{url}/v1/documents", content=large_ingest(collection), headers={"content-type": "application/json"}, timeout=300))
        except httpx.TransportError as error:
            answers.append(error)

    client = threading.Thread(target=ingest)
    start = cpu_seconds(process.pid)
    client.start()
    try:
        poll(lambda: busy(process.pid, start, 3.0), 120, "the server to work on the ingest", interval=0.2)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SHUTDOWN_TIMEOUT_S + 2)  # the bound, and time for the interpreter to exit
        except subprocess.TimeoutExpired:
            process.kill()  # so the client is not left waiting for the whole ingest
            pytest.fail(f"prism serve still runs {SHUTDOWN_TIMEOUT_S + 2} s after SIGTERM (PRISM_SHUTDOWN_TIMEOUT_S={SHUTDOWN_TIMEOUT_S})")
    finally:
        client.join(timeout=300)
    (answer,) = answers
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "shutting_down", process.log.read_text()[-3000:]
    assert "shutting down" in answer.json()["error"]["message"]
