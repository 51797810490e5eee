"""The rows of a vector space: items written, read as the write journal allows, and searched. A part of
MilvusStore (retrieval/store.py), which provides the connection (`_call`, `_query`, `_delete`, `_lock`)
and the space. On Milvus Lite, searches and the reads by field go to the space's in-memory index
(retrieval/store_index.py) when it is on: Lite would scan the collection in Python for each of them;
the items' other fields are then fetched from Lite by primary key."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from retrieval.filters import string_in, string_literal
from retrieval.lite_index import LiteIndex, Unsupported
from retrieval.lite_match import RowMatch, hidden_by
from retrieval.store_schema import (
    ITEM_FIELDS,
    READ_CONSISTENCY,
    item_from_row,
    search_params,
    upsert_batches,
)
from retrieval.types import Hit, Item
from retrieval.versions import Journal, Snapshot

MAX_TOP_K = 16384  # Milvus' limit for a search's limit
IN_LIST_BATCH = 500  # values per `field in [...]` expression
MAX_LISTED = 16384  # Milvus' limit for a query's limit: the most items a listing can order
SCAN_BATCH = 4096  # rows per page when scanning a whole space (the doctor)
# Primary key of the marker row that a delete on a server is followed by (MilvusStore._delete).
SESSION_CLOCK_ID = "prism:session-clock"

FETCH_ATTEMPTS = 3  # with the in-memory index: reads again after finding a row gone (a delete in flight)

T = TypeVar("T")


def _chunks(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class ItemRows:
    """Item rows of one space. Expects from MilvusStore: _call, _query, _delete, _seal_lite_writes,
    _space_exists, _space_collection, _dimension, _kind, _lock, and from IndexedSpace: _live_index,
    _upsert_batch, _delete_matching, _fetch, _drop_gone."""

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
        """Write the batches, taking the store's lock per batch (a reader may go between two: the rows
        of a write in progress are hidden from readers anyway)."""
        for batch in batches:
            self._upsert_batch(batch)
        if batches:
            self._seal_lite_writes(self._space_collection, sum(len(batch) for batch in batches))

    def has_rows(self, collection: str) -> bool:
        """Whether any row of any version belongs to the collection."""
        if not self._space_exists():
            return False
        index = self._live_index()
        if index is not None:
            return index.count(RowMatch(collection)) > 0
        return bool(self._query(self._space_collection, _collection_is(collection), ["row_id"], limit=1))

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
        sorted here, which is cheap (a few scalar fields) and exact for collections up to that size
        (for any size with the in-memory index)."""
        if not self._space_exists():
            return []
        rows = self._key_rows(RowMatch(collection, tuple(modalities)), limit=MAX_LISTED)
        keys = sorted(((row.created_at, row.id) for row in self.snapshot().visible(rows)), key=lambda key: (-key[0], key[1]))
        return keys[:limit]

    def get_many(self, ids: Sequence[str]) -> list[Item]:
        """Visible items by id (without vectors), in the order of `ids`; missing ids are left out."""
        if not ids or not self._space_exists():
            return []
        wanted = list(dict.fromkeys(ids))
        index = self._live_index()
        if index is not None:
            found = self._get_indexed(index, wanted)
        else:
            rows: list[Item] = []
            for batch in _chunks(wanted, IN_LIST_BATCH):
                rows += [item_from_row(row) for row in self._query(self._space_collection, string_in("id", batch), ITEM_FIELDS)]
            found = _newest_by_id(self.snapshot().visible(rows))
        return [found[item_id] for item_id in ids if item_id in found]

    def _get_indexed(self, index: LiteIndex, ids: list[str]) -> dict[str, Item]:
        """The visible version of each id, chosen in the index and fetched by primary key."""
        for attempt in range(FETCH_ATTEMPTS):
            chosen = _newest_by_id(self.snapshot().visible(index.rows(RowMatch(field_in=("id", tuple(ids))))))
            items = self._fetch([row.row_id for row in chosen.values()])
            gone = [row.row_id for row in chosen.values() if row.row_id not in items]
            if not gone or attempt == FETCH_ATTEMPTS - 1:
                return {item_id: items[row.row_id] for item_id, row in chosen.items() if row.row_id in items}
            self._drop_gone(index, gone)
        return {}

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
        documents rather than one per document (each query scans the collection on Lite without the
        in-memory index). Returns the count."""
        keep = set(keep_ids)
        with self._lock:
            if not self._space_exists():
                return 0
            stale: list[str] = []
            for batch in _chunks(list(dict.fromkeys(doc_ids)), IN_LIST_BATCH):
                rows = self._key_rows(RowMatch(collection, field_in=("doc_id", tuple(batch))))
                stale.extend(dict.fromkeys(row.id for row in rows if row.id not in keep))
            self._delete_ids(stale)
        return len(stale)

    def document_ids(self, collection: str, modality: str) -> list[str]:
        """The distinct document ids of one modality in a collection (e.g. its recordings)."""
        if not self._space_exists():
            return []
        return list(dict.fromkeys(row.doc_id for row in self._key_rows(RowMatch(collection, (modality,)))))

    def document_modalities(self, collection: str, doc_id: str) -> dict[str, str]:
        """item id -> modality for every visible item of a document."""
        if not self._space_exists():
            return {}
        rows = self._key_rows(RowMatch(collection, field_in=("doc_id", (doc_id,))))
        return {row.id: row.modality for row in self.snapshot().visible(rows)}

    def document_hashes(self, collection: str, doc_id: str) -> dict[str, str]:
        """item id -> content hash for every visible item of a document."""
        if not self._space_exists():
            return {}
        rows = self._key_rows(RowMatch(collection, field_in=("doc_id", (doc_id,))))
        return {row.id: row.content_hash for row in self.snapshot().visible(rows)}

    def vectors_by_hash(self, hashes: Sequence[str], collection: str | None = None) -> dict[str, list[float]]:
        """Stored vectors of identical content (same hash), so that re-ingested or duplicated text is
        not embedded again. Within `collection` when given: whether content exists in a collection is
        only told to those writing to it (neither the `reused` count nor the timing shows another's)."""
        wanted = list(dict.fromkeys(h for h in hashes if h))
        found: dict[str, list[float]] = {}
        if not wanted or not self._space_exists():
            return found
        index = self._live_index()
        if index is not None:
            vectors = index.vectors_of(RowMatch(collection, field_in=("content_hash", tuple(wanted))), by="content_hash")
            return {hash_: vector.tolist() for hash_, vector in vectors.items()}
        scope = "" if collection is None else f"{_collection_is(collection)} and "
        for batch in _chunks(wanted, IN_LIST_BATCH):
            rows = self._query(self._space_collection, scope + string_in("content_hash", batch), ["content_hash", "vector"])
            for row in rows:
                if row["content_hash"] not in found:
                    found[row["content_hash"]] = [float(x) for x in row["vector"]]
        return found

    def search(self, vector: Sequence[float], top_k: int, filter_expr: str) -> list[Hit]:
        """The top_k items nearest to `vector` among those matching `filter_expr` (an
        expression from retrieval.filters.build_filter), best first. Scores are cosine
        similarities. With the in-memory index, exactly the same answer without Milvus' scan."""
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")
        if self._dimension is not None and len(vector) != self._dimension:
            raise ValueError(
                f"query vector has {len(vector)} dimensions, the {self.space} space has "
                f"{self._dimension}"
            )
        if not self._space_exists():
            return []
        index = self._live_index()
        conditions = getattr(filter_expr, "conditions", None)  # a FilterExpression from build_filter
        if index is not None and conditions is not None:
            try:
                return self._search_indexed(index, vector, top_k, conditions)
            except Unsupported:
                pass  # a condition only Milvus can evaluate
        return self._visible_top(lambda limit: self._search(vector, limit, filter_expr), top_k, lambda hit: hit.item, lambda hit: hit.score)

    def _search_indexed(self, index: LiteIndex, vector: Sequence[float], top_k: int, conditions: Any) -> list[Hit]:
        for attempt in range(FETCH_ATTEMPTS):
            ranked = self._visible_top(lambda limit: index.search(vector, limit, conditions), top_k, lambda found: found[0], lambda found: found[1])
            items = self._fetch([row.row_id for row, _ in ranked])
            gone = [row.row_id for row, _ in ranked if row.row_id not in items]
            if not gone or attempt == FETCH_ATTEMPTS - 1:
                return [Hit(item=items[row.row_id], score=score) for row, score in ranked if row.row_id in items]
            self._drop_gone(index, gone)
        return []

    def _visible_top(self, ranked: Callable[[int], list[T]], top_k: int, row_of: Callable[[T], Any], score_of: Callable[[T], float]) -> list[T]:
        """The best top_k of what `ranked(limit)` returns (best first) that readers may see. While writes
        are in progress some rows may be hidden: ask for more, and for all if need be."""
        limit = top_k if not self.snapshot() else min(MAX_TOP_K, 2 * top_k + 50)
        while True:
            found = ranked(limit)
            visible = {id(row) for row in self.snapshot().visible([row_of(entry) for entry in found])}
            kept = [entry for entry in found if id(row_of(entry)) in visible]
            if len(kept) >= top_k or len(found) < limit or limit == MAX_TOP_K:
                break
            limit = min(MAX_TOP_K, limit * 4)
        # Milvus returns them best first already; sorting makes it a guarantee of this API.
        return sorted(kept, key=score_of, reverse=True)[:top_k]

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

    def _key_rows(self, match: RowMatch, limit: int | None = None) -> list[Any]:
        """The key fields of every row `match` selects (all versions), from the index if it is on, else
        from Milvus (at most `limit` rows)."""
        index = self._live_index()
        if index is not None:
            return index.rows(match)
        return [_KeyRow(row) for row in self._query(self._space_collection, match.expression(), _KeyRow.__slots__, limit=limit)]

    def _existing_ids(self, ids: Sequence[str]) -> list[str]:
        existing: list[str] = []
        for batch in _chunks(ids, IN_LIST_BATCH):
            existing.extend(dict.fromkeys(row.id for row in self._key_rows(RowMatch(field_in=("id", tuple(batch))))))
        return existing

    def _delete_ids(self, ids: Sequence[str]) -> None:
        # Counts come from the queries before the delete: what delete() returns is the ids
        # asked for (Lite: a list; server: {'delete_count': n}), whether they existed or not.
        for batch in _chunks(ids, IN_LIST_BATCH):
            self._delete_matching(RowMatch(field_in=("id", tuple(batch))))


def _newest_by_id(rows: Iterable[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for row in rows:
        if row.id not in found or row.version > found[row.id].version:
            found[row.id] = row
    return found


def _collection_is(name: str) -> str:
    return f"collection == {string_literal(name)}"


class _KeyRow:
    """The key fields of a row, as versions.Snapshot reads them (as lite_index.KeyRow has them)."""

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
    hidden = hidden_by(snapshot, collection)
    return f" and not ({' or '.join(f'({match.expression()})' for match in hidden)})" if hidden else ""
