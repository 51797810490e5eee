"""Milvus Lite's recovery after a crash between its flush and the removal of its write-ahead log.

Lite flushes in steps: it writes the MemTable out as a Parquet segment, records the segment in its
manifest, then deletes the write-ahead log. A kill -9 between the last two leaves the log on disk, and
Lite 3.2 replays it at the next start without checking it against the manifest: every row of that
log is then stored twice (the same key and sequence number in the segment and in the MemTable), its
own queries and counts return both, and so did Prism's searches (tests/test_crash.py caught it as a
picture query finding each text chunk twice). The store repairs it when it opens the space.

The state is made on disk exactly as that crash leaves it: the log copied before a flush and put back
after it. Real parts: Milvus Lite and the store."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import pytest

from retrieval.filters import build_filter
from retrieval.store import MilvusStore
from retrieval.store_schema import row_key
from retrieval.types import Item

DIM = 8
MODEL = "test/random"


def make_items(count: int) -> list[Item]:
    rng = random.Random(5)
    return [
        Item(
            id=f"item-{n}", collection="c", modality="text", doc_id=f"d{n // 3}", text=f"chunk {n}",
            content_hash=f"h{n}", created_at=1, source="s.md", title="", position=n % 3, metadata={},
            vector=[rng.gauss(0, 1) for _ in range(DIM)],
        )  # fmt: skip
        for n in range(count)
    ]


def crash_after_flush_before_log_removal(db: Path, items: list[Item]) -> str:
    """Store `items`, keep a copy of Lite's log, flush (closing flushes), put the log back. Returns the
    space's collection name."""
    store = MilvusStore(str(db))
    store.ensure_space(DIM, MODEL)
    store.upsert(items)  # with the in-memory index, Lite flushes a moment later: the rows wait in its log
    collection = store._space_collection
    log_dir = db / "collections" / collection / "wal"
    saved = db.parent / "saved-wal"
    shutil.copytree(log_dir, saved)
    assert any(saved.iterdir()), "Lite's log should hold the rows before the flush"
    store.close()
    assert not any(log_dir.iterdir()), "closing should have flushed and removed the log"
    shutil.copytree(saved, log_dir, dirs_exist_ok=True)
    return collection


@pytest.mark.parametrize("index_max_items", [1000, 0], ids=["in-memory index", "Lite searches"])
def test_rows_replayed_from_a_flushed_log_are_stored_once(tmp_path, caplog, index_max_items):
    items = make_items(12)
    db = tmp_path / "milvus.db"
    collection = crash_after_flush_before_log_removal(db, items)
    store = MilvusStore(str(db), lite_index_max_items=index_max_items)
    try:
        with caplog.at_level(logging.WARNING, logger="prism"):
            store.ensure_space(DIM, MODEL)
        assert "stored twice" in caplog.text, caplog.text
        hits = store.search(items[0].vector, 50, build_filter("c", None))
        assert sorted(hit.item.id for hit in hits) == sorted(item.id for item in items)
        assert store.count("c", ["text"]) == len(items)
        assert int(store._call("get_collection_stats", collection)["row_count"]) == len(items)  # Lite itself
        rows = [row for page in store.scan() for row in page]
        assert sorted(row["row_id"] for row in rows) == sorted({row["row_id"] for row in rows}) and len(rows) == len(items)
    finally:
        store.close()
    reopened = MilvusStore(str(db), lite_index_max_items=index_max_items)
    try:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="prism"):
            reopened.ensure_space(DIM, MODEL)
        assert "stored twice" not in caplog.text  # repaired for good, in Lite's own files
        assert len(reopened.search(items[0].vector, 50, build_filter("c", None))) == len(items)
    finally:
        reopened.close()


def test_a_scan_read_from_lites_tables_equals_the_clients(tmp_path, caplog):
    """The doctor reads every row's keys; on Lite from its tables in this process (fast at start), which
    must give what the client's query gives, deletes and replaced rows included."""
    items = make_items(30)
    store = MilvusStore(str(tmp_path / "milvus.db"))
    try:
        store.ensure_space(DIM, MODEL)
        store.upsert(items[:20])
        store._call("flush", store._space_collection)  # some rows in a segment, the rest in the MemTable
        store.upsert(items[20:])
        store.delete_rows([row_key(items[3].id, 0), row_key(items[25].id, 0)])
        direct = sorted(map(sorted_row, (row for page in store.scan() for row in page)))
        through_client = sorted(map(sorted_row, (row for page in store.scan(expression="version >= 0") for row in page)))
        assert direct == through_client and len(direct) == 28
        assert "directly failed" not in caplog.text  # read from the tables, not through the client again
    finally:
        store.close()


def sorted_row(row: dict) -> tuple:
    return tuple(sorted(row.items()))
