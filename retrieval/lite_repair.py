"""Rows Milvus Lite stores twice after a crash, found and stored once again when a collection opens.

Lite flushes in steps: it writes its MemTable out as a Parquet segment, records the segment in its
manifest, then deletes its write-ahead log. A kill -9 between the last two leaves the log on disk, and
Lite 3.2 replays it at the next start without comparing it with the manifest: every row of that log
is then stored twice, with the same primary key and the same sequence number, once in the segment and
once in the MemTable (and, after the next flush, in two segments). Lite's searches, queries and counts
return both copies (tests/test_lite_recovery.py makes that state on disk).

An upsert of such a key through the client, with the row Lite returns for it, leaves one copy: Lite
tombstones every older copy and stores the row once under a newer sequence number. Finding the keys
reads Lite's internals in this process (as retrieval/lite_direct.py does): the key and sequence number
of every stored row, compared in Arrow (a fraction of a second at 1M rows). If those internals are not
as expected, nothing is repaired and a warning says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrieval.lite_direct import get_rows, lite_collection

log = logging.getLogger("prism")

REPAIR_BATCH = 500


def repair_replayed_rows(lite_path: str, collection: str, upsert: Callable[[list[dict[str, Any]]], None]) -> int:
    """Store once again, through `upsert` (the client's), every row of `collection` that Lite holds
    twice under one key and sequence number; returns how many keys were repaired."""
    try:
        keys = keys_stored_twice(lite_path, collection)
        if not keys:
            return 0
        fields = [field.name for field in lite_collection(lite_path, collection).schema.fields]
        rows = [row for start in range(0, len(keys), REPAIR_BATCH) for row in get_rows(lite_path, collection, keys[start : start + REPAIR_BATCH], fields)]
    except Exception as error:  # noqa: BLE001 - Lite's internals changed: leave it as it is
        log.warning("could not check Milvus Lite's %s for rows stored twice after a crash: %r", collection, error)
        return 0
    log.warning(
        "Milvus Lite's %s held %d rows stored twice (it replayed a write-ahead log it had already flushed, "
        "after a crash): storing them once again",
        collection,
        len(rows),
    )
    for start in range(0, len(rows), REPAIR_BATCH):
        upsert(rows[start : start + REPAIR_BATCH])
    return len(rows)


def keys_stored_twice(lite_path: str, collection: str) -> list[str]:
    """Primary keys whose newest sequence number Lite holds more than once (an upsert always takes a
    new number, so only a replay repeats one)."""
    lite = lite_collection(lite_path, collection)
    segments, _ = lite._read_snapshot()
    keys: list[Any] = []
    sequences: list[np.ndarray] = []
    for segment in segments:
        if segment.num_rows:
            keys.extend(segment.pks)
            sequences.append(np.asarray(segment.seqs, dtype=np.int64))
    memtable_keys, memtable_sequences, *_ = lite._memtable.to_search_snapshot(vector_field=None)
    keys.extend(memtable_keys)
    sequences.append(np.asarray(memtable_sequences, dtype=np.int64))
    if len(keys) < 2:
        return []
    rows = pa.table({"key": pa.array(keys), "seq": np.concatenate(sequences)})
    repeated = rows.group_by(["key", "seq"]).aggregate([([], "count_all")])
    repeated = repeated.filter(pc.greater(repeated["count_all"], 1))
    if not len(repeated):
        return []
    newest = rows.group_by("key").aggregate([("seq", "max")])
    joined = repeated.join(newest, "key")
    return joined.filter(pc.equal(joined["seq"], joined["seq_max"]))["key"].to_pylist()
