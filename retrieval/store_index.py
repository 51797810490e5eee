"""The in-memory index of a Milvus Lite space (retrieval/lite_index.py) as the store keeps it: opened
with the space, changed together with Milvus on every write and delete, and read instead of Milvus
where it can answer. A part of MilvusStore (retrieval/store.py); on a Milvus server nothing here runs.

Writes hold the index's `writing` lock across the Milvus call and the index update, so both change
together for the other writers. Readers take no lock: between a delete in Milvus and the same delete
in the index a reader may pick a row that is gone when it fetches it; it then drops it from the index
(after checking, under the lock, that Milvus really has no such row) and reads again. Rows an upsert
may or may not have stored (the call failed) go into the index too: the index holds every row Milvus
holds, and perhaps a few it does not, which readers drop as above. So a delete that the index finds
nothing for can skip Milvus: a new document's first version deletes no older rows.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from retrieval.filters import string_in
from retrieval.lite_flush import DelayedFlush
from retrieval.lite_index import LiteIndex
from retrieval.lite_direct import FIELDS as DIRECT_FIELDS
from retrieval.lite_direct import TooLarge, fill, get_rows, read_key_rows
from retrieval.lite_match import RowMatch
from retrieval.store_schema import ITEM_FIELDS, StoreKind, item_from_row
from retrieval.types import Item

log = logging.getLogger("prism")

DEFAULT_LITE_INDEX_MAX_ITEMS = 1_000_000
KEY_BATCH = 500  # primary keys per `row_id in [...]`
DIRECT_SCAN_FIELDS = set(DIRECT_FIELDS) - {"metadata"}  # Lite keeps JSON as text: read through the client
FETCH_ATTEMPTS = 3  # reads again after finding a row gone (a delete in flight)


class IndexedSpace:
    """Expects from MilvusStore: _call, _query, _count, _lock, _kind, _lite_path, space,
    _space_collection, _dimension, _stored_dimension, scan."""

    _lock: threading.RLock
    _kind: StoreKind
    _lite_path: str | None
    _space_collection: str
    _index: LiteIndex | None = None
    _index_max_items: int = DEFAULT_LITE_INDEX_MAX_ITEMS
    _index_state: str = "not loaded yet"
    _flusher: DelayedFlush | None = None
    _direct_reads: bool | None = None  # fetch rows from Lite's engine in this process (None: not compared yet)

    def index_status(self) -> dict[str, Any]:
        """For /v1/info: whether searches run in memory, over how many rows, and if not, why."""
        index = self._live_index()
        status: dict[str, Any] = {"enabled": index is not None, "max_items": self._index_max_items, "state": self._index_state}
        if index is not None:
            status.update(rows=index.live, memory_mb=round(index.nbytes / 2**20, 1))
        return status

    def index_description(self) -> str:
        status = self.index_status()
        if not status["enabled"]:
            return status["state"]
        return f"exact, in memory: {status['rows']} rows, {status['memory_mb']} MiB (at most {status['max_items']}: PRISM_LITE_INDEX_MAX_ITEMS)"

    def _attach_index(self, dimension: int) -> None:
        """Open (or share) the space's index on Milvus Lite, filled from Milvus."""
        if self._kind != "milvus-lite" or self._index is not None or self._lite_path is None:
            if self._kind == "milvus":
                self._index_state = "the Milvus server's HNSW index"
            return
        if self._index_max_items <= 0:
            self._index_state = "off: PRISM_LITE_INDEX_MAX_ITEMS is 0"
            return

        def build() -> LiteIndex:
            index = LiteIndex(dimension)
            stats = lambda: int(self._call("get_collection_stats", self._space_collection)["row_count"])  # noqa: E731
            how = fill(index, self._lite_path, self._space_collection, self._index_max_items, stats, self.scan, self.rows_by_key)
            log.info("in-memory index of the %s space: %d rows, %.0f MiB (read %s)", self.space, index.live, index.nbytes / 2**20, "from Lite's tables" if how == "arrow" else "through the client")
            return index

        try:
            self._index = shared_indexes.acquire(self._lite_path, self.space, build)
        except TooLarge as error:
            self._index_state = f"off: the {self.space} space holds {error}, more than PRISM_LITE_INDEX_MAX_ITEMS ({self._index_max_items}); Milvus Lite searches it itself, which is much slower"
            log.warning("%s", self._index_state)
            return
        self._index_state = "on"
        self._flusher = DelayedFlush(lambda: self._call("flush", self._space_collection))

    def _release_index(self) -> None:
        if self._flusher is not None:
            flusher, self._flusher = self._flusher, None
            flusher.close()
        if self._index is not None and self._lite_path is not None:
            self._index = None
            shared_indexes.release(self._lite_path, self.space)

    def _live_index(self) -> LiteIndex | None:
        index = self._index
        if index is not None and index.disabled is not None:
            self._index_state = f"off: {index.disabled}"
            return None
        return index

    def _index_failed(self, index: LiteIndex, error: BaseException) -> None:
        """The index could not follow a change: it no longer mirrors Milvus, so no store may use it."""
        log.error("the in-memory index of the %s space failed and is switched off (Milvus Lite searches instead): %r", self.space, error)
        index.disable(f"it failed to follow a write ({error!r})")

    # ----------------------------------------------------------------- writes

    def _upsert_batch(self, batch: list[dict[str, Any]]) -> None:
        """One upsert into the space, and the same rows into the index (also when the call fails: they
        may have been stored)."""
        with self._lock:
            index = self._live_index()
            if index is None:
                self._call("upsert", self._space_collection, batch)
                return
            with index.writing:
                try:
                    self._call("upsert", self._space_collection, batch)
                finally:
                    self._follow(index, lambda: index.add_rows(batch))
                if index.live > self._index_max_items:
                    index.disable(f"the {self.space} space grew past PRISM_LITE_INDEX_MAX_ITEMS ({self._index_max_items} rows)")
                    log.warning("in-memory index of the %s space switched off: %s; Milvus Lite searches it itself", self.space, index.disabled)

    def _delete_matching(self, match: RowMatch) -> None:
        """Delete the rows `match` selects: with the index, by primary key and only if there are any."""
        with self._lock:
            index = self._live_index()
            if index is None:
                self._delete(self._space_collection, match.expression())
                return
            with index.writing:
                self._delete_slots(index, index.slots(match))

    def _delete_keys(self, row_ids: Sequence[str]) -> None:
        with self._lock:
            index = self._live_index()
            if index is None:
                for start in range(0, len(row_ids), KEY_BATCH):
                    self._delete(self._space_collection, string_in("row_id", row_ids[start : start + KEY_BATCH]))
                return
            with index.writing:
                self._delete_slots(index, index.slots_of_keys(row_ids))

    def _delete_slots(self, index: LiteIndex, slots: np.ndarray) -> None:
        if not len(slots):
            return  # nothing stored matches: no scan of the collection, no flush
        keys = index.row_ids(slots)
        for start in range(0, len(keys), KEY_BATCH):
            self._call("delete", self._space_collection, filter=string_in("row_id", keys[start : start + KEY_BATCH]))
        self._follow(index, lambda: index.remove(slots))
        self._seal_lite_writes(self._space_collection, len(keys))

    def _follow(self, index: LiteIndex, change: Any) -> None:
        try:
            change()
        except Exception as error:  # noqa: BLE001
            self._index_failed(index, error)

    # ----------------------------------------------------------------- reads

    def _fetch(self, row_ids: Sequence[str]) -> dict[str, Item]:
        """Items (without vectors) by primary key; keys Milvus does not have are left out. On Lite, read
        from the engine in this process (retrieval/lite_direct.py) once a first fetch found it answering
        exactly as the client does; through the client otherwise, and whenever that fails."""
        if not row_ids:
            return {}
        fields = ["row_id", *ITEM_FIELDS]
        if self._direct_reads is not False:
            rows = self._direct_get(self._space_collection, list(row_ids), fields)
            direct = None if rows is None else {row["row_id"]: item_from_row(row) for row in rows}
            if direct is not None and self._direct_reads:
                return direct
            if direct is not None:  # the first time: compare with the client's answer
                client = self._fetch_through_client(row_ids, fields)
                self._direct_reads = direct == client
                if not self._direct_reads:
                    log.warning("Milvus Lite's rows read directly differ from the client's: rows are fetched through the client")
                return client
        return self._fetch_through_client(row_ids, fields)

    def _direct_get(self, collection: str, keys: list[str], fields: list[str]) -> list[dict[str, Any]] | None:
        """Rows by primary key from Milvus Lite's engine in this process; None on a server, or if that
        fails (not loaded, gone: the client then says which)."""
        if self._lite_path is None:
            return None
        try:
            return get_rows(self._lite_path, collection, keys, fields)
        except Exception:  # noqa: BLE001
            return None

    def _direct_scan(self, fields: list[str]) -> list[dict[str, Any]] | None:
        """`fields` of every row, read from Milvus Lite's tables in this process (retrieval/lite_direct.py);
        None on a server, for fields it does not read that way, or if that fails (the client then reads)."""
        if self._lite_path is None or not set(fields) <= DIRECT_SCAN_FIELDS:
            return None
        try:
            return read_key_rows(self._lite_path, self._space_collection, fields)
        except Exception as error:  # noqa: BLE001
            log.warning("reading Milvus Lite's %s directly failed (%r): reading it through the client", self._space_collection, error)
            return None

    def _fetch_through_client(self, row_ids: Sequence[str], fields: list[str]) -> dict[str, Item]:
        rows: list[dict[str, Any]] = []
        for start in range(0, len(row_ids), KEY_BATCH):
            rows += self._query(self._space_collection, string_in("row_id", list(row_ids[start : start + KEY_BATCH])), fields)
        return {row["row_id"]: item_from_row(row) for row in rows}

    def _drop_gone(self, index: LiteIndex, row_ids: Sequence[str]) -> None:
        """Rows a reader found in the index and not in Milvus: if Milvus has none of them still, under
        the lock (a delete in flight has finished by then), the index drops them."""
        with self._lock, index.writing:
            present = {row["row_id"] for row in self._query(self._space_collection, string_in("row_id", list(row_ids)), ["row_id"])}
            gone = [row_id for row_id in row_ids if row_id not in present]
            if gone:
                self._follow(index, lambda: index.remove(index.slots_of_keys(gone)))


class SharedIndexes:
    """One index per Lite directory and space in this process, whichever stores open it (two stores on
    one directory and space would otherwise each miss the other's writes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], tuple[LiteIndex, int]] = {}

    def acquire(self, lite_path: str, space: str, build: Callable[[], LiteIndex]) -> LiteIndex:
        key = (os.path.abspath(lite_path), space)
        with self._lock:
            if key in self._open:
                index, users = self._open[key]
                self._open[key] = (index, users + 1)
                return index
            index = build()  # under the lock: a second store waits for the first one's filling
            self._open[key] = (index, 1)
            return index

    def release(self, lite_path: str, space: str) -> None:
        key = (os.path.abspath(lite_path), space)
        with self._lock:
            if key not in self._open:
                return
            index, users = self._open[key]
            if users > 1:
                self._open[key] = (index, users - 1)
            else:
                del self._open[key]


shared_indexes = SharedIndexes()
