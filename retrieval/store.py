"""The vector store: Items and their vectors in Milvus (Milvus Lite or a Milvus server).

Layout in Milvus
  prism_{space}  one physical collection per vector space ("text" now, an image space later,
                 each with its own dimension). Users' "collections" are not Milvus collections
                 but the typed field `collection` on each row, so creating one is free and a
                 search across them is one query.
  prism_meta     a small registry: which model built each space, and which user collections
                 exist (key -> JSON value).

Lite and server differ in a few ways that this module hides (see the notes inline): the index
type and search parameters, what delete() returns, whether existing collections open loaded,
and when a delete becomes visible to reads.

This module is the MilvusStore and how it talks to Milvus. Beside it: store_schema (the
collections' fields, schemas and indexes, Item <-> row), store_errors (StoreUnavailable,
StoreMismatch, telling an unreachable Milvus from an error) and lite_server (Milvus Lite's
in-process servers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pymilvus import MilvusClient

from retrieval.filters import string_in, string_literal
from retrieval.lite_server import lite_acquired, lite_released
from retrieval.store_errors import StoreMismatch, StoreUnavailable, is_unavailable_error, reason, redact
from retrieval.store_schema import (
    DOUBLE_FIELDS,
    INT64_FIELDS,
    ITEM_FIELDS,
    KEY_FIELDS,
    META_COLLECTION,
    META_DUMMY_VECTOR,
    SPACE_COLLECTION_PREFIX,
    SPACE_NAME_PATTERN,
    VARCHAR_MAX_BYTES,
    StoreKind,
    item_from_row,
    meta_index_params,
    meta_schema,
    search_params,
    space_index_params,
    space_schema,
    upsert_batches,
)
from retrieval.types import CollectionInfo, Hit, Item
from retrieval.versions import Journal, Snapshot, Txn

__all__ = ["MilvusStore", "StoreMismatch", "StoreUnavailable"]

MAX_DIMENSION = 32768  # Milvus' limit for FLOAT_VECTOR
MAX_TOP_K = 16384  # Milvus' limit for a search's limit
# Loading a large collection into memory (Lite on open, a server after a restart) can take
# minutes, and is not a sign of an unreachable server.
LOAD_TIMEOUT_SECONDS = 600.0
IN_LIST_BATCH = 500  # values per `field in [...]` expression
MAX_LISTED = 16384  # Milvus' limit for a query's limit: the most items a listing can order
SCAN_BATCH = 4096  # rows per page when scanning a whole space (the doctor)

# Reads see every write this process made (pymilvus remembers the timestamp of its last write
# to each collection) without waiting for the server's newest timestamp, as "Strong" does:
# measured on the Milvus 2.3 server, Strong costs ~0.5 s per query or search, Session ~3 ms.
# Writes by other processes become visible within about a second. Lite sees all writes at once.
READ_CONSISTENCY = "Session"

# Primary key of the marker row that a delete on a server is followed by (see _delete).
SESSION_CLOCK_ID = "prism:session-clock"


def _now_ms() -> int:
    return int(time.time() * 1000)


T = TypeVar("T")


def _chunks(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class MilvusStore:
    """Items of one vector space in Milvus, plus the registry of user collections.

    `uri` is a file path ending in ".db" for Milvus Lite (its parent directory is created), or
    http(s):// / tcp:// for a Milvus server (a path such as http://host:19530/mydb selects a
    database). `timeout` bounds each call, retries included, so a dead server is reported as
    StoreUnavailable instead of hanging on pymilvus' retry loop.
    """

    def __init__(
        self,
        uri: str,
        token: str | None = None,
        space: str = "text",
        *,
        timeout: float = 30.0,
    ) -> None:
        if not SPACE_NAME_PATTERN.fullmatch(space):
            raise ValueError(
                f"space {space!r} must be 1-64 ASCII letters, digits or underscores, "
                "starting with a letter"
            )
        self.uri = uri
        self.space = space
        self._timeout = timeout
        self._space_collection = SPACE_COLLECTION_PREFIX + space
        self._kind: StoreKind = _kind_of(uri)
        # Whether pymilvus' client, and Milvus Lite behind it, are thread-safe is not
        # documented, and the API calls the store from several threads: one lock serialises
        # every client call. Re-entrant, so multi-step operations hold it across their steps.
        self._lock = threading.RLock()
        # Set by ensure_space; writes need it so that no vector of the wrong size is stored.
        self._dimension: int | None = None
        self._space_loaded = False  # the space collection exists and is loaded for reads
        self._lite_path: str | None = None
        # Which rows readers may see while writes are in progress (retrieval/versions.py); until a
        # journal is attached every row is visible.
        self._journal: Journal | None = None
        self._client = self._connect(token)
        try:
            self._ensure_registry()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- connection

    @property
    def kind(self) -> StoreKind:
        return self._kind

    def _connect(self, token: str | None) -> MilvusClient:
        target = self.uri
        if self._kind == "milvus-lite":
            path = Path(self.uri).expanduser().absolute()
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file():
                raise StoreUnavailable(
                    f"cannot open Milvus Lite at {self.uri}: it is a file, and Milvus Lite "
                    "keeps its data in a directory of that name"
                )
            target = str(path)
        try:
            # dedicated: this store owns its channel, so close() really closes it.
            client = MilvusClient(
                uri=target, token=token or "", timeout=self._timeout, dedicated=True
            )
        except Exception as exc:
            if self._kind == "milvus-lite":
                raise StoreUnavailable(
                    f"cannot open Milvus Lite at {self.uri}: {reason(exc)} (only one process "
                    "at a time can open a Milvus Lite directory: is another one using it?)"
                ) from exc
            raise StoreUnavailable(
                f"cannot connect to Milvus at {redact(self.uri)}: {reason(exc)}"
            ) from exc
        if self._kind == "milvus-lite":
            self._lite_path = target
            lite_acquired(target)
        return client

    def _call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run one MilvusClient method under the lock, turning "Milvus is gone" into
        StoreUnavailable. Every client call goes through here."""
        with self._lock:
            if self._client is None:
                raise RuntimeError("the store is closed")
            try:
                method_of_client = getattr(self._client, method)
                return method_of_client(*args, timeout=timeout or self._timeout, **kwargs)
            except Exception as exc:
                if is_unavailable_error(exc):
                    raise StoreUnavailable(
                        f"Milvus at {redact(self.uri)} is unavailable ({method}): {reason(exc)}"
                    ) from exc
                raise

    def _query(
        self,
        collection: str,
        filter_expr: str,
        output_fields: Sequence[str],
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        # The consistency level is given with each read, not only at creation, so that a
        # collection created with another level (e.g. Strong, by an older version) reads alike.
        extra = {} if limit is None else {"limit": limit}
        return self._call(
            "query",
            collection,
            filter=filter_expr,
            output_fields=list(output_fields),
            consistency_level=READ_CONSISTENCY,
            **extra,
        )

    def ping(self) -> None:
        """A cheap round trip proving Milvus answers; raises StoreUnavailable otherwise."""
        self._call("has_collection", META_COLLECTION)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is None:
            return
        try:
            client.close()
        finally:
            if self._lite_path is not None:
                lite_released(self._lite_path)
                self._lite_path = None

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- registry

    def _ensure_registry(self) -> None:
        if self._call("has_collection", META_COLLECTION):
            self._load(META_COLLECTION)
            return
        self._call(
            "create_collection",
            META_COLLECTION,
            schema=meta_schema(),
            index_params=meta_index_params(),
            consistency_level=READ_CONSISTENCY,
        )

    def _meta_get(self, key: str) -> dict[str, Any] | None:
        rows = self._query(META_COLLECTION, f"key == {string_literal(key)}", ["value"], limit=1)
        return dict(rows[0]["value"]) if rows else None

    def _meta_put(self, key: str, value: dict[str, Any]) -> None:
        row = {"key": key, "vector": META_DUMMY_VECTOR, "value": value}
        self._call("upsert", META_COLLECTION, [row])

    def _meta_delete(self, key: str) -> None:
        self._delete(META_COLLECTION, f"key == {string_literal(key)}")

    # ----------------------------------------------------------------- vector space

    def ensure_space(self, dimension: int, model: str) -> None:
        """Create this space's collection on first use and record the model that fills it.
        Raises StoreMismatch if it was built with another model or dimension."""
        if isinstance(dimension, bool) or not isinstance(dimension, int):
            raise TypeError(f"dimension must be an int, got {type(dimension).__name__}")
        if not 1 <= dimension <= MAX_DIMENSION:
            raise ValueError(f"dimension must be between 1 and {MAX_DIMENSION}, got {dimension}")
        if not model:
            raise ValueError("model must be a non-empty name")
        space_key = f"space:{self.space}"
        with self._lock:
            recorded = self._meta_get(space_key)
            exists = self._call("has_collection", self._space_collection)
            if recorded is not None:
                self._check_same_model(recorded["model"], recorded["dimension"], model, dimension)
            elif exists:
                # The collection outlived its registry entry (e.g. a crash between creating it
                # and recording it). Its schema still tells the dimension; adopt the configured
                # model if that matches.
                self._check_same_model(None, self._stored_dimension(), model, dimension)
            if exists:
                self._check_fields()
            else:
                self._create_space_collection(dimension)  # created loaded
                self._space_loaded = True
            if recorded is None:
                self._meta_put(space_key, {"model": model, "dimension": dimension})
            self._load_space()
            self._dimension = dimension

    def _check_same_model(
        self, stored_model: str | None, stored_dimension: int, model: str, dimension: int
    ) -> None:
        """stored_model None: not recorded, only the dimension can be compared."""
        if stored_model in (model, None) and stored_dimension == dimension:
            return
        raise StoreMismatch(
            f"the {self.space} index in {redact(self.uri)} was built with "
            f"{stored_model or 'an unrecorded model'} "
            f"({stored_dimension}-d) but the configured model is {model} ({dimension}-d); "
            "point PRISM_DATA_DIR/PRISM_MILVUS_URI elsewhere or configure the original model"
        )

    def _check_fields(self) -> None:
        """An existing collection must have this version's fields: writing rows that lack one fails
        only at the first upsert, with a Milvus error naming neither the cause nor the remedy."""
        description = self._call("describe_collection", self._space_collection)
        stored = {field["name"] for field in description["fields"]}
        missing = [name for name in ("row_id", "vector", *ITEM_FIELDS) if name not in stored]
        if missing:
            raise StoreMismatch(
                f"{self._space_collection} in {redact(self.uri)} was created by an older version of Prism "
                f"(it lacks the fields {', '.join(missing)}); re-ingest into a new PRISM_DATA_DIR/PRISM_MILVUS_URI"
            )

    def _stored_dimension(self) -> int:
        description = self._call("describe_collection", self._space_collection)
        for field in description["fields"]:
            if field["name"] == "vector":
                return int(field["params"]["dim"])
        raise StoreMismatch(f"{self._space_collection} in {redact(self.uri)} has no vector field")

    def _create_space_collection(self, dimension: int) -> None:
        # The server's default, Bounded, would let a search miss what was just upserted.
        self._call(
            "create_collection",
            self._space_collection,
            schema=space_schema(dimension),
            index_params=space_index_params(self._kind),
            consistency_level=READ_CONSISTENCY,
        )

    def _space_exists(self) -> bool:
        """Whether the space collection exists, loading it on first sight. Reads on a space
        that was never created behave as on an empty one."""
        with self._lock:
            if not self._space_loaded and self._call("has_collection", self._space_collection):
                self._load_space()
            return self._space_loaded

    def _load_space(self) -> None:
        if not self._space_loaded:
            self._load(self._space_collection)
            self._space_loaded = True

    def _load(self, collection: str) -> None:
        # Milvus Lite opens existing collections released (queries fail until loaded); a
        # server keeps them loaded, and loading a loaded collection is a no-op.
        self._call("load_collection", collection, timeout=max(self._timeout, LOAD_TIMEOUT_SECONDS))

    # ----------------------------------------------------------------- user collections

    def create_collection(self, name: str) -> bool:
        """Register a user collection. Returns False if it already existed (nothing changes)."""
        _check_collection_name(name)
        key = f"collection:{name}"
        with self._lock:
            if self._meta_get(key) is not None:
                return False
            self._meta_put(key, {"created_at": _now_ms()})
            return True

    def has_collection(self, name: str) -> bool:
        _check_collection_name(name)
        return self._meta_get(f"collection:{name}") is not None

    def collection_names(self) -> list[str]:
        """Registered collections, by name (without counting their items)."""
        rows = self._query(META_COLLECTION, 'key like "collection:%"', ["key"])
        return sorted(row["key"].removeprefix("collection:") for row in rows)

    def list_collections(self) -> list[CollectionInfo]:
        """Registered collections, by name, with their item counts."""
        with self._lock:
            rows = self._query(META_COLLECTION, 'key like "collection:%"', ["key", "value"])
            space_exists = self._space_exists()
            infos = []
            snapshot = self.snapshot()
            for row in rows:
                name = row["key"].removeprefix("collection:")
                count = self._count(_collection_is(name) + _hidden_clause(snapshot, name)) if space_exists else 0
                infos.append(CollectionInfo(name=name, items=count, created_at=row["value"]["created_at"]))
        return sorted(infos, key=lambda info: info.name)

    def drop_collection(self, name: str) -> int:
        """Delete a collection's items, then its registry entry. Returns the items deleted."""
        _check_collection_name(name)
        with self._lock:
            deleted = 0
            if self._space_exists():
                deleted = self._count(_collection_is(name))
                if deleted:
                    self._delete(self._space_collection, _collection_is(name))
            self._meta_delete(f"collection:{name}")
        return deleted

    def unregister_collection(self, name: str) -> None:
        """Forget a collection's registration (its rows are removed separately)."""
        _check_collection_name(name)
        self._meta_delete(f"collection:{name}")

    def count(self, collection: str, modalities: Sequence[str]) -> int:
        """Visible items of these modalities in a collection."""
        if not self._space_exists():
            return 0
        expression = f"{_collection_is(collection)} and {string_in('modality', list(modalities))}"
        return self._count(expression + _hidden_clause(self.snapshot(), collection))

    def _count(self, filter_expr: str) -> int:
        rows = self._query(self._space_collection, filter_expr, ["count(*)"])
        return int(rows[0]["count(*)"])

    # ----------------------------------------------------------------- items

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

    def _seal_lite_writes(self, collection: str) -> None:
        """On Milvus Lite, flush after every write. Lite searches unflushed rows by brute force
        in Python: measured at 10k rows, 370 ms per search unflushed against 16-23 ms flushed,
        while a flush costs about 0.15 ms per new row (5-40 ms for a typical request). A Milvus
        server seals segments by itself and rate-limits flushes, so it is left alone."""
        if self._kind == "milvus-lite":
            self._call("flush", collection)

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

    def delete_version(self, collection: str, version: int) -> None:
        """Remove every row one write stored (rolling it back)."""
        with self._lock:
            if self._space_exists():
                self._delete(self._space_collection, f"{_collection_is(collection)} and version == {int(version)}")

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

    def _delete(self, collection: str, filter_expr: str) -> None:
        """Delete rows so that this process's next reads no longer see them."""
        self._call("delete", collection, filter=filter_expr)
        self._seal_lite_writes(collection)
        if self._kind == "milvus":
            # A Milvus 2.3 server answers a delete without a timestamp, so pymilvus cannot move
            # the Session read timestamp past it, and reads return the deleted rows for another
            # ~0.3 s. Upserting a marker row records a write timestamp later than the delete.
            # (Milvus Lite applies deletes at once.)
            self._call("upsert", collection, [self._session_clock_row(collection)])

    def _session_clock_row(self, collection: str) -> dict[str, Any]:
        """The marker row: no store query matches it, since its collection, doc_id and
        content_hash are empty (user collections never are) and its key is no "collection:"."""
        if collection == META_COLLECTION:
            return {"key": SESSION_CLOCK_ID, "vector": META_DUMMY_VECTOR, "value": {}}
        dimension = self._dimension or self._stored_dimension()
        vector = [1.0] + [0.0] * (dimension - 1)  # COSINE cannot normalise a zero vector
        strings = {name: "" for name in VARCHAR_MAX_BYTES}
        numbers = {name: 0 for name in (*INT64_FIELDS, *DOUBLE_FIELDS)}
        return {**strings, **numbers, "row_id": SESSION_CLOCK_ID, "id": SESSION_CLOCK_ID, "vector": vector, "metadata": {}}


# --------------------------------------------------------------------- helpers


def _kind_of(uri: str) -> StoreKind:
    if uri.startswith(("http://", "https://", "tcp://")):
        return "milvus"
    if uri.endswith(".db") and "://" not in uri:
        return "milvus-lite"
    raise ValueError(
        f"Milvus URI {redact(uri)!r} must be a file path ending in .db (Milvus Lite) or "
        "start with http://, https:// or tcp:// (a Milvus server)"
    )


def _check_collection_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError("a collection name must be a non-empty string")
    if len(name.encode()) > VARCHAR_MAX_BYTES["collection"]:
        raise ValueError(
            f"collection name is longer than {VARCHAR_MAX_BYTES['collection']} bytes: {name[:40]!r}..."
        )


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
