"""The blob store: original uploads on disk, written atomically, addressed by safe keys only."""

from __future__ import annotations

import hashlib
import os

import pytest

from retrieval.blobs import BlobInfo, BlobOwner, BlobStore, blob_key
from retrieval.errors import NotFound


def all_files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(folder, name), root) for folder, _, names in os.walk(root) for name in names)


def test_put_info_path_delete_round_trip(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    data = bytes(range(256)) * 10

    info = store.put("abc123", data, "audio/mpeg", "song.mp3")

    assert info == BlobInfo(key="abc123", content_type="audio/mpeg", filename="song.mp3", size=len(data))
    assert store.info("abc123") == info
    path = store.path("abc123")
    assert path.read_bytes() == data
    assert path.parent.name == hashlib.sha256(b"abc123").hexdigest()[:2]  # fanned out by a hash of the key

    assert store.delete("abc123") is True
    assert store.info("abc123") is None
    with pytest.raises(NotFound):
        store.path("abc123")
    assert not path.exists()


def test_put_replaces_an_existing_blob(tmp_path):
    store = BlobStore(tmp_path)
    store.put("k1", b"old bytes", "audio/wav", "old.wav")
    store.put("k1", b"new", "audio/ogg", "new.ogg")
    assert store.path("k1").read_bytes() == b"new"
    assert store.info("k1") == BlobInfo("k1", "audio/ogg", "new.ogg", 3)
    assert store.keys() == ["k1"]


def test_writes_leave_no_temporary_files(tmp_path):
    store = BlobStore(tmp_path)
    for index in range(5):
        store.put(f"key{index}", b"x" * index, "application/octet-stream", f"f{index}")
    store.put("key0", b"again", "text/plain", "f0")

    names = all_files(tmp_path)
    assert not [name for name in names if name.endswith(".tmp") or os.path.basename(name).startswith(".")]
    assert len(names) == 10  # one data file and one sidecar per key, nothing else


def test_a_failed_write_leaves_no_temporary_file_and_no_blob(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(TypeError):
        store.put("broken", "not bytes", "text/plain", "x.txt")  # type: ignore[arg-type]
    assert store.info("broken") is None
    assert all_files(tmp_path) == []


@pytest.mark.parametrize("key", ["../x", "a/b", "", "k" * 129, "..", ".hidden", "a\\b", "a b", "ключ", "/etc"])
def test_invalid_keys_are_rejected(tmp_path, key):
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(ValueError):
        store.put(key, b"data", "text/plain", "x.txt")
    with pytest.raises(ValueError):
        store.info(key)
    with pytest.raises(ValueError):
        store.path(key)
    with pytest.raises(ValueError):
        store.delete(key)
    assert all_files(tmp_path) == []  # nothing written anywhere, inside the root or beside it


def test_the_longest_valid_key_is_accepted(tmp_path):
    store = BlobStore(tmp_path)
    key = "k" * 128
    store.put(key, b"data", "text/plain", "x.txt")
    assert store.path(key).read_bytes() == b"data"


def test_delete_is_idempotent(tmp_path):
    store = BlobStore(tmp_path)
    store.put("gone", b"data", "text/plain", "x.txt")
    assert store.delete("gone") is True
    assert store.delete("gone") is False
    assert store.delete("never-was") is False
    assert store.keys() == []


def test_keys_lists_every_stored_key(tmp_path):
    store = BlobStore(tmp_path)
    assert store.keys() == []
    wanted = ["b2", "a1", "a1.x", "zz_top", "-dash", "9"]
    for key in wanted:
        store.put(key, key.encode(), "text/plain", key)
    store.delete("zz_top")
    assert store.keys() == sorted(set(wanted) - {"zz_top"})
    assert [store.path(key).read_bytes() for key in store.keys()] == [key.encode() for key in store.keys()]


def test_a_key_ending_in_json_does_not_collide_with_a_sidecar(tmp_path):
    store = BlobStore(tmp_path)
    store.put("x", b"plain", "text/plain", "x")
    store.put("x.json", b"other", "application/json", "x.json")
    assert store.path("x").read_bytes() == b"plain"
    assert store.path("x.json").read_bytes() == b"other"
    assert store.info("x").size == 5 and store.info("x.json").content_type == "application/json"
    assert store.keys() == ["x", "x.json"]


def test_keys_that_share_a_prefix_spread_over_many_folders(tmp_path):
    """Picture and recording keys all start with the same letters: the folders must not (issue 13.5)."""
    store = BlobStore(tmp_path)
    keys = [blob_key("picture", "default", f"img-{index:04d}") for index in range(512)]
    for key in keys:
        store.put(key, b"x", "image/png", "p.png")
    folders = [entry for entry in tmp_path.iterdir() if entry.is_dir()]
    assert len(folders) > 200  # 512 keys over 256 folders: a hash fills nearly all of them
    assert max(len(list(folder.iterdir())) for folder in folders) <= 2 * 12  # two files per key, at most a dozen keys


def test_keys_belong_to_one_collection_and_any_id_makes_a_valid_key(tmp_path):
    store = BlobStore(tmp_path)
    awkward = ["sub/notes.md", "a b", "naïve – ü.md", "back\\slash", "x" * 500, "..", "100%"]
    keys = {blob_key("recording", collection, item) for collection in ("a", "b") for item in awkward}
    assert len(keys) == 2 * len(awkward)  # a collection never shares a key with another
    owner = BlobOwner("recording", "a", "sub/notes.md")
    key = blob_key("recording", "a", "sub/notes.md")
    store.put(key, b"data", "audio/wav", "notes.wav", owner)
    assert store.info(key).owner == owner  # kept in the sidecar, for prism doctor
    assert blob_key("picture", "a", "x") != blob_key("thumbnail", "a", "x") != blob_key("recording", "a", "x")


def test_stray_files_are_temporary_files_and_data_without_a_sidecar(tmp_path):
    store = BlobStore(tmp_path)
    store.put("kept", b"x", "text/plain", "k")
    shard = store.path("kept").parent
    (shard / ".half-written.tmp").write_bytes(b"x")
    (shard / "lonely.blob").write_bytes(b"x")
    assert sorted(path.name for path in store.stray_files()) == [".half-written.tmp", "lonely.blob"]
