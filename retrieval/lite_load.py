"""Filling the in-memory index (retrieval/lite_index.py) from a Milvus Lite space at start, and the
indexes that the stores of one process share.

Milvus Lite answers pymilvus over gRPC on loopback, so reading 100k rows with their vectors through
the client takes 35-60 s here. Lite runs inside this process, though, and keeps its rows as Arrow
tables (flushed segments) and a MemTable: `read_lite_columns` takes them from there, drops replaced
and deleted rows with Lite's own rule (build_valid_mask), and reads 100k rows in about half a second.
Those are Lite's internals, not its API: if they are not as expected, or what they give disagrees with
Lite's own count of rows, the index is filled through the client instead (`scan`), slowly but surely.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrieval.lite_index import INT_COLUMNS, STRING_COLUMNS, LiteIndex, canonical_json
from retrieval.store_schema import row_key

log = logging.getLogger("prism")

FIELDS = ["row_id", *STRING_COLUMNS, *INT_COLUMNS]
ARROW_SCHEMA = pa.schema([(name, pa.string()) for name in ("row_id", *STRING_COLUMNS)] + [(name, pa.int64()) for name in INT_COLUMNS])


class TooLarge(Exception):
    """The space holds more rows than the index may."""


def fill(index: LiteIndex, lite_path: str, collection: str, max_items: int, count: Callable[[], int], scan: Callable[[list[str]], Iterable[list[dict[str, Any]]]]) -> str:
    """Fill `index` with every row of the space; returns how ("arrow" or "client"). `count` is Lite's
    own count of rows; `scan` reads pages of rows through the client. Raises TooLarge past max_items."""
    expected = count()
    if expected > max_items:
        raise TooLarge(f"{expected} rows")
    try:
        vectors, table = read_lite_columns(lite_path, collection)
        if len(vectors) != expected:
            raise ValueError(f"read {len(vectors)} rows where Lite counts {expected}")
        _check_keys(table)
    except Exception as error:  # noqa: BLE001 - Lite's internals changed: read through its API instead
        log.warning("reading Milvus Lite's %s directly failed (%s): filling the in-memory index through the client, which is slower", collection, error)
        for page in scan([*FIELDS, "vector"]):
            index.add_rows([{**row, "metadata": row["metadata"] or {}} for row in page])
        return "client"
    index.add_columns(vectors, _columns(table))
    return "arrow"


def read_lite_columns(lite_path: str, collection: str) -> tuple[np.ndarray, pa.Table]:
    """Every live row of a Lite collection in this process: its vectors and the index's fields."""
    from milvus_lite.search.bitmap import build_valid_mask
    from milvus_lite.server_manager import server_manager_instance

    _, database, _ = server_manager_instance._servers[os.path.abspath(lite_path)]
    lite = database.get_collection(collection)
    segments, deletes = lite._read_snapshot()
    keys: list[Any] = []
    sequences, vectors, tables = [], [], []
    for segment in segments:
        if segment.num_rows:
            keys.extend(segment.pks)
            sequences.append(segment.seqs)
            vectors.append(segment.vectors)
            tables.append(segment.table.select(FIELDS).cast(ARROW_SCHEMA))
    memtable_keys, memtable_sequences, memtable_vectors, _, memtable_table = lite._memtable.to_search_snapshot(vector_field="vector", include_table=True)
    if memtable_keys:
        keys.extend(memtable_keys)
        sequences.append(memtable_sequences)
        vectors.append(np.asarray(memtable_vectors, dtype=np.float32))
        tables.append(memtable_table.select(FIELDS).cast(ARROW_SCHEMA))
    if not keys:
        return np.zeros((0, 0), dtype=np.float32), ARROW_SCHEMA.empty_table()
    live = build_valid_mask(keys, np.concatenate(sequences), deletes, memtable=lite._memtable)
    table = pa.concat_tables(tables).filter(pa.array(live))
    return np.concatenate(vectors)[live], table


def _check_keys(table: pa.Table) -> None:
    """Every primary key must be the row's id and version (store_schema.row_key): the index keeps
    only those two and rebuilds the key from them."""
    ids, versions, keys = (table.column(name).to_pylist() for name in ("id", "version", "row_id"))
    for item_id, version, key in zip(ids, versions, keys):
        if row_key(item_id, version) != key:
            raise ValueError(f"row {key!r} is not keyed by its id and version")


def _columns(table: pa.Table) -> dict[str, Any]:
    columns: dict[str, Any] = {name: table.column(name) for name in STRING_COLUMNS if name != "metadata"}
    # Lite's JSON text may differ from canonical_json in spacing and key order: each distinct text is
    # parsed once, so that equal objects share one code.
    encoded = pc.dictionary_encode(table.column("metadata").combine_chunks())
    canonical = pa.array([canonical_json(json.loads(text)) for text in encoded.dictionary.to_pylist()], type=pa.string())
    columns["metadata"] = canonical.take(encoded.indices)
    for name in INT_COLUMNS:
        columns[name] = table.column(name).to_numpy()
    return columns


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
