"""The vector store: Items and their vectors in Milvus (Milvus Lite or a Milvus server).

Layout in Milvus
  prism_{space}  one physical collection per vector space ("text" and "image", each with its
                 own dimension). Users' "collections" are not Milvus collections but the typed
                 field `collection` on each row, so creating one is free and a search across
                 them is one query. A row is one version of an item: its primary key `row_id`
                 is the item id and the version (retrieval/versions.py).
  prism_meta     a small registry: which model built each space, and which user collections
                 exist (key -> JSON value).

Lite and server differ in a few ways that this module hides (see the notes inline): the index
type and search parameters, what delete() returns, whether existing collections open loaded,
and when a delete becomes visible to reads.

This module is the MilvusStore: how it talks to Milvus, and its vector space. Its other parts:
store_items (item rows: writes, reads filtered by the write journal, search), store_versions (the
version-level operations of the writer and the doctor), store_index (on Milvus Lite, the in-memory
index that searches and most reads use instead of Lite's own scans), store_registry (prism_meta and
user collections). Beside them: store_schema (the collections'
fields, schemas and indexes, Item <-> row), store_errors (StoreUnavailable, StoreMismatch,
telling an unreachable Milvus from an error) and lite_server (Milvus Lite's in-process servers).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pymilvus import MilvusClient

from retrieval.lite_repair import repair_replayed_rows
from retrieval.lite_server import lite_acquired, lite_released
from retrieval.store_errors import (
    StoreMismatch,
    StoreUnavailable,
    is_unavailable_error,
    reason,
    redact,
)
from retrieval.store_index import DEFAULT_LITE_INDEX_MAX_ITEMS, IndexedSpace
from retrieval.store_items import (
    IN_LIST_BATCH,
    MAX_LISTED,
    MAX_TOP_K,
    SESSION_CLOCK_ID,
    ItemRows,
)
from retrieval.store_registry import CollectionRegistry
from retrieval.store_schema import (
    DOUBLE_FIELDS,
    INT64_FIELDS,
    ITEM_FIELDS,
    META_COLLECTION,
    META_DUMMY_VECTOR,
    READ_CONSISTENCY,
    SPACE_COLLECTION_PREFIX,
    SPACE_NAME_PATTERN,
    VARCHAR_MAX_BYTES,
    StoreKind,
    space_index_params,
    space_schema,
)
from retrieval.store_versions import VersionRows
from retrieval.versions import Journal

__all__ = ["IN_LIST_BATCH", "MAX_LISTED", "MAX_TOP_K", "MilvusStore", "StoreMismatch", "StoreUnavailable"]

log = logging.getLogger("prism")

MAX_DIMENSION = 32768  # Milvus' limit for FLOAT_VECTOR
# Loading a large collection into memory (Lite on open, a server after a restart) can take
# minutes, and is not a sign of an unreachable server.
LOAD_TIMEOUT_SECONDS = 600.0


class MilvusStore(CollectionRegistry, ItemRows, VersionRows, IndexedSpace):
    """Items of one vector space in Milvus, plus the registry of user collections.

    `uri` is a file path ending in ".db" for Milvus Lite (its parent directory is created), or
    http(s):// / tcp:// for a Milvus server (a path such as http://host:19530/mydb selects a
    database). `timeout` bounds each call, retries included, so a dead server is reported as
    StoreUnavailable instead of hanging on pymilvus' retry loop. `lite_index_max_items`: on Milvus
    Lite, the most rows the space's in-memory index holds (retrieval/store_index.py); 0 turns it off.
    """

    def __init__(
        self,
        uri: str,
        token: str | None = None,
        space: str = "text",
        *,
        timeout: float = 30.0,
        lite_index_max_items: int = DEFAULT_LITE_INDEX_MAX_ITEMS,
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
        self._index_max_items = lite_index_max_items
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
        try:
            self._release_index()  # flushes what waits
        except Exception as error:  # noqa: BLE001 - the rows are in Lite's write-ahead log
            log.warning("could not flush Milvus Lite before closing: %s", error)
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
            self._dimension = dimension
            self._load_space()
            self._attach_index(dimension)

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
            self._attach_index(self._dimension or self._stored_dimension())

    def _load(self, collection: str) -> None:
        # Milvus Lite opens existing collections released (queries fail until loaded); a
        # server keeps them loaded, and loading a loaded collection is a no-op.
        self._call("load_collection", collection, timeout=max(self._timeout, LOAD_TIMEOUT_SECONDS))
        if self._kind == "milvus-lite" and self._lite_path is not None:
            repair_replayed_rows(self._lite_path, collection, lambda rows: self._call("upsert", collection, rows))

    def _seal_lite_writes(self, collection: str, rows: int = 1) -> None:
        """On Milvus Lite, flush after writes. Lite searches unflushed rows by brute force in Python:
        measured at 10k rows, 370 ms per search unflushed against 16-23 ms flushed, while a flush
        costs about 20 ms and 0.15 ms per new row. With the space's in-memory index, which searches
        instead, a flush waits for more rows or a moment (retrieval/lite_flush.py); without it, every
        write flushes. A Milvus server seals segments by itself and rate-limits flushes, so it is left
        alone."""
        if self._kind != "milvus-lite":
            return
        if collection == self._space_collection and self._flusher is not None and self._live_index() is not None:
            self._flusher.wrote(rows)
        else:
            self._call("flush", collection)

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

