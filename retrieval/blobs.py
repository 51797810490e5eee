"""Original uploaded files (recordings, pictures and their thumbnails) kept on local disk, by key.

Layout under root (by default DATA_DIR/blobs; the caller passes it):

    root/<shard>/<key>.blob   the bytes as uploaded
    root/<shard>/<key>.json   sidecar: {"content_type", "filename", "size", "owner"}

<shard> is the first two hex digits of the SHA-256 of the key: one directory with 100k entries makes
listing, lookups and backups slow on common filesystems, and a hash spreads any keys evenly over 256
folders. Keys are derived by `blob_key` from what owns the file (its kind, collection and item id), so
a collection's files never share a key with another's, and any item id makes a valid key. The owner is
kept in the sidecar, so `prism doctor` can tell which files nothing points to. The sidecar is written last and removed
first, so a key exists exactly when its sidecar does: a reader never sees a blob without its
metadata. Both files are written to a temporary file in the same directory and moved into place
with os.replace, which is atomic on one filesystem, so a crash or a concurrent reader never sees a
half-written file. The only shared state is the filesystem: instances need no lock, and two
processes may use the same root. Two concurrent puts of one key: the last one wins.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from retrieval.durable import TEMP_PREFIX, write_atomically
from retrieval.errors import InvalidInput, NotFound

# A key names a file, never a path: no separators, and no leading dot, so neither the key nor
# its two-character shard directory can be "." or ".." (or a hidden temporary file).
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")

DATA_SUFFIX = ".blob"
SIDECAR_SUFFIX = ".json"  # distinct from DATA_SUFFIX, so no key's data file is another key's sidecar

BlobKind = Literal["recording", "picture", "thumbnail"]
KIND_PREFIXES: dict[str, str] = {"recording": "rec", "picture": "img", "thumbnail": "thumb"}


def blob_key(kind: BlobKind, collection: str, item_id: str) -> str:
    """The key of a file owned by an item (a recording: its document id) of a collection."""
    digest = hashlib.sha256(f"{collection}\0{item_id}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"{KIND_PREFIXES[kind]}-{digest[:40]}"


@dataclass(frozen=True)
class BlobOwner:
    kind: str
    collection: str
    id: str


@dataclass(frozen=True)
class BlobInfo:
    key: str
    content_type: str
    filename: str
    size: int  # bytes
    owner: BlobOwner | None = None


def validate_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InvalidInput(f"invalid blob key {key!r}: use 1-128 of A-Z a-z 0-9 _ . - and do not start with a dot")
    return key


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, data: bytes, content_type: str, filename: str, owner: BlobOwner | None = None) -> BlobInfo:
        """Store data under key, replacing what was there; durable when it returns."""
        shard = self._shard(validate_key(key))
        # Shard directories are never removed (at most 256), so a concurrent delete cannot pull the
        # directory out from under this write.
        shard.mkdir(exist_ok=True)
        info = BlobInfo(key=key, content_type=content_type, filename=filename, size=len(data), owner=owner)
        write_atomically(shard / (key + DATA_SUFFIX), data, sync_folder=False)
        sidecar = {"content_type": content_type, "filename": filename, "size": info.size}
        if owner is not None:
            sidecar["owner"] = {"kind": owner.kind, "collection": owner.collection, "id": owner.id}
        write_atomically(shard / (key + SIDECAR_SUFFIX), json.dumps(sidecar).encode("utf-8"))  # and the folder
        return info

    def info(self, key: str) -> BlobInfo | None:
        sidecar = self._shard(validate_key(key)) / (key + SIDECAR_SUFFIX)
        try:
            meta = json.loads(sidecar.read_bytes())
        except FileNotFoundError:
            return None
        owner = BlobOwner(**meta["owner"]) if isinstance(meta.get("owner"), dict) else None
        return BlobInfo(key=key, content_type=meta["content_type"], filename=meta["filename"], size=int(meta["size"]), owner=owner)

    def exists(self, key: str) -> bool:
        return self.info(key) is not None

    def path(self, key: str) -> Path:
        """Where the blob's bytes are, for serving them; NotFound if there is no such blob."""
        shard = self._shard(validate_key(key))
        data = shard / (key + DATA_SUFFIX)
        if not (shard / (key + SIDECAR_SUFFIX)).is_file() or not data.is_file():
            raise NotFound(f"blob {key!r} not found")
        return data

    def delete(self, key: str) -> bool:
        """Remove the blob; True if there was one. Deleting a missing key is not an error."""
        shard = self._shard(validate_key(key))
        removed = False
        for name in (key + SIDECAR_SUFFIX, key + DATA_SUFFIX):  # sidecar first: the key is gone at once
            try:
                (shard / name).unlink()
                removed = True
            except FileNotFoundError:
                pass
        return removed

    def keys(self) -> list[str]:
        """Every stored key, sorted."""
        found = []
        for shard in self._shards():
            for entry in shard.iterdir():
                name = entry.name
                if name.endswith(SIDECAR_SUFFIX) and not name.startswith(TEMP_PREFIX):
                    found.append(name[: -len(SIDECAR_SUFFIX)])
        return sorted(found)

    def stray_files(self) -> list[Path]:
        """Files that are no blob: temporary files a crash left, data files without their sidecar."""
        stray = []
        for shard in self._shards():
            names = {entry.name for entry in shard.iterdir()}
            for name in sorted(names):
                data_without_sidecar = name.endswith(DATA_SUFFIX) and name[: -len(DATA_SUFFIX)] + SIDECAR_SUFFIX not in names
                if name.startswith(TEMP_PREFIX) or data_without_sidecar:
                    stray.append(shard / name)
        return stray

    def _shards(self) -> list[Path]:
        return [entry for entry in self.root.iterdir() if entry.is_dir()]

    def _shard(self, key: str) -> Path:
        return self.root / hashlib.sha256(key.encode()).hexdigest()[:2]
