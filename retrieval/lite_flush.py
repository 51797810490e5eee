"""When Milvus Lite flushes a space: not after every write, but once enough rows wait or shortly after.

A flush writes Lite's MemTable out as a Parquet segment (about 20 ms plus 0.15 ms per row here) and
starts a background compaction; flushing after every write cost ingest 0.8 s per 1000 short documents.
Nothing depends on it for correctness: a write is in Lite's write-ahead log before the call returns
(so it survives kill -9), and reads see unflushed rows at once. What unflushed rows cost is speed:
Lite scans its MemTable in Python for a search or a query by field (370 ms per search at 10k unflushed
rows). With the in-memory index (retrieval/lite_index.py) searches and most queries no longer reach
Lite, so writes may wait: a flush runs once `max_rows` rows are waiting, or `delay_s` after the first
of them, whichever comes first. Without the index, the store flushes after every write, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("prism")

FLUSH_AFTER_ROWS = 5000
FLUSH_AFTER_S = 1.0


class DelayedFlush:
    def __init__(self, flush: Callable[[], None], max_rows: int = FLUSH_AFTER_ROWS, delay_s: float = FLUSH_AFTER_S) -> None:
        self._flush = flush
        self._max_rows = max_rows
        self._delay_s = delay_s
        self._lock = threading.Lock()
        self._pending = 0  # rows (or deletes) written since the last flush
        self._timer: threading.Timer | None = None
        self._closed = False

    def wrote(self, rows: int) -> None:
        """`rows` rows were written (or deleted): flush now if enough wait, else within delay_s."""
        with self._lock:
            self._pending += max(rows, 1)
            due = self._pending >= self._max_rows or self._closed
            if not due and self._timer is None:
                self._timer = threading.Timer(self._delay_s, self._on_timer)
                self._timer.daemon = True
                self._timer.start()
        if due:
            self.flush_now()

    def flush_now(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, 0
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if pending:
            self._flush()

    def close(self) -> None:
        """Flush what waits; later writes flush at once."""
        with self._lock:
            self._closed = True
        self.flush_now()

    def _on_timer(self) -> None:
        try:
            self.flush_now()
        except Exception as error:  # noqa: BLE001 - the rows are in Lite's log; the next write or close flushes
            log.warning("a delayed Milvus Lite flush failed (the rows are safe in its write-ahead log): %s", error)
