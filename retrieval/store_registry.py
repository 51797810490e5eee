"""The registry of a Milvus database: which model built each vector space, and which user
collections exist, in the small collection prism_meta (key -> JSON value). A part of MilvusStore
(retrieval/store.py), which provides the connection."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from retrieval.filters import string_literal
from retrieval.lite_match import RowMatch, hidden_by
from retrieval.store_items import _collection_is, _hidden_clause
from retrieval.store_schema import (
    META_COLLECTION,
    META_DUMMY_VECTOR,
    READ_CONSISTENCY,
    VARCHAR_MAX_BYTES,
    meta_index_params,
    meta_schema,
)
from retrieval.types import CollectionInfo
from retrieval.versions import Snapshot


def _now_ms() -> int:
    return int(time.time() * 1000)


class CollectionRegistry:
    """prism_meta and the user collections registered in it. Expects from MilvusStore: _call, _query,
    _delete, _space_exists, _space_collection, _lock."""

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
        # On Milvus Lite a point read in this process (store_index._direct_get): every search and
        # ingest asks whether its collection exists.
        rows = self._direct_get(META_COLLECTION, [key], ["key", "value"])
        if rows is None:
            rows = self._query(META_COLLECTION, f"key == {string_literal(key)}", ["value"], limit=1)
        return dict(rows[0]["value"]) if rows else None

    def _meta_put(self, key: str, value: dict[str, Any]) -> None:
        row = {"key": key, "vector": META_DUMMY_VECTOR, "value": value}
        self._call("upsert", META_COLLECTION, [row])

    def _meta_delete(self, key: str) -> None:
        self._delete(META_COLLECTION, f"key == {string_literal(key)}")

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
                count = self._count_visible(snapshot, name) if space_exists else 0
                infos.append(CollectionInfo(name=name, items=count, created_at=row["value"]["created_at"]))
        return sorted(infos, key=lambda info: info.name)

    def drop_collection(self, name: str) -> int:
        """Delete a collection's items, then its registry entry. Returns the items deleted."""
        _check_collection_name(name)
        with self._lock:
            deleted = 0
            if self._space_exists():
                index = self._live_index()
                deleted = index.count(RowMatch(name)) if index is not None else self._count(_collection_is(name))
                if deleted:
                    self._delete_matching(RowMatch(name))
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
        return self._count_visible(self.snapshot(), collection, tuple(modalities))

    def _count_visible(self, snapshot: Snapshot, collection: str, modalities: tuple[str, ...] | None = None) -> int:
        """Rows of the collection (of `modalities`) that the writes in progress do not hide: from the
        in-memory index when it is on (Lite would scan the collection), else counted by Milvus."""
        index = self._live_index()
        if index is not None:
            return index.count(RowMatch(collection, modalities, excluded=hidden_by(snapshot, collection)))
        expression = RowMatch(collection, modalities).expression()
        return self._count(expression + _hidden_clause(snapshot, collection))

    def _count(self, filter_expr: str) -> int:
        rows = self._query(self._space_collection, filter_expr, ["count(*)"])
        return int(rows[0]["count(*)"])


def _check_collection_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError("a collection name must be a non-empty string")
    if len(name.encode()) > VARCHAR_MAX_BYTES["collection"]:
        raise ValueError(
            f"collection name is longer than {VARCHAR_MAX_BYTES['collection']} bytes: {name[:40]!r}..."
        )

