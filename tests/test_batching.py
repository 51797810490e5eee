"""Dynamic batching with real threads: callers share batches, get exactly their own results, and
hear of failures in their own batches only. Threads are lined up with Barrier and Event, never sleeps."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from retrieval.batching import CLOSED_MESSAGE, MicroBatcher, QueueFull
from tests.servers import poll

WAIT = 10.0  # seconds; a deadline for things that should take milliseconds


class Doubler:
    """The batch function: doubles each number and records the batches it saw. With a gate, the
    first batch waits in fn until the test opens it, so that later items pile up in the queue."""

    def __init__(self, gate: threading.Event | None = None, fail_on: Any = None) -> None:
        self.sizes: list[int] = []
        self.gate = gate
        self.fail_on = fail_on
        self.entered = threading.Event()

    def __call__(self, batch: list[Any]) -> list[Any]:
        self.sizes.append(len(batch))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT), "the test never opened the gate"
        if self.fail_on is not None and self.fail_on in batch:
            raise ValueError(f"cannot double {self.fail_on!r}")
        return [x * 2 for x in batch]


class Caller:
    """submit() in its own thread; keeps what it returned or raised."""

    def __init__(self, batcher: MicroBatcher, items: Sequence[Any]) -> None:
        self.result: list[Any] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._call, args=(batcher, items), daemon=True)
        self._thread.start()

    def _call(self, batcher: MicroBatcher, items: Sequence[Any]) -> None:
        try:
            self.result = batcher.submit(items, timeout=WAIT)
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            self.error = error

    def join(self) -> Caller:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "submit never returned"
        return self


@pytest.fixture
def closing():
    """Close every batcher a test made, even when it fails."""
    made: list[MicroBatcher] = []
    yield made.append
    for batcher in made:
        batcher.close(timeout=WAIT)


def test_one_caller_gets_its_results_in_order(closing):
    fn = Doubler()
    batcher = MicroBatcher(fn, max_batch=8, max_wait_ms=1)
    closing(batcher)
    assert batcher.submit([3, 1, 2]) == [6, 2, 4]
    assert batcher.submit([]) == []
    assert fn.sizes == [3]


def test_a_caller_with_more_than_max_batch_items_gets_all_of_them(closing):
    fn = Doubler()
    batcher = MicroBatcher(fn, max_batch=4, max_wait_ms=1)
    closing(batcher)
    assert batcher.submit(list(range(10))) == [x * 2 for x in range(10)]
    assert fn.sizes == [4, 4, 2]
    assert batcher.stats.batches == 3 and batcher.stats.items == 10 and batcher.stats.largest_batch == 4


def test_concurrent_callers_share_batches_and_each_gets_its_own_result(closing):
    fn = Doubler()
    # A generous wait: the 16 threads surely all arrive within it, and a full batch of 8 goes at once
    # anyway, so the test does not actually wait that long.
    batcher = MicroBatcher(fn, max_batch=8, max_wait_ms=2000)
    closing(batcher)
    start = threading.Barrier(16)
    results: dict[int, list[int]] = {}

    def call(x: int) -> None:
        start.wait(WAIT)
        results[x] = batcher.submit([x], timeout=WAIT)

    threads = [threading.Thread(target=call, args=(x,)) for x in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert results == {x: [x * 2] for x in range(16)}
    assert len(fn.sizes) < 16 and max(fn.sizes) > 1  # what batching buys: fewer calls of fn
    assert max(fn.sizes) <= 8 and sum(fn.sizes) == 16


def test_a_full_queue_refuses_a_request_without_queueing_any_of_it(closing):
    gate = threading.Event()
    fn = Doubler(gate)
    batcher = MicroBatcher(fn, max_batch=1, max_wait_ms=0, max_queue=2, name="text-encoder")
    closing(batcher)
    first = Caller(batcher, [1])
    assert fn.entered.wait(WAIT)  # [1] is in fn, so the queue is empty again
    second = Caller(batcher, [2, 3])
    poll(lambda: batcher.pending == 2, WAIT, "two items queued")

    with pytest.raises(QueueFull, match="text-encoder.*limit 2"):
        batcher.submit([4])
    assert batcher.pending == 2

    gate.set()
    assert first.join().result == [2]
    assert second.join().result == [4, 6]
    assert fn.sizes == [1, 1, 1]  # the refused item never reached fn
    assert batcher.submit([4]) == [8]  # room again


def test_a_failing_batch_fails_its_callers_only(closing):
    gate = threading.Event()
    fn = Doubler(gate, fail_on="boom")
    batcher = MicroBatcher(fn, max_batch=8, max_wait_ms=0)
    closing(batcher)
    first = Caller(batcher, ["a"])
    assert fn.entered.wait(WAIT)
    # These two queue while fn is busy with "a", so they go together in the next batch.
    bad = Caller(batcher, ["boom"])
    poll(lambda: batcher.pending == 1, WAIT, "the bad item queued")
    bystander = Caller(batcher, ["b"])
    poll(lambda: batcher.pending == 2, WAIT, "both items queued")
    gate.set()

    assert first.join().result == ["aa"]
    assert fn.sizes == [1, 2]
    for caller in (bad.join(), bystander.join()):
        assert isinstance(caller.error, ValueError) and "boom" in str(caller.error)
    assert batcher.submit(["c"]) == ["cc"]  # the worker lives on


def test_a_wrong_number_of_results_is_an_error(closing):
    batcher = MicroBatcher(lambda batch: [x * 2 for x in batch][:-1], max_batch=8, max_wait_ms=0)
    closing(batcher)
    with pytest.raises(RuntimeError, match="1 results for a batch of 2 items"):
        batcher.submit([1, 2])


def test_a_caller_that_times_out_gets_timeout_error(closing):
    gate = threading.Event()
    fn = Doubler(gate)
    batcher = MicroBatcher(fn, max_batch=1, max_wait_ms=0)
    closing(batcher)
    first = Caller(batcher, [1])
    assert fn.entered.wait(WAIT)
    with pytest.raises(TimeoutError):
        batcher.submit([2], timeout=0.05)
    gate.set()
    assert first.join().result == [2]
    assert batcher.submit([3]) == [6]
    assert fn.sizes == [1, 1]  # the abandoned item was dropped, not computed


def test_close_fails_queued_and_later_callers(closing):
    gate = threading.Event()
    fn = Doubler(gate)
    batcher = MicroBatcher(fn, max_batch=1, max_wait_ms=0)
    closing(batcher)
    running = Caller(batcher, [1])
    assert fn.entered.wait(WAIT)
    queued = Caller(batcher, [2])
    poll(lambda: batcher.pending == 1, WAIT, "an item queued")

    batcher.close(timeout=0)  # fn is still busy; do not wait for it
    assert isinstance(queued.join().error, RuntimeError) and CLOSED_MESSAGE in str(queued.error)
    with pytest.raises(RuntimeError, match=CLOSED_MESSAGE):
        batcher.submit([3])

    gate.set()
    assert running.join().result == [2]  # the batch already in fn is finished and delivered
    assert fn.sizes == [1]
