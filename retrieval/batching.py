"""Dynamic batching: many request threads share one call of a batch function.

An encoder runs a batch of 16 texts in about the time it runs one, so when several requests arrive
together it pays to encode them in one forward pass. Request threads call submit(); one worker
thread gathers what all of them queued into batches, calls fn once per batch, and hands each caller
exactly its own results, in order. It knows nothing of HTTP: the API maps QueueFull onto a 503.

Items are taken first come, first served. The worker waits at most max_wait_ms after the oldest
pending item for more to arrive: long enough for requests that arrive together to share a batch, short
enough that a lone request barely notices. With max_wait_ms 0 it never waits: a batch is whatever
queued while the previous one ran (continuous batching: no cost to a lone request, batches under load).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from encoders.cancel import Cancelled

log = logging.getLogger("prism")

T = TypeVar("T")
R = TypeVar("R")

CLOSED_MESSAGE = "batcher closed"


class QueueFull(RuntimeError):
    """Too many items are already waiting; the caller should come back later (HTTP 503)."""


@dataclass(frozen=True)
class BatcherStats:
    """A snapshot of what the batcher has done; read `stats` again for news."""

    batches: int  # calls of fn
    items: int  # items that went through fn
    largest_batch: int


class _Ticket(Generic[R]):
    """One submit() call: where its results go and how its thread learns they are all there."""

    def __init__(self, size: int) -> None:
        self.results: list[R | None] = [None] * size
        self.remaining = size
        self.error: BaseException | None = None
        self.done = threading.Event()

    def fail(self, error: BaseException) -> None:
        # The first failure wins: a caller gets one exception even if its items were in several
        # batches that failed.
        if not self.done.is_set():
            self.error = error
            self.done.set()


@dataclass
class _Entry(Generic[T]):
    ticket: _Ticket
    index: int  # where its result goes in ticket.results
    item: T
    queued_at: float  # time.monotonic()


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        name: str = "batcher",
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be at least 1 and max_wait_ms not negative")
        self._fn = fn
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000.0
        self._max_queue = max_queue
        self.name = name
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the worker waits on it for items or close()
        self._pending: deque[_Entry[T]] = deque()  # oldest first; not yet taken into a batch
        self._closed = False
        self._batches = 0
        self._items = 0
        self._largest_batch = 0
        # A daemon thread: a batcher nobody closed must not keep the process alive at exit.
        self._worker = threading.Thread(target=self._run, name=f"prism-{name}", daemon=True)
        self._worker.start()

    def submit(self, items: Sequence[T], timeout: float | None = None) -> list[R]:
        """fn's results for items, in order; blocks until they are all computed.

        Raises QueueFull at once (enqueueing nothing) when items would not fit in the queue, whatever
        fn raised for a batch that held some of them, TimeoutError after `timeout` seconds, and
        RuntimeError when the batcher is closed."""
        items = list(items)
        if not items:
            return []
        ticket: _Ticket[R] = _Ticket(len(items))
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: {CLOSED_MESSAGE}")
            # All or nothing: half a request queued would cost work whose results nobody can use.
            if len(self._pending) + len(items) > self._max_queue:
                raise QueueFull(
                    f"{self.name}: queue full ({len(self._pending)} items waiting, limit {self._max_queue}, "
                    f"this request has {len(items)})"
                )
            now = time.monotonic()
            self._pending.extend(_Entry(ticket, index, item, now) for index, item in enumerate(items))
            self._wake.notify()
        if not ticket.done.wait(timeout):
            # The worker skips items of a failed ticket, so a caller that gave up costs no more work.
            with self._lock:  # the worker fails and fills tickets under the lock too
                ticket.fail(TimeoutError(f"{self.name}: no results after {timeout} s"))
        if ticket.error is not None:
            raise ticket.error
        return ticket.results  # type: ignore[return-value]  # all filled in: remaining reached 0

    @property
    def pending(self) -> int:
        """Items queued and not yet taken into a batch."""
        with self._lock:
            return len(self._pending)

    @property
    def stats(self) -> BatcherStats:
        with self._lock:
            return BatcherStats(batches=self._batches, items=self._items, largest_batch=self._largest_batch)

    def close(self, timeout: float = 30.0) -> None:
        """Stop: callers whose items are still queued get RuntimeError("batcher closed") at once, later
        submits raise it too. A batch already in fn is finished and delivered; close waits up to
        `timeout` seconds for it (Python cannot stop a thread stuck in fn)."""
        with self._lock:
            self._closed = True
            error = RuntimeError(f"{self.name}: {CLOSED_MESSAGE}")
            for entry in self._pending:
                entry.ticket.fail(error)
            self._pending.clear()
            self._wake.notify_all()
        if threading.current_thread() is not self._worker:  # fn may close its own batcher
            self._worker.join(timeout)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run_batch(batch)

    def _next_batch(self) -> list[_Entry[T]] | None:
        """Wait for a full batch or for the oldest item's max_wait to pass; None once closed."""
        with self._lock:
            while True:
                self._drop_abandoned()
                if self._closed:
                    return None
                if not self._pending:
                    self._wake.wait()
                    continue
                # Measured from the oldest item, not from now: items that queued while fn ran on the
                # previous batch have waited already and go at once.
                left = self._pending[0].queued_at + self._max_wait - time.monotonic()
                if len(self._pending) >= self._max_batch or left <= 0:
                    size = min(self._max_batch, len(self._pending))
                    return [self._pending.popleft() for _ in range(size)]
                self._wake.wait(left)

    def _drop_abandoned(self) -> None:
        """Forget queued items whose caller already failed (timed out, or an earlier batch of theirs
        raised): nobody would read their results. Call with the lock held."""
        if any(entry.ticket.done.is_set() for entry in self._pending):
            self._pending = deque(entry for entry in self._pending if not entry.ticket.done.is_set())

    def _run_batch(self, batch: list[_Entry[T]]) -> None:
        try:
            results = list(self._fn([entry.item for entry in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: fn returned {len(results)} results for a batch of {len(batch)} items")
        except BaseException as error:  # noqa: BLE001 - the callers must hear of it; the worker goes on
            if isinstance(error, Cancelled):  # the server is shutting down: no fault to trace
                log.info("%s: a batch of %d items was cancelled: %s", self.name, len(batch), error)
            else:
                log.exception("%s: a batch of %d items failed", self.name, len(batch))
            with self._lock:
                self._count(batch)
                for entry in batch:
                    entry.ticket.fail(error)
            return
        with self._lock:
            self._count(batch)
            for entry, result in zip(batch, results):
                ticket = entry.ticket
                if ticket.done.is_set():
                    continue  # the caller failed already and will not read this
                ticket.results[entry.index] = result
                ticket.remaining -= 1
                if ticket.remaining == 0:
                    ticket.done.set()

    def _count(self, batch: list[_Entry[T]]) -> None:
        """Call with the lock held."""
        self._batches += 1
        self._items += len(batch)
        self._largest_batch = max(self._largest_batch, len(batch))
