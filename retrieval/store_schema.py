"""What the store's Milvus collections look like: their names and fields, their schemas and
indexes (which differ between Milvus Lite and a server), and the conversion between an Item and
a row, including checking that an item fits the schema and batching rows for upsert."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
from pymilvus import CollectionSchema, DataType, MilvusClient
from pymilvus.milvus_client.index import IndexParams

from retrieval.types import Item

StoreKind = Literal["milvus-lite", "milvus"]

META_COLLECTION = "prism_meta"
SPACE_COLLECTION_PREFIX = "prism_"
# prism_{space} must be a valid Milvus collection name.
SPACE_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

# VARCHAR fields of a space collection and their max_length. Milvus counts UTF-8 bytes, not
# characters, so upsert checks byte lengths up front to fail with a message naming the item.
# row_id, the primary key, is the item id and the version (row_key): a new version of a document is
# written beside the old one, never over it (retrieval/versions.py).
VARCHAR_MAX_BYTES: dict[str, int] = {
    "row_id": 96,
    "id": 64,
    "collection": 255,
    "modality": 16,
    "doc_id": 512,
    "source": 1024,
    "title": 1024,
    "text": 65535,
    "content_hash": 64,
}
INT64_FIELDS = ("position", "char_start", "char_end", "width", "height", "created_at", "version")
# Seconds into a recording, for audio segments (0 for everything else).
DOUBLE_FIELDS = ("start_s", "end_s")
# Everything an Item holds except its vector, in schema order.
ITEM_FIELDS = [
    "id", "collection", "modality", "doc_id", "source", "title",
    "position", "char_start", "char_end", "width", "height", "start_s", "end_s", "text", "content_hash",
    "created_at", "version", "metadata",
]  # fmt: skip
# Enough to tell which version of which document a row belongs to (visibility, doctor).
KEY_FIELDS = ["row_id", "id", "collection", "modality", "doc_id", "version"]

# Reads see every write this process made (pymilvus remembers the timestamp of its last write
# to each collection) without waiting for the server's newest timestamp, as "Strong" does:
# measured on the Milvus 2.3 server, Strong costs ~0.5 s per query or search, Session ~3 ms.
# Writes by other processes become visible within about a second. Lite sees all writes at once.
READ_CONSISTENCY = "Session"

META_KEY_MAX_BYTES = 512  # "collection:" + a 255-byte name fits with room to spare
# Milvus requires every collection to have a vector field, even a plain key-value table.
META_DUMMY_DIMENSION = 2
META_DUMMY_VECTOR = [0.0] * META_DUMMY_DIMENSION

HNSW_BUILD_PARAMS = {"M": 16, "efConstruction": 200}
HNSW_MIN_EF = 64

UPSERT_BATCH_ROWS = 1000
# Also cap a batch by size: 1000 rows of long texts would pass the server's 64 MB message limit.
UPSERT_BATCH_BYTES = 16 * 1024 * 1024

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# --------------------------------------------------------------------- collections


def meta_schema() -> CollectionSchema:
    """prism_meta: key -> JSON value."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=META_KEY_MAX_BYTES)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=META_DUMMY_DIMENSION)
    schema.add_field("value", DataType.JSON)
    return schema


def meta_index_params() -> IndexParams:
    index_params = MilvusClient.prepare_index_params()
    index_params.add_index("vector", index_type="FLAT", metric_type="L2")
    return index_params


def space_schema(dimension: int) -> CollectionSchema:
    """prism_{space}: one row per Item, with its vector of `dimension` floats."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("row_id", DataType.VARCHAR, is_primary=True, max_length=VARCHAR_MAX_BYTES["row_id"])
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    for name in ("id", "collection", "modality", "doc_id", "source", "title"):
        schema.add_field(name, DataType.VARCHAR, max_length=VARCHAR_MAX_BYTES[name])
    for name in ("position", "char_start", "char_end", "width", "height"):  # width, height: images, in pixels
        schema.add_field(name, DataType.INT64)
    for name in DOUBLE_FIELDS:
        schema.add_field(name, DataType.DOUBLE)
    schema.add_field("text", DataType.VARCHAR, max_length=VARCHAR_MAX_BYTES["text"])
    schema.add_field("content_hash", DataType.VARCHAR, max_length=VARCHAR_MAX_BYTES["content_hash"])
    schema.add_field("created_at", DataType.INT64)  # ms since the epoch
    schema.add_field("version", DataType.INT64)  # the write that stored the row (retrieval/versions.py)
    schema.add_field("metadata", DataType.JSON)
    return schema


def space_index_params(kind: StoreKind) -> IndexParams:
    index_params = MilvusClient.prepare_index_params()
    if kind == "milvus-lite":
        # Exact search: Lite's HNSW returns too few hits under a selective filter, and
        # Lite is meant for data sets small enough to scan.
        index_params.add_index("vector", index_type="FLAT", metric_type="COSINE")
    else:
        index_params.add_index(
            "vector", index_type="HNSW", metric_type="COSINE", params=HNSW_BUILD_PARAMS
        )
    return index_params


def search_params(kind: StoreKind, top_k: int) -> dict[str, Any]:
    """Search parameters matching the index of space_index_params."""
    if kind == "milvus-lite":
        return {"metric_type": "COSINE", "params": {}}
    # HNSW needs ef >= top_k; 64 keeps recall high for small top_k.
    return {"metric_type": "COSINE", "params": {"ef": max(HNSW_MIN_EF, top_k)}}


# --------------------------------------------------------------------- rows


def row_key(item_id: str, version: int) -> str:
    """The primary key of an item's row in one version."""
    return f"{item_id}@{version:x}"


def upsert_batches(items: Sequence[Item], dimension: int) -> list[list[dict[str, Any]]]:
    """The rows of `items`, each checked against the schema (a ValueError before any row is
    written), in batches that one upsert call can take."""
    # Last one wins for a repeated key, as it would across calls: Milvus may keep both rows
    # of a batch that repeats a primary key.
    rows_by_key = {row_key(item.id, item.version): _row_from_item(item, dimension) for item in items}
    return list(_size_limited_batches(list(rows_by_key.values())))


def _row_from_item(item: Item, dimension: int) -> dict[str, Any]:
    """The Milvus row for `item`, after checking it fits the schema (a ValueError names the
    item and the field, rather than a Milvus error about a whole batch)."""
    if not item.id:
        raise ValueError("an item id must not be empty")
    label = f"item {item.id!r}"
    if item.vector is None:
        raise ValueError(f"{label}: a vector is required")
    vector = np.asarray(item.vector, dtype=np.float32)
    if vector.shape != (dimension,):
        raise ValueError(f"{label}: vector has shape {vector.shape}, the space has {dimension} dimensions")
    if not np.isfinite(vector).all():
        raise ValueError(f"{label}: vector contains NaN or infinity")
    row: dict[str, Any] = {"vector": vector.tolist(), "row_id": row_key(item.id, item.version)}
    for name, max_bytes in VARCHAR_MAX_BYTES.items():
        value = row["row_id"] if name == "row_id" else getattr(item, name)
        if not isinstance(value, str):
            raise ValueError(f"{label}: {name} must be a string, got {type(value).__name__}")
        if len(value.encode()) > max_bytes:
            raise ValueError(f"{label}: {name} is longer than {max_bytes} bytes (UTF-8)")
        row[name] = value
    for name in INT64_FIELDS:
        value = getattr(item, name)
        if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"{label}: {name} must be a 64-bit integer, got {value!r}")
        row[name] = value
    for name in DOUBLE_FIELDS:
        value = getattr(item, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"{label}: {name} must be a finite number, got {value!r}")
        row[name] = float(value)
    if not isinstance(item.metadata, dict):
        raise ValueError(f"{label}: metadata must be a dict, got {type(item.metadata).__name__}")
    try:
        json.dumps(item.metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{label}: metadata is not JSON-serialisable: {exc}") from exc
    row["metadata"] = item.metadata
    return row


def item_from_row(row: dict[str, Any]) -> Item:
    """The Item of a row read with ITEM_FIELDS (without its vector)."""
    return Item(
        id=row["id"],
        collection=row["collection"],
        modality=row["modality"],
        doc_id=row["doc_id"],
        text=row["text"],
        content_hash=row["content_hash"],
        created_at=int(row["created_at"]),
        version=int(row.get("version") or 0),
        source=row["source"],
        title=row["title"],
        position=int(row["position"]),
        char_start=int(row["char_start"]),
        char_end=int(row["char_end"]),
        width=int(row["width"]),
        height=int(row["height"]),
        start_s=float(row["start_s"]),
        end_s=float(row["end_s"]),
        metadata=dict(row["metadata"] or {}),
    )


def _approximate_bytes(row: dict[str, Any]) -> int:
    strings = sum(len(row[name].encode()) for name in VARCHAR_MAX_BYTES)
    return 4 * len(row["vector"]) + strings + len(json.dumps(row["metadata"])) + 8 * (len(INT64_FIELDS) + len(DOUBLE_FIELDS))


def _size_limited_batches(
    rows: list[dict[str, Any]],
    max_rows: int = UPSERT_BATCH_ROWS,
    max_bytes: int = UPSERT_BATCH_BYTES,
) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    batch_bytes = 0
    for row in rows:
        row_bytes = _approximate_bytes(row)
        if batch and (len(batch) >= max_rows or batch_bytes + row_bytes > max_bytes):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(row)
        batch_bytes += row_bytes
    if batch:
        yield batch
