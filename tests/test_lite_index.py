"""The in-memory index of Milvus Lite (retrieval/lite_index.py, store_index.py).

Searches through it give exactly what an exact search gives: the same items in the same order, with the
same scores, as numpy over the stored vectors and as Lite's own search (a twin store with the index
off, fed the same writes), with every kind of filter, after deletes and new versions, and after a
restart (the index read back from Lite's tables, or through the client). Reads by field agree with
Lite's. Writes in progress stay hidden and a committed write hides what it replaced. Real parts: Milvus
Lite, the Writer and its journal; random vectors."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from retrieval import lite_index
from retrieval.blobs import BlobStore
from retrieval.filters import build_filter
from retrieval.lite_index import LiteIndex
from retrieval.lite_direct import fill
from retrieval.lite_flush import DelayedFlush
from retrieval.lite_match import RowMatch
from retrieval.store import MilvusStore
from retrieval.types import Item
from retrieval.versions import Journal, Txn
from retrieval.writes import Writer

DIM = 16
MODEL = "test/random"
T0 = 1_700_000_000_000
SOURCES = ("a.md", "b.pdf", "c.txt")
TITLES = ("Owls", "Bikes", "")
# Mixed JSON types under one key: Lite compares with Python's == (1 matches 1.0 and true).
META_VALUES = (1, 2, 0, 1.0, 1.5, True, False, "x", "1", "", [1, 2], {"n": 1}, None)
FILTERS = [
    None,
    {"doc_id": "d7"},
    {"doc_id": ["d1", "d2", "d3", "d40", "nope"]},
    {"source": "a.md"},
    {"source": ["b.pdf", "c.txt"], "title": "Owls"},
    {"title": ""},
    {"created_at": T0 + 5},
    {"created_at": {"gte": T0 + 3, "lt": T0 + 8}},
    {"created_at": {"gt": T0 + 9}},
    {"metadata": {"k": 1}},
    {"metadata": {"k": [True, "x"]}},
    {"metadata": {"k": 1.5}},
    {"metadata": {"k": "1"}},
    {"metadata": {"k": False, "g": [0, 1]}},
    {"metadata": {"missing": 1}},
    {"metadata": {"g": 2}, "source": "a.md", "created_at": {"lte": T0 + 6}},
]


class Twins:
    """Two Lite stores fed the same writes through Writers: `indexed` (the index on) and `plain` (off,
    so Lite searches itself), and `stored`: the current version's items of every document."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.indexed = self._open("indexed")
        self.plain = self._open("plain", lite_index_max_items=0)
        self.writers = [self._writer(store, name) for store, name in ((self.indexed, "indexed"), (self.plain, "plain"))]
        self.stored: dict[tuple[str, str], list[Item]] = {}

    def _open(self, name: str, **options) -> MilvusStore:
        store = MilvusStore(str(self.folder / name / "milvus.db"), **options)
        store.ensure_space(DIM, MODEL)
        return store

    def _writer(self, store: MilvusStore, name: str) -> Writer:
        return Writer({"text": store}, BlobStore(self.folder / name / "blobs"), Journal(self.folder / name / "journal"))

    def replace(self, collection: str, documents: dict[str, list[Item]]) -> None:
        for writer in self.writers:
            writer.replace(collection, list(documents), {"text": [dataclasses.replace(item) for items in documents.values() for item in items]})
        for doc_id, items in documents.items():
            self.stored[(collection, doc_id)] = items

    def delete_documents(self, collection: str, doc_ids: list[str]) -> None:
        for writer in self.writers:
            writer.delete_documents(collection, doc_ids)
        for doc_id in doc_ids:
            self.stored.pop((collection, doc_id), None)

    def delete_item(self, collection: str, doc_id: str, item_id: str) -> None:
        for writer in self.writers:
            writer.delete_items(collection, doc_id, [item_id])
        self.stored[(collection, doc_id)] = [item for item in self.stored[(collection, doc_id)] if item.id != item_id]

    def drop(self, collection: str) -> None:
        for writer in self.writers:
            writer.drop_collection(collection, [])
        self.stored = {key: items for key, items in self.stored.items() if key[0] != collection}

    def reopen_indexed(self) -> None:
        self.indexed.close()
        self.indexed = self._open("indexed")
        self.writers[0] = self._writer(self.indexed, "indexed")

    def items(self) -> list[Item]:
        return [item for items in self.stored.values() for item in items]

    def close(self) -> None:
        self.indexed.close()
        self.plain.close()


def random_documents(rng: random.Random, collection: str, doc_ids: list[str], tag: str) -> dict[str, list[Item]]:
    documents = {}
    for doc_id in doc_ids:
        source, title, created_at = rng.choice(SOURCES), rng.choice(TITLES), T0 + rng.randrange(12)
        metadata = {"g": rng.randrange(3)} | ({} if rng.random() < 0.2 else {"k": rng.choice(META_VALUES)})
        metadata = {key: value for key, value in metadata.items() if value is not None}
        documents[doc_id] = [
            Item(
                id=f"{collection}-{doc_id}-{position}", collection=collection, modality=rng.choice(("text", "image", "audio")),
                doc_id=doc_id, text=f"{tag} {doc_id} chunk {position}", content_hash=f"{tag}-{doc_id}-{position}",
                created_at=created_at, source=source, title=title, position=position, metadata=metadata,
                vector=[rng.gauss(0, 1) for _ in range(DIM)],
            )  # fmt: skip
            for position in range(rng.randrange(1, 5))
        ]
    return documents


def matches(item: Item, collection: str, filters: dict | None, modalities: list[str] | None) -> bool:
    """The filter's meaning, written out in Python, for the numpy reference."""
    if item.collection != collection or (modalities is not None and item.modality not in modalities):
        return False
    filters = filters or {}
    for field in ("doc_id", "source", "title"):
        if field in filters and getattr(item, field) not in ([filters[field]] if isinstance(filters[field], str) else filters[field]):
            return False
    created = filters.get("created_at")
    if isinstance(created, int) and item.created_at != created:
        return False
    if isinstance(created, dict):
        checks = {"gte": item.created_at >= created.get("gte", item.created_at), "gt": item.created_at > created.get("gt", item.created_at - 1),
                  "lte": item.created_at <= created.get("lte", item.created_at), "lt": item.created_at < created.get("lt", item.created_at + 1)}  # fmt: skip
        if not all(checks.values()):
            return False
    for key, wanted in filters.get("metadata", {}).items():
        value = item.metadata.get(key)
        wanted = wanted if isinstance(wanted, list) else [wanted]
        if value is None or isinstance(value, (list, dict)) or not any(value == candidate for candidate in wanted):
            return False
    return True


def exact_search(items: list[Item], query: np.ndarray, top_k: int, keep) -> list[tuple[str, float]]:
    """Numpy's exact top_k by cosine similarity among the items `keep` accepts."""
    allowed = [item for item in items if keep(item)]
    if not allowed:
        return []
    vectors = np.asarray([item.vector for item in allowed], dtype=np.float64)
    scores = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [(allowed[index].id, float(scores[index])) for index in order]


def assert_searches_are_exact(twins: Twins, rng: random.Random, queries: int = 3) -> int:
    """Every filter, with and without modalities, several top_k: indexed == numpy == Lite. Returns the
    number of non-empty comparisons (so that a test can tell it compared something)."""
    compared = 0
    for collection in ("alpha", "beta"):
        for filters in FILTERS:
            for modalities in (None, ["text", "audio"]):
                expression = build_filter(collection, filters, modality=modalities)
                for _ in range(queries):
                    query = np.asarray([rng.gauss(0, 1) for _ in range(DIM)])
                    for top_k in (1, 10, 60):
                        expected = exact_search(twins.items(), query, top_k, lambda item: matches(item, collection, filters, modalities))
                        got = twins.indexed.search(query.tolist(), top_k, expression)
                        lite = twins.plain.search(query.tolist(), top_k, expression)
                        assert [hit.item.id for hit in got] == [item_id for item_id, _ in expected] == [hit.item.id for hit in lite], (filters, modalities, top_k)
                        assert [hit.score for hit in got] == pytest.approx([score for _, score in expected], abs=1e-5)
                        assert [dataclasses.replace(hit.item, version=0) for hit in got] == [dataclasses.replace(hit.item, version=0) for hit in lite]
                        compared += bool(expected)
    return compared


def assert_reads_agree(twins: Twins) -> None:
    """Reads the index answers (by id, by document, by content, counts, listings) agree with Lite's."""
    indexed, plain = twins.indexed, twins.plain
    ids = [item.id for item in twins.items()][::3] + ["no-such-item"]
    strip = lambda items: [dataclasses.replace(item, version=0) for item in items]  # noqa: E731
    assert strip(indexed.get_many(ids)) == strip(plain.get_many(ids)) and len(indexed.get_many(ids)) == len(ids) - 1
    for collection in ("alpha", "beta", "gamma"):
        assert indexed.newest(collection, ["text", "image"], 25) == plain.newest(collection, ["text", "image"], 25)
        assert indexed.count(collection, ["audio"]) == plain.count(collection, ["audio"])
        assert sorted(indexed.document_ids(collection, "text")) == sorted(plain.document_ids(collection, "text"))
        assert indexed.has_rows(collection) == plain.has_rows(collection)
    assert [(info.name, info.items) for info in indexed.list_collections()] == [(info.name, info.items) for info in plain.list_collections()]
    for (collection, doc_id), items in list(twins.stored.items())[:20]:
        assert indexed.document_hashes(collection, doc_id) == plain.document_hashes(collection, doc_id) == {item.id: item.content_hash for item in items}
    hashes = [item.content_hash for item in twins.items()][::5] + ["no-such-hash"]
    for collection in ("alpha", None):
        found = indexed.vectors_by_hash(hashes, collection)
        assert found == plain.vectors_by_hash(hashes, collection) and found
    assert sorted(indexed.existing_ids(ids)) == sorted(plain.existing_ids(ids))
    assert indexed.index_status()["enabled"] and indexed.index_status()["rows"] == len(twins.items())
    assert not plain.index_status()["enabled"]


@pytest.fixture(scope="module", params=["half-precision scan", "gather"])
def twins(request, tmp_path_factory):
    """Twins with a few hundred rows. The index scores a filter's rows at once when it allows at most
    GATHER_AT_MOST of them, and through the half-precision scan above: each way is tested."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "half-precision scan":
            patch.setattr(lite_index, "GATHER_AT_MOST", 0)
        rng = random.Random(14)
        made = Twins(tmp_path_factory.mktemp("lite-index"))
        for collection in ("alpha", "beta"):
            made.replace(collection, random_documents(rng, collection, [f"d{n}" for n in range(60)], "v1"))
        yield made
        made.close()


def test_searches_are_exact_with_every_filter(twins):
    assert assert_searches_are_exact(twins, random.Random(1)) > 300
    assert_reads_agree(twins)


def test_deletes_and_new_versions_keep_it_exact(twins):
    rng = random.Random(2)
    twins.replace("alpha", random_documents(rng, "alpha", [f"d{n}" for n in range(0, 60, 4)], "v2"))  # new versions
    twins.replace("beta", random_documents(rng, "beta", [f"n{n}" for n in range(10)], "v1"))  # new documents
    twins.delete_documents("alpha", ["d1", "d2", "no-such-doc"])
    doc_id = next(doc for (collection, doc), items in twins.stored.items() if collection == "beta" and len(items) > 1)
    twins.delete_item("beta", doc_id, twins.stored[("beta", doc_id)][0].id)
    twins.replace("gamma", random_documents(rng, "gamma", ["g1", "g2"], "v1"))
    twins.drop("gamma")
    assert twins.indexed.scan().__next__()  # the store holds rows: the comparisons below are not vacuous
    assert assert_searches_are_exact(twins, rng, queries=2) > 200
    assert_reads_agree(twins)


def test_a_restart_reads_the_same_index_back(twins):
    twins.reopen_indexed()  # filled from Lite's tables
    assert assert_searches_are_exact(twins, random.Random(3), queries=1) > 100
    assert_reads_agree(twins)
    # The slow way in (through the client), which the store takes when Lite's tables cannot be read:
    # a path Lite has no server for makes the direct read fail.
    store = twins.indexed
    through_client = LiteIndex(DIM)
    assert fill(through_client, "/no/such/milvus.db", "prism_text", 10**6, lambda: len(twins.items()), store.scan, store.rows_by_key) == "client"
    direct = store._index
    assert sorted(row.row_id for row in through_client.rows(RowMatch())) == sorted(row.row_id for row in direct.rows(RowMatch()))
    query = np.ones(DIM).tolist()
    expression = build_filter("alpha", {"metadata": {"k": [1, "x"]}})
    slow, fast = (index.search(query, 20, expression.conditions) for index in (through_client, direct))
    assert [row.row_id for row, _ in slow] == [row.row_id for row, _ in fast] and len(slow) == 20
    assert [score for _, score in slow] == pytest.approx([score for _, score in fast])


def test_writes_in_progress_are_hidden_and_committed_ones_hide_what_they_replaced(tmp_path):
    store = MilvusStore(str(tmp_path / "milvus.db"))
    try:
        store.ensure_space(DIM, MODEL)
        writer = Writer({"text": store}, BlobStore(tmp_path / "blobs"), Journal(tmp_path / "journal"))
        first = random_documents(random.Random(4), "c", ["doc"], "first")["doc"]
        writer.replace("c", ["doc"], {"text": first})
        query = first[0].vector

        def texts() -> set[str]:
            return {hit.item.text.split()[0] for hit in store.search(query, 10, build_filter("c", None))}

        second = [dataclasses.replace(item, text=item.text.replace("first", "second")) for item in first]
        txn = Txn(version=writer.clock.next(), collection="c", doc_ids=("doc",))
        writer.journal.record(txn)
        store.upsert([dataclasses.replace(item, version=txn.version) for item in second])
        assert texts() == {"first"}  # stored, not committed: invisible
        assert {item.text.split()[0] for item in store.get_many([item.id for item in first])} == {"first"}
        assert store.count("c", ["text", "image", "audio"]) == len(first)
        committed = writer.journal.set_state(txn, "committed")
        assert len([row for page in store.scan() for row in page]) == 2 * len(first)  # both versions stored
        assert texts() == {"second"}  # committed: the old version is hidden before it is deleted
        assert store.count("c", ["text", "image", "audio"]) == len(first)
        store.delete_replaced(committed)
        assert store.index_status()["rows"] == len(first) and texts() == {"second"}
        third = Txn(version=writer.clock.next(), collection="c", doc_ids=("doc",))
        writer.journal.record(third)
        store.upsert([dataclasses.replace(item, text="third", version=third.version) for item in first])
        writer.journal.set_state(third, "rolledback")
        assert texts() == {"second"}  # rolled back: never seen
    finally:
        store.close()


def test_readers_see_one_version_of_each_document_while_writers_replace_them(tmp_path):
    store = MilvusStore(str(tmp_path / "milvus.db"))
    try:
        store.ensure_space(DIM, MODEL)
        writer = Writer({"text": store}, BlobStore(tmp_path / "blobs"), Journal(tmp_path / "journal"))
        rng = random.Random(5)
        doc_ids = [f"d{n}" for n in range(6)]
        writer.replace("c", doc_ids, {"text": [item for items in random_documents(rng, "c", doc_ids, "r0").values() for item in items]})
        done = threading.Event()
        seen: list[dict[str, set[str]]] = []
        failures: list[BaseException] = []

        def read() -> None:
            try:
                while not done.is_set():
                    by_document: dict[str, set[str]] = {}
                    for hit in store.search([rng.gauss(0, 1) for _ in range(DIM)], 40, build_filter("c", None)):
                        by_document.setdefault(hit.item.doc_id, set()).add(hit.item.text.split()[0])
                    seen.append(by_document)
            except BaseException as error:  # noqa: BLE001
                failures.append(error)

        readers = [threading.Thread(target=read) for _ in range(3)]
        for reader in readers:
            reader.start()
        for round_ in range(1, 16):
            documents = random_documents(rng, "c", rng.sample(doc_ids, 3), f"r{round_}")
            writer.replace("c", list(documents), {"text": [item for items in documents.values() for item in items]})
        done.set()
        for reader in readers:
            reader.join()
        assert not failures
        assert seen and all(len(versions) == 1 for by_document in seen for versions in by_document.values())
        assert store.index_status()["rows"] == store.count("c", ["text", "image", "audio"])
    finally:
        store.close()


def test_past_its_limit_the_index_is_off_and_lite_searches(tmp_path):
    rng = random.Random(6)
    items = [item for items in random_documents(rng, "c", [f"d{n}" for n in range(8)], "v").values() for item in items]
    limit = len(items) - 1
    store = MilvusStore(str(tmp_path / "milvus.db"), lite_index_max_items=limit)
    try:
        store.ensure_space(DIM, MODEL)
        store.upsert(items[:limit])
        assert store.index_status()["enabled"]
        store.upsert(items[limit:])  # one row too many: the index turns itself off
        status = store.index_status()
        assert not status["enabled"] and "PRISM_LITE_INDEX_MAX_ITEMS" in status["state"]
        query = np.asarray(items[0].vector)
        expected = exact_search(items, query, 5, lambda item: True)
        assert [(hit.item.id, pytest.approx(hit.score, abs=1e-5)) for hit in store.search(query.tolist(), 5, build_filter("c", None))] == expected
    finally:
        store.close()
    reopened = MilvusStore(str(tmp_path / "milvus.db"), lite_index_max_items=limit)
    try:
        reopened.ensure_space(DIM, MODEL)
        assert not reopened.index_status()["enabled"] and "more than PRISM_LITE_INDEX_MAX_ITEMS" in reopened.index_status()["state"]
        assert [hit.item.id for hit in reopened.search(query.tolist(), 5, build_filter("c", None))] == [item_id for item_id, _ in expected]
    finally:
        reopened.close()


def test_near_ties_are_ranked_exactly_though_the_scan_is_half_precision():
    """Rows whose scores differ by less than float16 can tell apart: the half-precision scan only picks
    candidates, and the float32 rescoring ranks them as numpy does."""
    rng = np.random.default_rng(7)
    direction = rng.standard_normal(DIM)
    vectors = (direction + 0.05 * rng.standard_normal((3000, DIM))).astype(np.float32)
    index = LiteIndex(DIM)
    rows = [
        {"id": f"r{n}", "collection": "c", "modality": "text", "doc_id": f"d{n}", "source": "", "title": "", "content_hash": str(n),
         "metadata": {}, "created_at": T0, "version": 1, "vector": vector}
        for n, vector in enumerate(vectors)
    ]  # fmt: skip
    index.add_rows(rows)
    query = direction + 0.05 * rng.standard_normal(DIM)
    conditions = build_filter("c", None).conditions
    view = index.view()
    candidates = view.storage.scan.candidates(query / np.linalg.norm(query), index._mask(view, conditions), 50, 3000)
    assert candidates is not None and 50 <= len(candidates) < 3000  # the band path, not a full scan
    scores = vectors.astype(np.float64) @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    expected = [f"r{n}" for n in np.argsort(-scores)[:50]]
    half = vectors.astype(np.float16).astype(np.float64) @ query
    assert [f"r{n}" for n in np.argsort(-half)[:50]] != expected  # float16 alone would rank them otherwise
    assert [row.id for row, _ in index.search(query, 50, conditions)] == expected


def test_lite_flushes_once_enough_rows_wait_or_soon_after_a_write():
    flushes: list[int] = []
    waiting = DelayedFlush(lambda: flushes.append(1), max_rows=10, delay_s=3600)
    waiting.wrote(3)
    waiting.wrote(4)
    assert flushes == []  # 7 rows wait: the timer (an hour here) would flush them
    waiting.wrote(3)
    assert flushes == [1]  # 10 rows: at once
    waiting.wrote(1)
    waiting.close()
    assert flushes == [1, 1]  # closing flushes what waits
    waiting.wrote(1)
    assert flushes == [1, 1, 1]  # and after close every write flushes
    soon = DelayedFlush(lambda: flushes.append(2), max_rows=10, delay_s=0.01)
    soon.wrote(1)
    deadline = time.monotonic() + 30
    while 2 not in flushes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flushes.count(2) == 1
