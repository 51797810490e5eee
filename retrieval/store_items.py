"""The rows of a vector space: items written, read as the write journal allows, searched, and the
version-level operations the writer and the doctor use. A part of MilvusStore (retrieval/store.py),
which provides the connection (`_call`, `_query`, `_delete`, `_lock`) and the space."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from retrieval.filters import string_in, string_literal
from retrieval.store_schema import (
    ITEM_FIELDS,
    KEY_FIELDS,
    READ_CONSISTENCY,
    item_from_row,
    search_params,
    upsert_batches,
)
from retrieval.types import Hit, Item
from retrieval.versions import Journal, Snapshot, Txn

MAX_TOP_K = 16384  # Milvus' limit for a search's limit
IN_LIST_BATCH = 500  # values per `field in [...]` expression
MAX_LISTED = 16384  # Milvus' limit for a query's limit: the most items a listing can order
SCAN_BATCH = 4096  # rows per page when scanning a whole space (the doctor)
# Primary key of the marker row that a delete on a server is followed by (MilvusStore._delete).
SESSION_CLOCK_ID = "prism:session-clock"

T = TypeVar("T")


def _chunks(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class ItemRows:
    """Item rows of one space. Expects from MilvusStore: _call, _query, _delete, _seal_lite_writes,
    _space_exists, _space_collection, _dimension, _kind, _lock."""

    _lock: threading.RLock
    _space_collection: str
    _dimension: int | None
    _journal: Journal | None = None

    def upsert(self, items: Sequence[Item]) -> None:
        """Insert or replace items by (id, version). Every item needs a vector of the space's dimension."""
        self.upsert_rows(self.prepare_rows(items))

    def prepare_rows(self, items: Sequence[Item]) -> list[list[dict[str, Any]]]:
        """The rows of `items` in upsert batches, each checked against the schema: a ValueError naming
        the item before anything is written."""
        if not items:
            return []
        if self._dimension is None:
            raise RuntimeError("call ensure_space(dimension, model) before writing items")
        return upsert_batches(items, self._dimension)

    def upsert_rows(self, batches: list[list[dict[str, Any]]]) -> None:
        if not batches:
            return
        with self._lock:
            for batch in batches:
                self._call("upsert", self._space_collection, batch)
            self._seal_lite_writes(self._space_collection)

    def has_rows(self, collection: str) -> bool:
        """Whether any row of any version belongs to the collection."""
        return self._space_exists() and bool(self._query(self._space_collection, _collection_is(collection), ["row_id"], limit=1))


    def use_journal(self, journal: Journal) -> None:
        """Hide from readers what the journal's writes in progress must hide (retrieval/versions.py)."""
        self._journal = journal

    def snapshot(self) -> Snapshot:
        return self._journal.snapshot() if self._journal is not None else Snapshot()

    def get(self, item_id: str) -> Item | None:
        """The visible version of the item, without its vector, or None."""
        found = self.get_many([item_id])
        return found[0] if found else None

    def newest(self, collection: str, modalities: Sequence[str], limit: int) -> list[tuple[int, str]]:
        """(created_at, id) of the `limit` newest items of these modalities in a collection, newest
        first. Milvus queries have no ORDER BY: the keys of at most MAX_LISTED items are read and
        sorted here, which is cheap (a few scalar fields) and exact for collections up to that size."""
        if not self._space_exists():
            return []
        expression = f"{_collection_is(collection)} and {string_in('modality', list(modalities))}"
        fields = ["id", "created_at", "collection", "doc_id", "version"]
        rows = [_KeyRow(row) for row in self._query(self._space_collection, expression, fields, limit=MAX_LISTED)]
        keys = sorted(((row.created_at, row.id) for row in self.snapshot().visible(rows)), key=lambda key: (-key[0], key[1]))
        return keys[:limit]

    def get_many(self, ids: Sequence[str]) -> list[Item]:
        """Visible items by id (without vectors), in the order of `ids`; missing ids are left out."""
        if not ids or not self._space_exists():
            return []
        rows: list[Item] = []
        for batch in _chunks(list(dict.fromkeys(ids)), IN_LIST_BATCH):
            rows += [item_from_row(row) for row in self._query(self._space_collection, string_in("id", batch), ITEM_FIELDS)]
        found: dict[str, Item] = {}
        for item in self.snapshot().visible(rows):
            if item.id not in found or item.version > found[item.id].version:
                found[item.id] = item
        return [found[item_id] for item_id in ids if item_id in found]

    def existing_ids(self, ids: Sequence[str]) -> list[str]:
        """Which of `ids` are stored."""
        with self._lock:
            if not self._space_exists():
                return []
            return self._existing_ids(list(dict.fromkeys(ids)))

    def delete_ids(self, ids: Iterable[str]) -> int:
        """Delete items by id. Returns how many existed."""
        with self._lock:
            if not self._space_exists():
                return 0
            existing = self._existing_ids(list(dict.fromkeys(ids)))
            self._delete_ids(existing)
        return len(existing)

    def delete_document(self, collection: str, doc_id: str, keep_ids: Sequence[str] = ()) -> int:
        """Delete a document's items except `keep_ids`. Returns the count."""
        return self.delete_documents(collection, [doc_id], keep_ids)

    def delete_documents(self, collection: str, doc_ids: Sequence[str], keep_ids: Sequence[str] = ()) -> int:
        """Delete the items of several documents except `keep_ids`, with one query per batch of
        documents rather than one per document (each query scans the collection on Lite).
        Re-ingestion upserts the new chunks first and then calls this, so a document is never
        missing. Returns the count."""
        keep = set(keep_ids)
        with self._lock:
            if not self._space_exists():
                return 0
            stale: list[str] = []
            for batch in _chunks(list(dict.fromkeys(doc_ids)), IN_LIST_BATCH):
                expression = f"{_collection_is(collection)} and {string_in('doc_id', batch)}"
                rows = self._query(self._space_collection, expression, ["id"])
                stale.extend(dict.fromkeys(row["id"] for row in rows if row["id"] not in keep))
            self._delete_ids(stale)
        return len(stale)

    def document_ids(self, collection: str, modality: str) -> list[str]:
        """The distinct document ids of one modality in a collection (e.g. its recordings)."""
        if not self._space_exists():
            return []
        expression = f"{_collection_is(collection)} and modality == {string_literal(modality)}"
        rows = self._query(self._space_collection, expression, ["doc_id"])
        return list(dict.fromkeys(row["doc_id"] for row in rows))

    def document_modalities(self, collection: str, doc_id: str) -> dict[str, str]:
        """item id -> modality for every visible item of a document."""
        if not self._space_exists():
            return {}
        rows = self._query(self._space_collection, _document_is(collection, doc_id), ["modality", *KEY_FIELDS[1:]])
        return {row.id: row.modality for row in self.snapshot().visible([_KeyRow(row) for row in rows])}

    def document_hashes(self, collection: str, doc_id: str) -> dict[str, str]:
        """item id -> content hash for every item of a document."""
        if not self._space_exists():
            return {}
        rows = self._query(self._space_collection, _document_is(collection, doc_id), ["content_hash", *KEY_FIELDS[1:]])
        return {row.id: row.content_hash for row in self.snapshot().visible([_KeyRow(row) for row in rows])}

    def vectors_by_hash(self, hashes: Sequence[str], collection: str | None = None) -> dict[str, list[float]]:
        """Stored vectors of identical content (same hash), so that re-ingested or duplicated text is
        not embedded again. Within `collection` when given: whether content exists in a collection is
        only told to those writing to it (neither the `reused` count nor the timing shows another's)."""
        wanted = list(dict.fromkeys(h for h in hashes if h))
        found: dict[str, list[float]] = {}
        if not wanted or not self._space_exists():
            return found
        scope = "" if collection is None else f"{_collection_is(collection)} and "
        for batch in _chunks(wanted, IN_LIST_BATCH):
            rows = self._query(
                self._space_collection, scope + string_in("content_hash", batch), ["content_hash", "vector"]
            )
            for row in rows:
                if row["content_hash"] not in found:
                    found[row["content_hash"]] = [float(x) for x in row["vector"]]
        return found

    def search(self, vector: Sequence[float], top_k: int, filter_expr: str) -> list[Hit]:
        """The top_k items nearest to `vector` among those matching `filter_expr` (an
        expression from retrieval.filters.build_filter), best first. Scores are cosine
        similarities."""
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")
        if self._dimension is not None and len(vector) != self._dimension:
            raise ValueError(
                f"query vector has {len(vector)} dimensions, the {self.space} space has "
                f"{self._dimension}"
            )
        if not self._space_exists():
            return []
        # While writes are in progress some rows may be hidden: ask for more, and for all if need be.
        limit = top_k if not self.snapshot() else min(MAX_TOP_K, 2 * top_k + 50)
        while True:
            hits = self._search(vector, limit, filter_expr)
            visible = {id(item) for item in self.snapshot().visible([hit.item for hit in hits])}
            kept = [hit for hit in hits if id(hit.item) in visible]
            if len(kept) >= top_k or len(hits) < limit or limit == MAX_TOP_K:
                break
            limit = min(MAX_TOP_K, limit * 4)
        # Milvus returns them best first already; sorting makes it a guarantee of this API.
        return sorted(kept, key=lambda hit: hit.score, reverse=True)[:top_k]

    def _search(self, vector: Sequence[float], limit: int, filter_expr: str) -> list[Hit]:
        results = self._call(
            "search",
            self._space_collection,
            data=[[float(x) for x in vector]],
            limit=limit,
            filter=filter_expr,
            output_fields=ITEM_FIELDS,
            search_params=search_params(self._kind, limit),
            consistency_level=READ_CONSISTENCY,
        )
        return [
            Hit(item=item_from_row(hit["entity"]), score=float(hit["distance"]))
            for hit in results[0]
            if hit["id"] != SESSION_CLOCK_ID  # only a filter without a collection could reach it
        ]

    # ----------------------------------------------------------------- versions

    def delete_version(self, collection: str, version: int, doc_ids: Sequence[str] | None = None) -> None:
        """Remove every row one write stored (rolling it back), or only those of `doc_ids`."""
        with self._lock:
            if not self._space_exists():
                return
            expression = f"{_collection_is(collection)} and version == {int(version)}"
            if doc_ids is None:
                self._delete(self._space_collection, expression)
            for batch in _chunks(list(doc_ids or ()), IN_LIST_BATCH):
                self._delete(self._space_collection, f"{expression} and {string_in('doc_id', batch)}")

    def newer_versions(self, collection: str, doc_ids: Sequence[str], version: int) -> dict[str, set[int]]:
        """doc id -> the versions newer than `version` stored for it (another replica's writes)."""
        found: dict[str, set[int]] = {}
        if not self._space_exists():
            return found
        for batch in _chunks(list(doc_ids), IN_LIST_BATCH):
            expression = f"{_collection_is(collection)} and version > {int(version)} and {string_in('doc_id', batch)}"
            for row in self._query(self._space_collection, expression, ["doc_id", "version"]):
                found.setdefault(row["doc_id"], set()).add(int(row["version"]))
        return found

    def delete_replaced(self, txn: Txn) -> None:
        """Remove the rows that the committed write `txn` replaced: older versions of its documents,
        of its items, or of its whole collection."""
        with self._lock:
            if not self._space_exists():
                return
            older = f"{_collection_is(txn.collection)} and version < {int(txn.version)}"
            if txn.whole_collection:
                self._delete(self._space_collection, older)
            for field, values in (("doc_id", txn.doc_ids), ("id", txn.item_ids)):
                for batch in _chunks(list(values), IN_LIST_BATCH):
                    self._delete(self._space_collection, f"{older} and {string_in(field, batch)}")

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
                for batch in _chunks(list(row_ids), IN_LIST_BATCH):
                    self._delete(self._space_collection, string_in("row_id", batch))

    def scan(self, fields: Sequence[str] = KEY_FIELDS, expression: str = 'row_id != ""') -> Iterator[list[dict[str, Any]]]:
        """Every row matching `expression` (all of them by default), a page at a time, with `fields`.
        Unfiltered by writes in progress: for the doctor, which sees everything."""
        if not self._space_exists():
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

    def _existing_ids(self, ids: Sequence[str]) -> list[str]:
        existing: list[str] = []
        for batch in _chunks(ids, IN_LIST_BATCH):
            rows = self._query(self._space_collection, string_in("id", batch), ["id"])
            existing.extend(dict.fromkeys(row["id"] for row in rows))
        return existing

    def _delete_ids(self, ids: Sequence[str]) -> None:
        # Counts come from the queries before the delete: what delete() returns is the ids
        # asked for (Lite: a list; server: {'delete_count': n}), whether they existed or not.
        for batch in _chunks(ids, IN_LIST_BATCH):
            self._delete(self._space_collection, string_in("id", batch))

def _collection_is(name: str) -> str:
    return f"collection == {string_literal(name)}"


def _document_is(collection: str, doc_id: str) -> str:
    return f"{_collection_is(collection)} and doc_id == {string_literal(doc_id)}"


class _KeyRow:
    """The key fields of a row, as versions.Snapshot reads them."""

    __slots__ = ("id", "collection", "doc_id", "version", "created_at", "content_hash", "modality")

    def __init__(self, row: dict[str, Any]) -> None:
        self.id, self.collection, self.doc_id = row["id"], row["collection"], row["doc_id"]
        self.modality = row.get("modality", "")
        self.version = int(row.get("version") or 0)
        self.created_at = int(row.get("created_at") or 0)
        self.content_hash = row.get("content_hash", "")


def _hidden_clause(snapshot: Snapshot, collection: str) -> str:
    """" and not (...)": the rows of `collection` that writes in progress hide, as an expression (for
    counts, which cannot be filtered row by row)."""
    hidden = []
    for txn in snapshot.txns:
        if txn.collection != collection:
            continue
        if txn.state != "committed":
            hidden.append(f"version == {int(txn.version)}")
            continue
        if txn.whole_collection:
            hidden.append(f"version < {int(txn.version)}")
            continue
        targets = [string_in(field, values) for field, values in (("doc_id", txn.doc_ids), ("id", txn.item_ids)) if values]
        if targets:
            hidden.append(f"(version < {int(txn.version)} and ({' or '.join(targets)}))")
    return f" and not ({' or '.join(hidden)})" if hidden else ""
