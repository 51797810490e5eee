"""MilvusStore against real Milvus: every test taking `store` or `store_uri` runs twice, on
Milvus Lite and on a Milvus server (see tests/fixtures_milvus.py)."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from pymilvus import MilvusClient

from retrieval.filters import build_filter
from retrieval.store import IN_LIST_BATCH, MilvusStore, StoreMismatch, StoreUnavailable
from retrieval.store_schema import UPSERT_BATCH_ROWS, _approximate_bytes, _row_from_item, _size_limited_batches, space_index_params
from retrieval.types import Item

DIM = 8
MODEL = "test/model-a"
T0 = 1_700_000_000_000  # ms since the epoch


def unit(axis: int, scale: float = 1.0) -> list[float]:
    vector = [0.0] * DIM
    vector[axis] = scale
    return vector


def make_item(item_id: str, vector: list[float] | None = None, **fields) -> Item:
    values = dict(
        id=item_id,
        collection="notes",
        modality="text",
        doc_id="doc",
        text=f"text of {item_id}",
        content_hash=f"hash-{item_id}",
        created_at=T0,
        vector=vector if vector is not None else unit(0),
    )
    values.update(fields)
    return Item(**values)


def without_vector(item: Item) -> Item:
    return dataclasses.replace(item, vector=None)


def count_in(store: MilvusStore, collection: str) -> int:
    return store._count(build_filter(collection, None))


def unused_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def search_ids(store: MilvusStore, filter_expr: str, top_k: int = 100) -> list[str]:
    return sorted(hit.item.id for hit in store.search(unit(0), top_k, filter_expr))


@pytest.fixture
def text_store(store: MilvusStore) -> MilvusStore:
    store.ensure_space(DIM, MODEL)
    return store


# ----------------------------------------------------------------------------- connection


def test_kind_ping_and_lite_directory(store: MilvusStore, store_uri: str):
    store.ping()
    if store_uri.endswith(".db"):
        assert store.kind == "milvus-lite"
        assert Path(store_uri).parent.is_dir()  # created by the store
    else:
        assert store.kind == "milvus"


def test_unreachable_server_raises_store_unavailable_quickly():
    uri = f"http://127.0.0.1:{unused_port()}"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        MilvusStore(uri)
    assert time.monotonic() - started < 5
    assert uri in str(raised.value)


def test_credentials_are_not_shown_in_messages():
    port = unused_port()
    with pytest.raises(StoreUnavailable) as raised:
        MilvusStore(f"http://admin:s3cret@127.0.0.1:{port}", timeout=5)
    assert "s3cret" not in str(raised.value)
    assert f"http://127.0.0.1:{port}" in str(raised.value)


def test_lite_that_goes_away_raises_store_unavailable(tmp_path: Path):
    from milvus_lite.server_manager import server_manager_instance

    path = tmp_path / "gone.db"
    store = MilvusStore(str(path), timeout=5)
    try:
        # Milvus Lite is an in-process gRPC server: stopping it is a real "server gone".
        server_manager_instance.release_server(str(path))
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="gone.db"):
            store.ping()
        assert time.monotonic() - started < 6
    finally:
        store.close()


def test_a_collection_not_loaded_counts_as_unavailable(text_store: MilvusStore, store_uri: str):
    # What a restarted server answers while it reloads collections (for ~30 s): a 503, not a 500.
    text_store.upsert([make_item("a")])
    raw = MilvusClient(store_uri)
    try:
        raw.release_collection("prism_text")
        with pytest.raises(StoreUnavailable, match="is unavailable"):
            text_store.search(unit(0), 5, build_filter("notes", None))
    finally:
        raw.load_collection("prism_text")
        raw.close()
    assert len(text_store.search(unit(0), 5, build_filter("notes", None))) == 1


def test_lite_file_held_by_another_process(tmp_path: Path):
    path = tmp_path / "held.db"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pymilvus import MilvusClient; MilvusClient(sys.argv[1]); "
         "print('open', flush=True); sys.stdin.read()",
         str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreUnavailable, match="another one using it"):
            MilvusStore(str(path))
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    MilvusStore(str(path)).close()  # free again once the other process is gone


def test_lite_path_that_is_a_file(tmp_path: Path):
    path = tmp_path / "file.db"
    path.write_text("not a Milvus Lite directory")
    with pytest.raises(StoreUnavailable, match="it is a file"):
        MilvusStore(str(path))


def test_invalid_uri_and_space():
    with pytest.raises(ValueError, match="must be a file path ending in .db"):
        MilvusStore("/tmp/prism.sqlite")
    with pytest.raises(ValueError, match="must be a file path ending in .db"):
        MilvusStore("grpc://127.0.0.1:19530")
    with pytest.raises(ValueError, match="space"):
        MilvusStore("/tmp/never-created/x.db", space="bad-name")


# ----------------------------------------------------------------------------- vector space


def test_ensure_space_creates_once_and_data_survives_reopening(store_uri: str):
    with MilvusStore(store_uri) as store:
        store.ensure_space(DIM, MODEL)
        store.ensure_space(DIM, MODEL)  # idempotent
        store.upsert([make_item("a")])
    with MilvusStore(store_uri) as reopened:
        reopened.ensure_space(DIM, MODEL)
        assert reopened.get("a") == without_vector(make_item("a"))


@pytest.mark.parametrize(
    ("dimension", "model"),
    [(DIM * 2, MODEL), (DIM, "test/model-b")],
    ids=["other-dimension", "other-model"],
)
def test_ensure_space_mismatch_raises_and_writes_nothing(store_uri: str, dimension: int, model: str):
    with MilvusStore(store_uri) as original:
        original.ensure_space(DIM, MODEL)
        original.upsert([make_item("a")])
    with MilvusStore(store_uri) as other:
        with pytest.raises(StoreMismatch) as raised:
            other.ensure_space(dimension, model)
        message = str(raised.value)
        assert f"built with {MODEL} ({DIM}-d)" in message
        assert f"configured model is {model} ({dimension}-d)" in message
        assert store_uri in message
        with pytest.raises(RuntimeError, match="ensure_space"):
            other.upsert([make_item("b", vector=[0.5] * dimension)])
    with MilvusStore(store_uri) as again:
        again.ensure_space(DIM, MODEL)  # the record is unchanged
        assert count_in(again, "notes") == 1


def test_space_without_registry_entry_is_checked_by_its_schema(store_uri: str):
    # A crash between creating the collection and recording its model leaves no record.
    with MilvusStore(store_uri) as store:
        store.ensure_space(DIM, MODEL)
        store._meta_delete("space:text")
        with pytest.raises(StoreMismatch, match=rf"an unrecorded model \({DIM}-d\)"):
            store.ensure_space(DIM * 2, MODEL)
        store.ensure_space(DIM, MODEL)  # same dimension: adopted and recorded again
        assert store._meta_get("space:text") == {"model": MODEL, "dimension": DIM}


def test_a_space_from_an_older_schema_is_refused_with_a_remedy(store_uri: str):
    with MilvusStore(store_uri) as store:
        store.ensure_space(DIM, MODEL)
        # What a space created before images looked like: no width and height fields.
        old = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        for field in store._client.describe_collection("prism_text")["fields"]:
            if field["name"] not in ("width", "height"):
                old.add_field(field["name"], field["type"], **field.get("params", {}), is_primary=field.get("is_primary", False))
        store._client.drop_collection("prism_text")
        store._client.create_collection("prism_text", schema=old, index_params=space_index_params(store.kind))
    with MilvusStore(store_uri) as store:
        try:
            with pytest.raises(StoreMismatch, match="older version of Prism .*width, height.*new PRISM_DATA_DIR"):
                store.ensure_space(DIM, MODEL)
        finally:
            store._client.drop_collection("prism_text")  # the server's database is shared by the next tests


def test_spaces_are_separate_collections(store_uri: str):
    with MilvusStore(store_uri, space="text") as text, MilvusStore(store_uri, space="image") as image:
        text.ensure_space(DIM, MODEL)
        image.ensure_space(DIM * 2, "test/image-model")
        text.upsert([make_item("t")])
        image.upsert([make_item("i", vector=[1.0] * DIM * 2, modality="image")])
        assert text.get("i") is None and image.get("t") is None


def test_reads_on_an_empty_store(store: MilvusStore):
    # On Lite the space collection does not exist yet; on the server it may exist, empty.
    assert store.get("a") is None
    assert store.search(unit(0), 5, build_filter("notes", None)) == []
    assert store.vectors_by_hash(["h"]) == {}
    assert store.document_hashes("notes", "doc") == {}
    assert store.delete_document("notes", "doc") == 0
    assert store.delete_ids(["a"]) == 0
    store.create_collection("notes")
    assert [(info.name, info.items) for info in store.list_collections()] == [("notes", 0)]
    assert store.drop_collection("notes") == 0


# ----------------------------------------------------------------------------- items


def test_upsert_get_round_trip_of_every_field(text_store: MilvusStore):
    item = Item(
        id="item-ü-1",
        collection="notes ✓",
        modality="text",
        doc_id="docs/日本語.pdf",
        text="é" * 30_000 + " end",  # 60 000 bytes: the VARCHAR limit is in bytes
        content_hash="f" * 64,
        created_at=T0 + 123,
        source="/srv/files/日本語.pdf",
        title="Über “quotes” and \"escapes\" \\ ",
        position=7,
        char_start=1000,
        char_end=2000,
        width=4032,
        height=3024,
        start_s=12.5,
        end_s=41.25,
        metadata={
            "lang": "日本語",
            "tags": ["a", "b"],
            "nested": {"x": 1.5, "ok": True, "none": None},
            "big": 2**62,
            "emoji": "😀",
        },
        vector=[0.1 * (i + 1) for i in range(DIM)],
    )
    text_store.upsert([item])
    assert text_store.get(item.id) == without_vector(item)
    assert text_store.get("missing") is None


def test_upsert_same_id_replaces(text_store: MilvusStore):
    text_store.upsert([make_item("a", text="first")])
    text_store.upsert([make_item("a", text="second")])
    assert text_store.get("a").text == "second"
    assert count_in(text_store, "notes") == 1
    # A repeated id within one call: the last one wins, one row.
    text_store.upsert([make_item("b", text="one"), make_item("b", text="two")])
    assert text_store.get("b").text == "two"
    assert count_in(text_store, "notes") == 2


def test_upsert_validates_before_writing(store: MilvusStore):
    with pytest.raises(RuntimeError, match="ensure_space"):
        store.upsert([make_item("a")])
    store.ensure_space(DIM, MODEL)
    bad_items = [
        (make_item("a", vector=[1.0] * (DIM + 1)), "vector has shape"),
        (dataclasses.replace(make_item("a"), vector=None), "a vector is required"),
        (make_item("a", vector=[float("nan")] * DIM), "NaN"),
        (make_item("a", modality="x" * 17), "modality is longer than 16 bytes"),
        (make_item("a", doc_id="é" * 257), "doc_id is longer than 512 bytes"),
        (make_item("a", position=2**63), "position must be a 64-bit integer"),
        (make_item("a", metadata={"when": object()}), "not JSON-serialisable"),
        (make_item(""), "id must not be empty"),
    ]
    for bad, message in bad_items:
        with pytest.raises(ValueError, match=message):
            store.upsert([make_item("good"), bad])
    assert count_in(store, "notes") == 0


def test_large_upserts_and_deletes_are_batched(text_store: MilvusStore):
    total = UPSERT_BATCH_ROWS * 2 + 500
    rng = np.random.default_rng(0)
    items = [make_item(f"i{n}", vector=rng.random(DIM).tolist(), position=n) for n in range(total)]
    text_store.upsert(items)
    assert count_in(text_store, "notes") == total
    keep = [item.id for item in items[:IN_LIST_BATCH * 2]]
    assert text_store.delete_document("notes", "doc", keep_ids=keep) == total - len(keep)
    assert sorted(text_store.document_hashes("notes", "doc")) == sorted(keep)
    assert text_store.delete_ids(keep + ["missing"]) == len(keep)
    assert count_in(text_store, "notes") == 0


def test_upsert_batches_are_capped_by_rows_and_bytes():
    row = make_item("x", text="t" * 1000)
    rows = [_row_from_item(dataclasses.replace(row, id=f"x{n}"), DIM) for n in range(10)]
    assert [len(batch) for batch in _size_limited_batches(rows, max_rows=4)] == [4, 4, 2]
    one_row = _approximate_bytes(rows[0])
    assert [len(batch) for batch in _size_limited_batches(rows, max_bytes=3 * one_row)] == [3, 3, 3, 1]
    # A row larger than the byte cap still goes, alone.
    assert [len(batch) for batch in _size_limited_batches(rows[:2], max_bytes=1)] == [1, 1]


def test_delete_document_keeps_keep_ids(text_store: MilvusStore):
    text_store.upsert(
        [make_item(f"doc-{n}", position=n) for n in range(4)]
        + [make_item("other-doc", doc_id="doc2")]
        + [make_item("same-doc-other-collection", collection="archive")]
    )
    assert text_store.delete_document("notes", "doc", keep_ids=["doc-0", "doc-1"]) == 2
    assert sorted(text_store.document_hashes("notes", "doc")) == ["doc-0", "doc-1"]
    assert text_store.delete_document("notes", "doc") == 2
    assert text_store.delete_document("notes", "doc") == 0
    assert text_store.get("other-doc") is not None
    assert text_store.get("same-doc-other-collection") is not None


def test_document_hashes(text_store: MilvusStore):
    text_store.upsert([make_item("a"), make_item("b", content_hash="shared"), make_item("c", doc_id="x")])
    assert text_store.document_hashes("notes", "doc") == {"a": "hash-a", "b": "shared"}
    assert text_store.document_hashes("archive", "doc") == {}


def test_delete_ids_counts_only_existing_rows(text_store: MilvusStore):
    awkward = "it\"em'1\\"  # pymilvus' own delete(ids=...) would paste this in unescaped
    text_store.upsert([make_item("a"), make_item("b"), make_item(awkward)])
    assert text_store.delete_ids(["a", "missing", "a", awkward]) == 2
    assert text_store.get("a") is None and text_store.get(awkward) is None
    assert text_store.get("b") is not None
    assert text_store.delete_ids([]) == 0
    # Not even a search without any filter finds deleted rows, or anything but items.
    assert [hit.item.id for hit in text_store.search(unit(0), 10, "")] == ["b"]


def test_vectors_by_hash_finds_content_in_any_collection(text_store: MilvusStore):
    text_store.upsert(
        [
            make_item("a", content_hash="h1", vector=unit(1, 2.0)),
            make_item("b", content_hash="h2", vector=unit(2), collection="archive"),
            make_item("c", content_hash="h2", vector=unit(2), collection="notes"),
        ]
    )
    found = text_store.vectors_by_hash(["h1", "h2", "h1", "missing"])
    assert sorted(found) == ["h1", "h2"]
    assert found["h1"] == pytest.approx(unit(1, 2.0))
    assert found["h2"] == pytest.approx(unit(2))
    # More hashes than fit one `in [...]` list.
    many = [f"absent-{n}" for n in range(IN_LIST_BATCH * 2)] + ["h2"]
    assert list(text_store.vectors_by_hash(many)) == ["h2"]
    assert text_store.vectors_by_hash([]) == {}


def test_concurrent_calls_from_several_threads(text_store: MilvusStore):
    # The API calls one store from several threads; the store serialises client calls.
    def work(thread: int) -> list[str]:
        ids = [f"t{thread}-{n}" for n in range(4)]
        for item_id in ids:
            text_store.upsert([make_item(item_id, doc_id=f"doc{thread}", vector=unit(thread))])
            text_store.search(unit(thread), 3, build_filter("notes", {"doc_id": f"doc{thread}"}))
        found = text_store.document_hashes("notes", f"doc{thread}")
        text_store.delete_document("notes", f"doc{thread}", keep_ids=ids[:1])
        return sorted(found)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(4)))
    assert results == [sorted(f"t{thread}-{n}" for n in range(4)) for thread in range(4)]
    assert count_in(text_store, "notes") == 4


# ----------------------------------------------------------------------------- collections


def test_collection_registry(text_store: MilvusStore):
    before = int(time.time() * 1000)
    assert text_store.create_collection("notes") is True
    assert text_store.create_collection("notes") is False
    assert text_store.create_collection("archive") is True
    assert text_store.has_collection("notes") and not text_store.has_collection("nope")
    text_store.upsert([make_item(f"n{n}") for n in range(3)] + [make_item(f"a{n}", collection="archive") for n in range(2)])

    listed = text_store.list_collections()
    assert [(info.name, info.items) for info in listed] == [("archive", 2), ("notes", 3)]
    assert all(before <= info.created_at <= int(time.time() * 1000) for info in listed)

    assert text_store.drop_collection("notes") == 3
    assert not text_store.has_collection("notes")
    assert [(info.name, info.items) for info in text_store.list_collections()] == [("archive", 2)]
    assert text_store.get("n0") is None and text_store.get("a0") is not None
    assert text_store.drop_collection("never-existed") == 0


def test_collection_names_with_quotes(text_store: MilvusStore):
    name = 'we"ird \\ name\'s'
    text_store.create_collection(name)
    text_store.upsert([make_item("w", collection=name)])
    assert [(info.name, info.items) for info in text_store.list_collections()] == [(name, 1)]
    assert search_ids(text_store, build_filter(name, None)) == ["w"]
    assert text_store.drop_collection(name) == 1


# ----------------------------------------------------------------------------- search


def test_search_ranks_nearest_first_with_cosine_scores(text_store: MilvusStore):
    vectors = {
        "x": unit(0, 3.0),  # same direction as the query, another length
        "xy": [1.0, 1.0] + [0.0] * (DIM - 2),
        "y": unit(1),
        "minus-x": unit(0, -1.0),
        "mixed": [0.9, 0.1, 0.3] + [0.0] * (DIM - 3),
    }
    text_store.upsert([make_item(item_id, vector=vector) for item_id, vector in vectors.items()])
    query = [2.0] + [0.0] * (DIM - 1)
    hits = text_store.search(query, 10, build_filter("notes", None))

    def cosine(a, b):
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))

    assert [hit.item.id for hit in hits] == ["x", "mixed", "xy", "y", "minus-x"]
    for hit in hits:
        assert hit.score == pytest.approx(cosine(query, vectors[hit.item.id]), abs=1e-4)
        assert hit.item.vector is None and hit.item.text == f"text of {hit.item.id}"
    assert [hit.item.id for hit in text_store.search(query, 2, build_filter("notes", None))] == ["x", "mixed"]


def test_search_checks_its_arguments(text_store: MilvusStore):
    with pytest.raises(ValueError, match="top_k"):
        text_store.search(unit(0), 0, build_filter("notes", None))
    with pytest.raises(ValueError, match="dimensions"):
        text_store.search([1.0, 0.0], 5, build_filter("notes", None))


FILTER_ROWS = [
    make_item("r1", doc_id="d1", source="a.pdf", title="Alpha", created_at=T0 + 1,
              metadata={"lang": "en", "year": 2023, "draft": True, "score": 0.5}),
    make_item("r2", doc_id="d2", source="b.pdf", title="Beta", created_at=T0 + 2,
              metadata={"lang": "de", "year": 2024, "draft": False, "score": 1.5}),
    make_item("r3", doc_id="d3", source="a.pdf", title="Gamma", created_at=T0 + 3,
              metadata={"lang": "en", "year": 2024, "tags": ["x"]}),
    make_item("r4", doc_id="d4", source="c.png", title="Delta", created_at=T0 + 4, modality="image",
              metadata={"lang": "fr", "year": "2024"}),
    make_item("elsewhere", doc_id="d1", collection="archive", created_at=T0 + 1,
              metadata={"lang": "en", "year": 2023}),
]  # fmt: skip

FILTER_CASES = [
    ({}, None, ["r1", "r2", "r3", "r4"]),
    ({}, "text", ["r1", "r2", "r3"]),
    ({"doc_id": "d1"}, None, ["r1"]),
    ({"doc_id": ["d1", "d3", "nope"]}, None, ["r1", "r3"]),
    ({"source": "a.pdf"}, None, ["r1", "r3"]),
    ({"title": ["Beta", "Delta"]}, None, ["r2", "r4"]),
    ({"modality": "image"}, None, ["r4"]),
    ({"created_at": T0 + 2}, None, ["r2"]),
    ({"created_at": {"gte": T0 + 2}}, None, ["r2", "r3", "r4"]),
    ({"created_at": {"gt": T0 + 1, "lte": T0 + 3}}, None, ["r2", "r3"]),
    ({"created_at": {"lt": T0 + 1}}, None, []),
    ({"metadata": {"lang": "en"}}, None, ["r1", "r3"]),
    ({"metadata": {"year": 2024}}, None, ["r2", "r3"]),  # the string "2024" is not 2024
    ({"metadata": {"year": "2024"}}, None, ["r4"]),
    ({"metadata": {"year": [2023, "2024"]}}, None, ["r1", "r4"]),
    ({"metadata": {"draft": True}}, None, ["r1"]),
    ({"metadata": {"draft": False}}, None, ["r2"]),
    ({"metadata": {"score": 0.5}}, None, ["r1"]),
    ({"metadata": {"score": [0.5, 1.5]}}, None, ["r1", "r2"]),
    ({"metadata": {"missing_key": "x"}}, None, []),
    ({"metadata": {"lang": "en", "year": 2024}, "source": "a.pdf"}, "text", ["r3"]),
]


def test_filters_restrict_search_results(text_store: MilvusStore):
    text_store.upsert(FILTER_ROWS)
    failures = []
    for filters, modality, expected in FILTER_CASES:
        expression = build_filter("notes", filters, modality=modality)
        got = search_ids(text_store, expression)
        if got != expected:
            failures.append(f"{expression}: got {got}, expected {expected}")
    assert failures == []


# Strings that must match exactly their own row. Control characters other than \n \r \t are
# passed to Milvus unescaped (Lite does not understand \u escapes): this proves both accept them.
SPECIAL_VALUES = [
    'quo"te', "back\\slash", "trail\\", '\\"', '" or 1==1 or "', "') or true or ('",
    "new\nline", "cr\rlf", "tab\there", "single'quote", "héllo ✓ 日本 😀", "",
    "%", "_", "line\u2028sep", "bom\ufeff",
    *(f"c{chr(code)}c" for code in [*range(0x20), 0x7F, 0x85, 0x9F]),
]  # fmt: skip


def test_special_strings_in_filters_match_only_their_row(text_store: MilvusStore):
    items = [
        make_item(f"s{n}'\"", doc_id=value, source=value, title=value, metadata={"k": value},
                  content_hash=f"h{n}")
        for n, value in enumerate(SPECIAL_VALUES)
    ]  # fmt: skip
    text_store.upsert(items)
    failures = []
    for item in items:
        value = item.doc_id
        for filters in (
            {"doc_id": value},
            {"title": [value, "zz"]},
            {"source": value, "metadata": {"k": value}},
            {"metadata": {"k": [value, "zz"]}},
        ):
            got = search_ids(text_store, build_filter("notes", filters))
            if got != [item.id]:
                failures.append(f"{filters!r}: got {got}")
        if text_store.document_hashes("notes", value) != {item.id: item.content_hash}:
            failures.append(f"document_hashes({value!r})")
        if text_store.get(item.id) != without_vector(item):
            failures.append(f"get({item.id!r})")
    assert failures == []
    # The injection attempt deleted only its own document.
    assert text_store.delete_document("notes", '" or 1==1 or "') == 1
    assert count_in(text_store, "notes") == len(items) - 1


def test_lite_file_is_released_when_its_last_store_closes(tmp_path: Path):
    # Two stores on one Lite file in one process share its in-process server: closing one must
    # not pull it from under the other; closing the last must free the file for other processes.
    path = str(tmp_path / "shared.db")
    first, second = MilvusStore(path), MilvusStore(path)
    first.ensure_space(DIM, MODEL)
    first.close()
    second.ensure_space(DIM, MODEL)
    second.upsert([make_item("a")])
    assert second.get("a") is not None
    second.close()
    other_process = subprocess.run(
        [sys.executable, "-c",
         "import sys; from pymilvus import MilvusClient; "
         "client = MilvusClient(sys.argv[1]); client.load_collection('prism_text'); "
         "print(client.query('prism_text', filter='id == \"a\"', output_fields=['id']))",
         path],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert other_process.returncode == 0, other_process.stderr[-2000:]
    assert "'id': 'a'" in other_process.stdout
