"""The version-level operations of a vector space that the writer (retrieval/writes.py) and the doctor
use: roll a write back, remove what a committed write replaced, repair rows by primary key, scan
everything. A part of MilvusStore (retrieval/store.py); every delete goes through `_delete_matching`
or `_delete_keys` (retrieval/store_index.py), which keep Milvus Lite's in-memory index in step."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from retrieval.filters import string_in
from retrieval.lite_match import RowMatch
from retrieval.store_items import IN_LIST_BATCH, SCAN_BATCH, SESSION_CLOCK_ID, _chunks
from retrieval.store_schema import ITEM_FIELDS, KEY_FIELDS, item_from_row
from retrieval.types import Item
from retrieval.versions import Txn

EVERY_ROW = 'row_id != ""'  # the filter that selects every row (a scan of it may read Lite's tables directly)


class VersionRows:
    """Expects from MilvusStore: _call, _query, _lock, _space_exists, _space_collection,
    _delete_matching, _delete_keys."""

    _lock: threading.RLock
    _space_collection: str

    def delete_version(self, collection: str, version: int, doc_ids: Sequence[str] | None = None) -> None:
        """Remove every row one write stored (rolling it back), or only those of `doc_ids`."""
        with self._lock:
            if not self._space_exists():
                return
            if doc_ids is None:
                self._delete_matching(RowMatch(collection, version=("==", version)))
            for batch in _chunks(list(doc_ids or ()), IN_LIST_BATCH):
                self._delete_matching(RowMatch(collection, version=("==", version), field_in=("doc_id", tuple(batch))))

    def newer_versions(self, collection: str, doc_ids: Sequence[str], version: int) -> dict[str, set[int]]:
        """doc id -> the versions newer than `version` stored for it (another replica's writes)."""
        found: dict[str, set[int]] = {}
        if not self._space_exists():
            return found
        for batch in _chunks(list(doc_ids), IN_LIST_BATCH):
            match = RowMatch(collection, version=(">", version), field_in=("doc_id", tuple(batch)))
            for row in self._query(self._space_collection, match.expression(), ["doc_id", "version"]):
                found.setdefault(row["doc_id"], set()).add(int(row["version"]))
        return found

    def delete_replaced(self, txn: Txn) -> None:
        """Remove the rows that the committed write `txn` replaced: older versions of its documents,
        of its items, or of its whole collection. With the in-memory index, documents that had no
        older rows (new ones) cost nothing here."""
        with self._lock:
            if not self._space_exists():
                return
            older = ("<", txn.version)
            if txn.whole_collection:
                self._delete_matching(RowMatch(txn.collection, version=older))
            for field, values in (("doc_id", txn.doc_ids), ("id", txn.item_ids)):
                for batch in _chunks(list(values), IN_LIST_BATCH):
                    self._delete_matching(RowMatch(txn.collection, version=older, field_in=(field, tuple(batch))))

    def rows_by_key(self, row_ids: Sequence[str]) -> list[Item]:
        """Rows by primary key (one version each), with their vectors: for repairs."""
        if not row_ids or not self._space_exists():
            return []
        found: list[Item] = []
        for batch in _chunks(list(dict.fromkeys(row_ids)), IN_LIST_BATCH):
            for row in self._query(self._space_collection, string_in("row_id", batch), [*ITEM_FIELDS, "vector"]):
                item = item_from_row(row)
                item.vector = [float(x) for x in row["vector"]]
                found.append(item)
        return found

    def delete_rows(self, row_ids: Sequence[str]) -> None:
        """Delete rows by primary key (one version of an item each)."""
        with self._lock:
            if self._space_exists():
                self._delete_keys(list(dict.fromkeys(row_ids)))

    def scan(self, fields: Sequence[str] = KEY_FIELDS, expression: str = EVERY_ROW) -> Iterator[list[dict[str, Any]]]:
        """Every row matching `expression` (all of them by default), a page at a time, with `fields`,
        read from Milvus itself. Unfiltered by writes in progress: for the doctor, which sees everything.
        On Milvus Lite, all rows' key fields are read from its tables in this process (the doctor at
        start: through the client, 100k rows took 20 s, during which searches waited)."""
        if not self._space_exists():
            return
        rows = self._direct_scan(list(fields)) if expression == EVERY_ROW else None
        if rows is not None:
            for start in range(0, len(rows), SCAN_BATCH):
                yield [row for row in rows[start : start + SCAN_BATCH] if row["row_id"] != SESSION_CLOCK_ID]
            return
        with self._lock:
            iterator = self._call("query_iterator", self._space_collection, batch_size=SCAN_BATCH, filter=expression, output_fields=list(fields))
        try:
            while True:
                with self._lock:
                    page = iterator.next()
                if not page:
                    return
                yield [row for row in page if row.get("row_id") != SESSION_CLOCK_ID]
        finally:
            iterator.close()
