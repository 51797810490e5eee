"""Group commit on a real Writer over Milvus Lite: requests that queue while a write is stored go in as
one write, first come first served; requests sharing a document never share a write and are stored in
the order they came; a request whose row the schema refuses fails alone. The Writer is watched (every
replace recorded) and its first write held at a gate, so that requests pile up: lined up with events
and the queue's own count, never with sleeps."""

from __future__ import annotations

import threading
from typing import Callable

import pytest

from retrieval.blobs import BlobOwner, BlobStore
from retrieval.group_writes import GroupWriter, Replace, groups
from retrieval.store import MilvusStore
from retrieval.types import Item
from retrieval.versions import Journal
from retrieval.writes import BlobWrite, Writer
from tests.servers import poll

WAIT = 60.0
DIM = 4


class WatchedWriter(Writer):
    """The real Writer; records the documents of every replace, and holds them while `gate` is closed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[list[str]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def replace(self, collection, doc_ids, rows, blobs=()):
        self.calls.append(list(doc_ids))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT), "the test never opened the gate"
        return super().replace(collection, doc_ids, rows, blobs)


@pytest.fixture
def writer(tmp_path):
    store = MilvusStore(str(tmp_path / "milvus.db"))
    store.ensure_space(DIM, "test-model")
    writer = WatchedWriter({"text": store}, BlobStore(tmp_path / "blobs"), Journal(tmp_path / "journal"))
    group = GroupWriter(writer, max_group=8, name="test-writes")
    yield writer, group, store
    if writer.gate is not None:
        writer.gate.set()
    group.close()
    store.close()


def item(collection: str, doc_id: str, text: str, vector: list[float] | None = None) -> Item:
    return Item(id=f"{collection}-{doc_id}", collection=collection, modality="text", doc_id=doc_id, text=text, content_hash=text, created_at=0, vector=vector or [1.0, 0.0, 0.0, 0.0])


class Request:
    """group.replace() of one document in a thread of its own."""

    def __init__(self, group: GroupWriter, collection: str, doc_id: str, text: str, vector: list[float] | None = None, blob: bool = False) -> None:
        self.error: BaseException | None = None
        owner = BlobOwner("picture", collection, f"{collection}-{doc_id}")
        blobs = [BlobWrite(f"blob-{doc_id}-{len(text)}", text.encode(), "text/plain", "f.txt", owner)] if blob else []
        run: Callable[[], None] = lambda: group.replace(collection, [doc_id], {"text": [item(collection, doc_id, text, vector)]}, blobs)  # noqa: E731
        self._thread = threading.Thread(target=self._run, args=(run,), daemon=True)
        self._thread.start()

    def _run(self, run: Callable[[], None]) -> None:
        try:
            run()
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            self.error = error

    def join(self) -> Request:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "replace never returned"
        return self


def hold_first_write(writer: WatchedWriter, group: GroupWriter) -> Request:
    writer.gate = threading.Event()
    first = Request(group, "c", "first", "the first write")
    assert writer.entered.wait(WAIT)
    return first


def queue(group: GroupWriter, *requests: tuple) -> list[Request]:
    """Requests queued one after another (each in line before the next starts)."""
    queued = []
    for number, args in enumerate(requests, 1):
        queued.append(Request(group, *args))
        poll(lambda: group.batcher.pending == number, WAIT, f"{number} writes waiting")
    return queued


def texts(store: MilvusStore, *doc_ids: str, collection: str = "c") -> list[str | None]:
    """The stored text of each document's item, None where there is none."""
    found = [store.get(f"{collection}-{doc_id}") for doc_id in doc_ids]
    return [row.text if row is not None else None for row in found]


def test_writes_queued_together_are_stored_as_one(writer):
    watched, group, store = writer
    first = hold_first_write(watched, group)
    waiting = queue(group, ("c", "a", "text of a", None, True), ("c", "b", "text of b", None, True), ("c", "d", "text of d"))
    watched.gate.set()
    assert first.join().error is None and all(request.join().error is None for request in waiting)
    assert watched.calls == [["first"], ["a", "b", "d"]]  # three requests, one write
    assert texts(store, "first", "a", "b", "d") == ["the first write", "text of a", "text of b", "text of d"]
    assert watched.blobs.exists("blob-a-9") and watched.blobs.exists("blob-b-9")
    assert len({row.version for row in store.get_many(["c-a", "c-b", "c-d"])}) == 1  # one version for the group


def test_requests_for_the_same_document_are_stored_apart_in_the_order_they_came(writer):
    watched, group, store = writer
    first = hold_first_write(watched, group)
    waiting = queue(group, ("c", "x", "x, first"), ("c", "y", "y"), ("c", "x", "x, second"), ("other", "x", "x elsewhere"), ("c", "z", "z"))
    watched.gate.set()
    assert first.join().error is None and all(request.join().error is None for request in waiting)
    assert watched.calls == [["first"], ["x", "y"], ["x", "z"], ["x"]]
    assert texts(store, "x", "y", "z") == ["x, second", "y", "z"]  # the later request's version stands
    assert texts(store, "x", collection="other") == ["x elsewhere"]


def test_a_request_the_schema_refuses_fails_alone(writer):
    watched, group, store = writer
    first = hold_first_write(watched, group)
    good, bad, other = queue(group, ("c", "good", "fine"), ("c", "bad", "wrong size", [1.0, 0.0]), ("c", "other", "fine too"))
    watched.gate.set()
    assert first.join().error is None
    assert good.join().error is None and other.join().error is None
    assert isinstance(bad.join().error, ValueError) and "dimensions" in str(bad.error)
    assert watched.calls == [["first"], ["good", "bad", "other"], ["good"], ["bad"], ["other"]]  # the group failed whole, then one by one
    assert texts(store, "good", "bad", "other") == ["fine", None, "fine too"]


def test_when_the_store_fails_every_member_hears_of_it(writer):
    watched, group, store = writer
    first = hold_first_write(watched, group)
    waiting = queue(group, ("c", "a", "a"), ("c", "b", "b"))
    store.close()  # Milvus is gone
    watched.gate.set()
    errors = [request.join().error for request in [first, *waiting]]
    assert all(error is not None for error in errors)
    assert watched.calls == [["first"], ["a", "b"]]  # no retry one by one: the fault is not theirs


def test_groups_are_planned_per_collection_without_shared_documents():
    def request(collection: str, *doc_ids: str) -> Replace:
        return Replace(collection, doc_ids, {})

    planned = groups([request("c", "a"), request("c", "b"), request("d", "a"), request("c", "a", "e"), request("c", "f"), request("d", "b")])
    assert planned == [[0, 1], [2, 5], [3, 4]]
