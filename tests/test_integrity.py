"""Data integrity below the API: versions and the journal, recovery at start, originals that belong to
one collection, and `prism doctor`. Real parts: MiniLM, the tiny CLIP, Whisper tiny.en, Milvus Lite."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest
from pymilvus import MilvusClient

from encoders import TextEncoderConfig, create_text_encoder
from encoders.clip import ClipConfig, create_clip_encoder
from encoders.whisper import WhisperConfig, create_transcriber
from retrieval import Document, Library, MilvusStore, Query
from retrieval.audio import recording_blob_key
from retrieval.blobs import BlobOwner, BlobStore
from retrieval.images import picture_blob_keys
from retrieval.ingest import item_id
from retrieval.types import Item
from retrieval.versions import Journal, Txn
from retrieval.writes import Writer
from tests.audio_files import speak
from tests.conftest import MINILM, WHISPER_TINY
from tests.image_files import encode
from tests.tiny_clip import make_shape_image

LONG = " ".join(f"Sentence {i} says that the old version talks about trains and stations." for i in range(60))
SHORT = "The new version is one sentence about ferries."


@pytest.fixture(scope="module")
def models(tiny_clip_dir):
    text = create_text_encoder(TextEncoderConfig(backend="sentence-transformers", model=MINILM))
    clip = create_clip_encoder(ClipConfig(model=f"local-dir:{tiny_clip_dir}"))
    whisper = create_transcriber(WhisperConfig(model=WHISPER_TINY, language="en"))
    return text, clip, whisper


def open_library(models, data_dir) -> Library:
    """The Library as the server wires it, on `data_dir` (opening it again is a restart)."""
    text, clip, whisper = models
    uri = str(data_dir / "milvus.db")
    return Library(text, MilvusStore(uri), BlobStore(data_dir / "blobs"), transcriber=whisper, image_store=MilvusStore(uri, space="image"), clip=clip)


@pytest.fixture
def library(models, tmp_path):
    opened = open_library(models, tmp_path)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> bytes:
    return speak("The committee approved the new library budget on Monday.", tmp_path_factory.mktemp("speech") / "r.wav").read_bytes()


def texts_of(library: Library, doc_id: str, collection: str = "c") -> list[str]:
    items, _ = library.list_items(collection, limit=1000)
    return [item.text for item in sorted(items, key=lambda item: item.position) if item.doc_id == doc_id]


def text_space_items(library: Library, doc_id: str, collection: str = "c") -> list[Item]:
    """The document's items as the text space reads them (for tests that broke the image space)."""
    ids = [item for _, item in library.store.newest(collection, ("text", "audio"), 1000)]
    return sorted((item for item in library.store.get_many(ids) if item.doc_id == doc_id), key=lambda item: item.position)


def all_rows(store: MilvusStore) -> list[dict]:
    return [row for page in store.scan() for row in page]


def staged_rows(library: Library, doc_id: str, text: str, version: int) -> tuple[list[Item], list[Item]]:
    """What a write of a one-chunk `text` as `version` of `doc_id` stores in each space."""
    item = Item(
        id=item_id("c", doc_id, 0), collection="c", modality="text", doc_id=doc_id, text=text,
        content_hash=f"staged-{version}", created_at=int(time.time() * 1000), char_end=len(text), version=version,
    )  # fmt: skip
    library.ingestor.attach_vectors("c", [item])
    copies = library.ingestor.mirrors[0].embed("c", [item])
    return [item], copies


def test_readers_see_a_document_as_one_version_while_it_is_replaced(library):
    """Rows of a write in progress are invisible; once it is committed, the version it replaced is."""
    first = library.ingest_documents("c", [Document(text=LONG, id="d")])
    assert first.chunks > 1
    old_texts = texts_of(library, "d")
    version = library.writer.clock.next()
    txn = Txn(version=version, collection="c", doc_ids=("d",))
    library.writer.journal.record(txn)
    text_rows, copies = staged_rows(library, "d", SHORT, version)
    library.store.upsert(text_rows)
    library.image_store.upsert(copies)

    assert texts_of(library, "d") == old_texts  # the new rows are stored, and nobody sees them
    assert library.get_item(item_id("c", "d", 0)).text == old_texts[0]
    assert [info.items for info in library.collections()] == [first.chunks]
    hits = library.search(Query(text="ferries", collection="c", top_k=50)).hits
    assert SHORT not in [hit.item.text for hit in hits]

    committed = library.writer.journal.set_state(txn, "committed")
    assert texts_of(library, "d") == [SHORT]  # now the new version, whole, and nothing of the old one
    assert library.get_item(item_id("c", "d", 0)).text == SHORT
    assert [info.items for info in library.collections()] == [1]
    hits = library.search(Query(text="trains and stations", collection="c", top_k=50)).hits
    assert [hit.item.text for hit in hits] == [SHORT]
    picture = encode(make_shape_image("red", "circle"), "PNG")
    by_picture = library.search(Query(image=picture, collection="c", modalities=("text",), top_k=50)).hits
    assert [hit.item.text for hit in by_picture] == [SHORT]  # the CLIP copies follow the same version

    library.writer._finish(committed)  # the clean-up: the old rows are deleted for good
    assert sorted(row["version"] for row in all_rows(library.store)) == [version]
    assert sorted(row["version"] for row in all_rows(library.image_store)) == [version]
    assert library.writer.journal.entries() == []


def test_a_crash_is_rolled_back_or_finished_at_the_next_start(models, tmp_path):
    library = open_library(models, tmp_path)
    library.ingest_documents("c", [Document(text=LONG, id="d")])
    old_texts = texts_of(library, "d")
    # A crash while version 2 was being written: its rows and a new original are stored, not committed.
    version = library.writer.clock.next()
    orphan = BlobOwner("recording", "c", "rec-new")
    library.writer.journal.record(Txn(version=version, collection="c", doc_ids=("d",), new_blobs=(recording_blob_key("c", "rec-new"),)))
    text_rows, copies = staged_rows(library, "d", SHORT, version)
    library.blobs.put(recording_blob_key("c", "rec-new"), b"RIFF....", "audio/wav", "new.wav", orphan)
    library.store.upsert(text_rows)
    library.image_store.upsert(copies)
    library.close()

    library = open_library(models, tmp_path)  # the restart rolls it back
    assert texts_of(library, "d") == old_texts
    assert version not in {row["version"] for store in (library.store, library.image_store) for row in all_rows(store)}
    assert library.blobs.keys() == []
    assert library.writer.journal.entries() == []

    # A crash after version 3 was committed, before the old rows were deleted.
    version = library.writer.clock.next()
    library.writer.journal.record(Txn(version=version, collection="c", doc_ids=("d",), state="committed"))
    text_rows, copies = staged_rows(library, "d", SHORT, version)
    library.store.upsert(text_rows)
    library.image_store.upsert(copies)
    library.close()

    library = open_library(models, tmp_path)  # the restart finishes it
    try:
        assert texts_of(library, "d") == [SHORT]
        assert {row["version"] for store in (library.store, library.image_store) for row in all_rows(store)} == {version}
        assert library.writer.journal.entries() == []
        assert library.doctor().problems == []
    finally:
        library.close()


def test_an_error_answer_means_nothing_changed(library):
    """A write that fails in the middle (a real failure: a vector space's Milvus collection is gone)
    leaves the document as it was, and the new collection it would have created does not exist."""
    library.ingest_documents("c", [Document(text=LONG, id="d")])
    old_texts = texts_of(library, "d")
    MilvusClient(library.store.uri).drop_collection("prism_image")  # the CLIP copies cannot be written
    with pytest.raises(Exception, match="prism_image|collection"):
        library.ingest_documents("c", [Document(text=SHORT, id="d")])
    assert [item.text for item in text_space_items(library, "d")] == old_texts
    with pytest.raises(Exception, match="prism_image|collection"):
        library.ingest_documents("fresh", [Document(text=SHORT, id="x")])
    assert library.store.collection_names() == ["c"]


def test_a_failed_re_upload_of_a_recording_keeps_its_original(library, recording):
    audio = library.require_audio()
    first = audio.ingest("c", [audio.decode("talk.wav", recording, {"take": 1})], "en")
    key = recording_blob_key("c", first.ids[0])
    assert library.blobs.exists(key)
    MilvusClient(library.store.uri).drop_collection("prism_image")  # fails after the original was written again
    with pytest.raises(Exception, match="prism_image|collection"):
        audio.ingest("c", [audio.decode("talk.wav", recording, {"take": 2})], "en")
    assert library.blobs.path(key).read_bytes() == recording  # the good original is still there
    windows = text_space_items(library, first.ids[0])
    assert windows and {window.metadata["take"] for window in windows} == {1}


def test_originals_and_reuse_belong_to_one_collection(library, recording):
    audio = library.require_audio()
    recording_id = audio.ingest("b", [audio.decode("talk.wav", recording)], "en").ids[0]
    window = next(item for item in library.list_items("b")[0] if item.modality == "audio")
    # A text document in another collection whose id is the recording's id.
    library.ingest_documents("a", [Document(text=SHORT, id=recording_id)])
    assert library.delete_document("a", recording_id) == 1
    assert library.content(window.id)[2].read_bytes() == recording  # b's original is untouched

    assert library.ingest_documents("a", [Document(text="A sentence both collections hold.")]).reused == 0
    again = library.ingest_documents("b", [Document(text="A sentence both collections hold.")])
    assert (again.embedded, again.reused) == (1, 0)  # b is not told that a holds it
    images = library.require_images()
    picture = encode(make_shape_image("blue", "square"), "PNG")
    assert images.ingest("a", [images.decode("p.png", picture)]).embedded == 1
    assert images.ingest("b", [images.decode("p.png", picture)]).embedded == 1
    assert library.delete_document("a", images.decode("p.png", picture).image_id("a")) == 1
    assert library.thumbnail(images.decode("p.png", picture).image_id("b"))[2].is_file()


def test_doctor_reports_each_problem_and_repairs_what_is_safe(library, recording):
    library.ingest_documents("c", [Document(text=LONG, id="d")])
    images = library.require_images()
    picture_id = images.ingest("c", [images.decode("p.png", encode(make_shape_image("red", "circle"), "PNG"), "a red circle")]).ids[0]
    audio = library.require_audio()
    recording_id = audio.ingest("c", [audio.decode("talk.wav", recording)], "en").ids[0]
    assert library.doctor().problems == []

    chunk = library.get_item(item_id("c", "d", 0))
    copy_rows = [row for row in all_rows(library.image_store) if row["modality"] == "text"]
    library.image_store.delete_rows([row["row_id"] for row in copy_rows if row["id"] == chunk.id])  # missing_copy
    ghost = dataclasses.replace(chunk, id="ghost", vector=[1.0] + [0.0] * (images.info.dimension - 1))
    library.image_store.upsert([ghost])  # orphan_copy
    old = dataclasses.replace(chunk, id=item_id("c", "d", 99), version=chunk.version - 1, vector=[0.5] * library.encoder.info.dimension)
    library.store.upsert([old])  # stale_version
    library.blobs.delete(picture_blob_keys("c", picture_id)[1])  # missing_thumbnail
    library.blobs.delete(recording_blob_key("c", recording_id))  # missing_original
    library.blobs.put("img-orphan", b"x", "image/png", "x.png", BlobOwner("picture", "c", "img-gone"))  # orphan_blob
    stray = library.blobs.root / "00" / ".left-by-a-crash.tmp"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"partial")
    os.utime(stray, (time.time() - 3600, time.time() - 3600))  # stray_file
    expected = {"missing_copy", "orphan_copy", "stale_version", "missing_thumbnail", "missing_original", "orphan_blob", "stray_file"}

    report = library.doctor()
    assert {problem.kind for problem in report.problems} == expected
    assert library.blobs.exists("img-orphan") and stray.exists()  # checking changes nothing

    fixed = library.doctor(fix=True)
    assert {problem.kind for problem in fixed.fixed} == expected - {"missing_original"}
    assert [problem.kind for problem in fixed.problems] == ["missing_original"]  # nothing can bring it back
    after = library.doctor()
    assert [problem.kind for problem in after.problems] == ["missing_original"]
    assert library.thumbnail(picture_id)[2].is_file()
    assert not library.blobs.exists("img-orphan") and not stray.exists()
    by_picture = library.search(Query(image=encode(make_shape_image("red", "circle"), "PNG"), collection="c", modalities=("text",), top_k=100)).hits
    assert chunk.id in [hit.item.id for hit in by_picture] and "ghost" not in [hit.item.id for hit in by_picture]


def test_two_replicas_replacing_one_document_leave_the_newer_version_whole(library, tmp_path):
    """Replica A is storing version a of a document when replica B commits a newer version b: B's
    clean-up removes only the rows A had stored by then, so A, at its commit, drops the rest of its own."""
    folder = tmp_path / "shared-journal"
    replica_a = Writer(library.writer.spaces, library.blobs, Journal(folder, shared=True))
    replica_b = Writer(library.writer.spaces, library.blobs, Journal(folder, shared=True))
    library.ingest_documents("c", [Document(text="The first version.", id="d")])
    version_a = replica_a.clock.next()
    txn_a = Txn(version=version_a, collection="c", doc_ids=("d",))
    replica_a.journal.record(txn_a)
    rows_a = [dataclasses.replace(staged_rows(library, "d", f"Part {n} of version a.", version_a)[0][0], id=item_id("c", "d", n), position=n) for n in range(4)]
    library.store.upsert(rows_a[:2])

    rows_b, _ = staged_rows(library, "d", SHORT, 0)
    version_b = replica_b.replace("c", ["d"], {"text": rows_b})
    assert version_b > version_a
    library.store.upsert(rows_a[2:])
    replica_a._finish(replica_a.journal.set_state(txn_a, "committed"))

    assert {row["version"] for row in all_rows(library.store) if row["doc_id"] == "d"} == {version_b}
    assert [item.text for item in text_space_items(library, "d")] == [SHORT]
