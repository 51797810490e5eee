"""The text encoder's queues with the real MiniLM: queries that wait together share a forward pass, first
come first served; ingest work goes in bounded batches that take turns and never hold up a query; a
full queue refuses at once (503 over HTTP); cancelled work stops between batches. The real encoder is
watched (every pass recorded) and, where a test needs work to pile up, held at a gate in the model's
thread until the test opens it: threads are lined up with events and the queues' own counts, never
with sleeps, and nothing asserts on time."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence

import httpx
import numpy as np
import pytest

from api.app import create_app
from encoders.base import default_cpu_threads
from encoders.cancel import CancelToken, Cancelled, cancellation
from encoders.sentence_tf import SentenceTransformerEncoder
from encoders.config import TextEncoderConfig
from retrieval.batching import QueueFull
from retrieval.text_queue import QueuedTextEncoder, TextQueueConfig, queue_text_encoder
from tests.conftest import MINILM, minilm_settings
from tests.servers import poll, serve_app

WAIT = 60.0  # a deadline for what should take well under a second


class Watched:
    """The real encoder, watched: records every forward pass as (kind, texts); while a kind's gate is
    closed, its passes wait in the model's thread until the test opens it."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.info = encoder.info
        self.passes: list[tuple[str, list[str]]] = []
        self.gates: dict[str, threading.Event] = {}
        self.entered = {"query": threading.Event(), "document": threading.Event()}

    def hold(self, kind: str) -> threading.Event:
        self.gates[kind] = threading.Event()
        return self.gates[kind]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._pass("query", texts, self.encoder.embed_queries)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._pass("document", texts, self.encoder.embed_documents)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return self.encoder.token_spans(text)

    def _pass(self, kind: str, texts: Sequence[str], run: Callable) -> np.ndarray:
        self.passes.append((kind, list(texts)))
        self.entered[kind].set()
        gate = self.gates.get(kind)
        if gate is not None:
            assert gate.wait(WAIT), "the test never opened the gate"
        return run(texts)

    def texts_of(self, kind: str) -> list[list[str]]:
        return [texts for seen, texts in self.passes if seen == kind]


class InThread:
    """fn() in a thread of its own (a request), keeping what it returned or raised."""

    def __init__(self, fn: Callable, token: CancelToken | None = None) -> None:
        self.result = None
        self.error: BaseException | None = None
        self.token = token or CancelToken()
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable) -> None:
        try:
            with cancellation(self.token):
                self.result = fn()
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            self.error = error

    def join(self) -> InThread:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the call never returned"
        return self

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(TextEncoderConfig(backend="sentence-transformers", model=MINILM))


@pytest.fixture
def queued(minilm):
    """A factory of queued, watched encoders; every one is closed after the test."""
    made: list[QueuedTextEncoder] = []

    def make(batch_size: int = 32, queue_size: int = 1024) -> tuple[QueuedTextEncoder, Watched]:
        watched = Watched(minilm)
        made.append(QueuedTextEncoder(watched, TextQueueConfig(batch_size=batch_size, queue_size=queue_size)))
        return made[-1], watched

    yield make
    for encoder in made:
        encoder.close()


def wait_pending(lane, count: int) -> None:
    poll(lambda: lane.pending == count, WAIT, f"{count} texts waiting in {lane.name}")


def test_vectors_are_the_encoders_own(queued, minilm):
    encoder, _ = queued(batch_size=4)
    texts = [f"owls hunt mice at night ({index})" for index in range(10)]
    np.testing.assert_allclose(encoder.embed_documents(texts), minilm.embed_documents(texts), atol=1e-5)
    np.testing.assert_allclose(encoder.embed_queries(texts[:3]), minilm.embed_queries(texts[:3]), atol=1e-5)
    assert encoder.embed_documents([]).shape == (0, minilm.info.dimension)
    assert encoder.info == minilm.info and encoder.token_spans("two words") == minilm.token_spans("two words")


def test_queries_waiting_together_share_one_forward_pass(queued, minilm):
    encoder, watched = queued()
    gate = watched.hold("query")
    first = InThread(lambda: encoder.embed_queries(["the first query"]))
    assert watched.entered["query"].wait(WAIT)  # the model is busy with it
    texts = [f"a question about {topic}" for topic in ("owls", "rivers", "engines", "violins", "glaciers")]
    callers = [InThread(lambda text=text: encoder.embed_queries([text])) for text in texts]
    wait_pending(encoder.queries, len(texts))
    gate.set()
    results = [caller.join().result for caller in callers]
    assert first.join().error is None
    passes = watched.texts_of("query")
    assert len(passes) == 2 and sorted(passes[1]) == sorted(texts)  # five queries from five threads, one pass
    for text, vectors in zip(texts, results):  # each caller got the vector of its own text
        np.testing.assert_allclose(vectors[0], minilm.embed_queries([text])[0], atol=1e-5)


def test_queries_are_served_first_come_first_served(queued):
    encoder, watched = queued(batch_size=2)
    gate = watched.hold("query")
    InThread(lambda: encoder.embed_queries(["q0"]))
    assert watched.entered["query"].wait(WAIT)
    callers = []
    for index in range(1, 6):  # queued one after another: each waits until the previous one is in line
        callers.append(InThread(lambda index=index: encoder.embed_queries([f"q{index}"])))
        wait_pending(encoder.queries, index)
    gate.set()
    for caller in callers:
        assert caller.join().error is None
    assert watched.texts_of("query") == [["q0"], ["q1", "q2"], ["q3", "q4"], ["q5"]]


def test_a_query_never_waits_for_an_ingest_pass(queued):
    encoder, watched = queued(batch_size=4)
    gate = watched.hold("document")
    ingest = InThread(lambda: encoder.embed_documents([f"chunk {index} of a long document" for index in range(12)]))
    assert watched.entered["document"].wait(WAIT)  # an ingest pass holds the model's document lane
    query = InThread(lambda: encoder.embed_queries(["where do owls live"])).join()
    assert query.error is None and query.result.shape == (1, encoder.info.dimension)
    assert not ingest.done  # the query was answered while the ingest pass was still running
    gate.set()
    assert ingest.join().error is None and ingest.result.shape == (12, encoder.info.dimension)
    assert [len(texts) for texts in watched.texts_of("document")] == [4, 4, 4]  # bounded batches


def test_bulk_requests_take_turns_batch_by_batch(queued):
    encoder, watched = queued(batch_size=2)
    gate = watched.hold("document")
    large = InThread(lambda: encoder.embed_documents([f"large {index}" for index in range(6)]))
    assert watched.entered["document"].wait(WAIT)
    small = InThread(lambda: encoder.embed_documents(["small 0", "small 1"]))
    wait_pending(encoder.documents, 2)  # the small request's batch is in line behind the large one's first
    gate.set()
    assert large.join().error is None and small.join().error is None
    assert watched.texts_of("document") == [["large 0", "large 1"], ["small 0", "small 1"], ["large 2", "large 3"], ["large 4", "large 5"]]


def test_a_full_queue_refuses_at_once_and_queues_nothing(queued):
    encoder, watched = queued(batch_size=2, queue_size=2)
    gate = watched.hold("query")
    InThread(lambda: encoder.embed_queries(["busy"]))
    assert watched.entered["query"].wait(WAIT)
    waiting = [InThread(lambda index=index: encoder.embed_queries([f"waiting {index}"])) for index in range(2)]
    wait_pending(encoder.queries, 2)
    with pytest.raises(QueueFull, match="text-queries: queue full"):
        encoder.embed_queries(["one too many"])
    assert encoder.queries.pending == 2
    gate.set()
    assert all(caller.join().error is None for caller in waiting)
    assert ["one too many"] not in watched.texts_of("query")


def test_cancelled_work_stops_between_its_batches(queued):
    encoder, watched = queued(batch_size=2)
    gate = watched.hold("document")
    token = CancelToken()
    ingest = InThread(lambda: encoder.embed_documents([f"chunk {index}" for index in range(8)]), token)
    assert watched.entered["document"].wait(WAIT)
    token.cancel("the client went away")
    gate.set()
    assert isinstance(ingest.join().error, Cancelled)
    assert watched.texts_of("document") == [["chunk 0", "chunk 1"]]  # the batch in the model finished; no more


def test_close_fails_what_waits_and_closes_the_encoder(queued):
    encoder, watched = queued()
    gate = watched.hold("query")
    InThread(lambda: encoder.embed_queries(["busy"]))
    assert watched.entered["query"].wait(WAIT)
    waiting = InThread(lambda: encoder.embed_queries(["never run"]))
    wait_pending(encoder.queries, 1)
    closer = InThread(encoder.close)
    assert "batcher closed" in str(waiting.join().error)
    gate.set()
    assert closer.join().error is None


def test_http_backends_are_not_queued(minilm):
    queued = queue_text_encoder(minilm)
    assert isinstance(queued, QueuedTextEncoder)
    queued.close()

    class Remote:
        info = minilm.info.__class__(name="served", backend="openai", dimension=8, max_tokens=512)

    remote = Remote()
    assert queue_text_encoder(remote) is remote


def test_default_threads_are_half_the_cores():
    assert [default_cpu_threads(cores) for cores in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]


THREAD_POOLS = """
import json
import torch
from threadpoolctl import threadpool_info
from api.settings import Settings
from api.state import open_library
from encoders.base import default_cpu_threads

library = open_library(Settings())
print(json.dumps({
    "default": default_cpu_threads(),
    "torch": torch.get_num_threads(),
    "blas": sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}),
    "encoder": type(library.encoder).__name__,
}), flush=True)
library.close()
"""


def test_the_server_sizes_its_thread_pools_from_the_cores(tmp_path):
    from tests.commands import minilm_env

    env = minilm_env(tmp_path / "data", PRISM_IMAGE_MODEL="", PRISM_RERANK_BACKEND="none", PRISM_WHISPER_MODEL="", PRISM_CPU_THREADS="")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)  # this checkout's code, whatever is installed
    result = subprocess.run([sys.executable, "-c", THREAD_POOLS], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    pools = json.loads(result.stdout.strip().splitlines()[-1])
    assert pools["torch"] == pools["default"]
    assert pools["blas"] == [pools["default"]]  # every BLAS pool loaded (numpy's, faiss') at the same count
    assert pools["encoder"] == "QueuedTextEncoder"


def test_the_encoder_embeds_correctly_from_several_threads_at_once(minilm):
    """Passes run side by side (a query lane beside an ingest lane), with chunking's tokenizer in use too."""
    texts = [f"thread {thread}: the {word} changed how people see rivers" for thread in range(4) for word in ("owl", "engine", "violin")]
    expected = minilm.embed_documents(texts)
    spans = minilm.token_spans(texts[0])
    results: dict[int, list[np.ndarray]] = {}

    def work(thread: int) -> None:
        mine = texts[thread * 3 : thread * 3 + 3]
        results[thread] = [minilm.embed_documents(mine) for _ in range(5)]
        assert minilm.token_spans(texts[0]) == spans

    threads = [InThread(lambda thread=thread: work(thread)) for thread in range(4)]
    assert all(thread.join().error is None for thread in threads)
    for thread, rounds in results.items():
        for vectors in rounds:
            np.testing.assert_allclose(vectors, expected[thread * 3 : thread * 3 + 3], atol=1e-5)


# ------------------------------------------------------------------ over HTTP


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real server (MiniLM only) whose text encoder is watched; yields (url, watched encoder, queue)."""
    settings = minilm_settings(
        tmp_path_factory.mktemp("text-queue"), whisper_model="", whisper_fallback_model="", image_model="", rerank_backend="none", text_queue_size=2
    )
    app = create_app(settings)
    with serve_app(app) as url:
        assert app.state.prism.wait_loaded(timeout=300), app.state.prism.error
        queued = app.state.prism.library.encoder
        queued.encoder = Watched(queued.encoder)
        httpx.post(f"{url}/v1/documents", json={"collection": "q", "documents": [{"id": "owls", "text": "Owls hunt at night."}]}).raise_for_status()
        yield url, queued.encoder, queued


def test_searches_over_http_go_through_the_query_queue(server):
    url, watched, queued = server
    before = queued.queries.stats.items
    response = httpx.post(f"{url}/v1/search", json={"query": {"text": "which birds hunt at night"}, "collection": "q"})
    assert response.status_code == 200 and response.json()["results"][0]["doc_id"] == "owls"
    assert queued.queries.stats.items == before + 1
    metrics = httpx.get(f"{url}/metrics").text
    assert 'prism_batcher_items_total{batcher="text-queries"}' in metrics
    assert 'prism_batcher_items_total{batcher="text-documents"}' in metrics


def test_a_full_query_queue_answers_503_overloaded(server):
    url, watched, queued = server
    gate = watched.hold("query")
    watched.entered["query"].clear()
    try:
        search = lambda text: lambda: httpx.post(f"{url}/v1/search", json={"query": {"text": text}, "collection": "q"}, timeout=WAIT)  # noqa: E731
        busy = InThread(search("busy: held in the model"))
        assert watched.entered["query"].wait(WAIT)
        waiting = [InThread(search(f"waiting {index}")) for index in range(2)]
        wait_pending(queued.queries, 2)
        refused = httpx.post(f"{url}/v1/search", json={"query": {"text": "one too many"}, "collection": "q"})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "overloaded" and "queue full" in refused.json()["error"]["message"]
    finally:
        gate.set()
    assert busy.join().result.status_code == 200
    assert [caller.join().result.status_code for caller in waiting] == [200, 200]
