"""Reading Milvus Lite directly, in this process, rather than through its gRPC server: filling the
in-memory index (retrieval/lite_index.py) at start, and fetching rows by primary key.

Milvus Lite answers pymilvus over gRPC on loopback, so reading 100k rows with their vectors through
the client takes 35-60 s here, and fetching ten rows by primary key 3-5 ms. Lite runs inside this
process, though, and keeps its rows as Arrow tables (flushed segments) and a MemTable:
`read_lite_columns` takes them from there, drops replaced and deleted rows with Lite's own rule
(build_valid_mask), and reads 100k rows in about half a second; `get_rows` calls the engine's point
read that Lite's server calls for `row_id in [...]` (0.6 ms for ten rows). Those are Lite's internals,
not its API: if they are not as expected, or a sample of what they give disagrees with the client's
reading of the same rows, the index is filled through the client instead (`scan`), slowly but surely,
and a fetch that fails goes through the client (which also reports Lite gone or not loaded).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrieval.lite_columns import INT_COLUMNS, STRING_COLUMNS, canonical_json
from retrieval.lite_index import LiteIndex
from retrieval.store_schema import row_key
from retrieval.types import Item

log = logging.getLogger("prism")

FIELDS = ["row_id", *STRING_COLUMNS, *INT_COLUMNS]
SAMPLE_ROWS = 16  # rows compared with the client's reading of them
ARROW_SCHEMA = pa.schema([(name, pa.string()) for name in ("row_id", *STRING_COLUMNS)] + [(name, pa.int64()) for name in INT_COLUMNS])


class TooLarge(Exception):
    """The space holds more rows than the index may."""


def fill(
    index: LiteIndex,
    lite_path: str,
    collection: str,
    max_items: int,
    count: Callable[[], int],
    scan: Callable[[list[str]], Iterable[list[dict[str, Any]]]],
    sample: Callable[[list[str]], list[Item]],
) -> str:
    """Fill `index` with every row of the space; returns how ("arrow" or "client"). `count` is Lite's
    own count of rows (its collection statistics), `scan` reads pages of rows through the client and
    `sample` rows by primary key with their vectors, to compare a few with what was read directly.
    Raises TooLarge past max_items."""
    expected = count()
    if expected > max_items:
        raise TooLarge(f"{expected} rows")
    try:
        vectors, table = read_lite_columns(lite_path, collection)
        if len(vectors) != expected:
            raise ValueError(f"read {len(vectors)} rows where Lite counts {expected}")
        _check_keys(table)
        _check_sample(vectors, table, sample)
    except Exception as error:  # noqa: BLE001 - Lite's internals changed: read through its API instead
        log.warning("reading Milvus Lite's %s directly failed (%s): filling the in-memory index through the client, which is slower", collection, error)
        for page in scan([*FIELDS, "vector"]):
            index.add_rows([{**row, "metadata": row["metadata"] or {}} for row in page])
        return "client"
    index.add_columns(vectors, _columns(table))
    return "arrow"


def lite_collection(lite_path: str, collection: str) -> Any:
    """Milvus Lite's engine object for a collection of the directory this process serves."""
    from milvus_lite.server_manager import server_manager_instance

    _, database, _ = server_manager_instance._servers[os.path.abspath(lite_path)]
    return database.get_collection(collection)


def get_rows(lite_path: str, collection: str, row_ids: list[str], fields: list[str]) -> list[dict[str, Any]]:
    """Rows by primary key, as the client would return them (JSON fields parsed)."""
    from milvus_lite.schema.types import DataType

    lite = lite_collection(lite_path, collection)
    rows = lite.get(row_ids, output_fields=fields)
    json_fields = [field.name for field in lite.schema.fields if field.name in fields and field.dtype == DataType.JSON]
    for row in rows:
        for name in json_fields:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
    return rows


def read_lite_columns(lite_path: str, collection: str, with_vectors: bool = True) -> tuple[np.ndarray, pa.Table]:
    """Every live row of a Lite collection in this process: its vectors (an empty array without
    `with_vectors`) and the index's fields."""
    from milvus_lite.search.bitmap import build_valid_mask

    lite = lite_collection(lite_path, collection)
    segments, deletes = lite._read_snapshot()
    keys: list[Any] = []
    sequences, vectors, tables = [], [], []
    for segment in segments:
        if segment.num_rows:
            keys.extend(segment.pks)
            sequences.append(segment.seqs)
            vectors.append(segment.vectors if with_vectors else np.zeros((segment.num_rows, 0), dtype=np.float32))
            tables.append(segment.table.select(FIELDS).cast(ARROW_SCHEMA))
    vector_field = "vector" if with_vectors else None
    memtable_keys, memtable_sequences, memtable_vectors, _, memtable_table = lite._memtable.to_search_snapshot(vector_field=vector_field, include_table=True)
    if memtable_keys:
        keys.extend(memtable_keys)
        sequences.append(memtable_sequences)
        vectors.append(np.asarray(memtable_vectors, dtype=np.float32) if with_vectors else np.zeros((len(memtable_keys), 0), dtype=np.float32))
        tables.append(memtable_table.select(FIELDS).cast(ARROW_SCHEMA))
    if not keys:
        return np.zeros((0, 0), dtype=np.float32), ARROW_SCHEMA.empty_table()
    live = build_valid_mask(keys, np.concatenate(sequences), deletes, memtable=lite._memtable)
    table = pa.concat_tables(tables).filter(pa.array(live))
    return np.concatenate(vectors)[live], table


def read_key_rows(lite_path: str, collection: str, fields: list[str]) -> list[dict[str, Any]]:
    """`fields` (some of FIELDS) of every live row of a Lite collection in this process, as the
    client's query would give them (metadata is left as Lite's JSON text)."""
    _, table = read_lite_columns(lite_path, collection, with_vectors=False)
    return table.select(fields).to_pylist()


def _check_keys(table: pa.Table) -> None:
    """Every primary key must be the row's id and version (store_schema.row_key): the index keeps
    only those two and rebuilds the key from them."""
    ids, versions, keys = (table.column(name).to_pylist() for name in ("id", "version", "row_id"))
    for item_id, version, key in zip(ids, versions, keys):
        if row_key(item_id, version) != key:
            raise ValueError(f"row {key!r} is not keyed by its id and version")


def _check_sample(vectors: np.ndarray, table: pa.Table, sample: Callable[[list[str]], list[Item]], size: int = SAMPLE_ROWS) -> None:
    """A few rows, evenly spread, must read the same through the client."""
    positions = np.unique(np.linspace(0, len(vectors) - 1, num=min(size, len(vectors)), dtype=np.int64))
    keys = table.column("row_id").take(pa.array(positions)).to_pylist()
    through_client = {row_key(item.id, item.version): item for item in sample(keys)}
    for position, key in zip(positions.tolist(), keys):
        item = through_client.get(key)
        if item is None or item.doc_id != table.column("doc_id")[position].as_py() or not np.allclose(item.vector, vectors[position]):
            raise ValueError(f"row {key!r} read directly differs from the client's")


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
