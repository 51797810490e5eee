"""Original uploaded files (audio now, images later) kept on local disk, by key.

Layout under root (by default DATA_DIR/blobs; the caller passes it):

    root/<key[:2]>/<key>.blob   the bytes as uploaded
    root/<key[:2]>/<key>.json   sidecar: {"content_type", "filename", "size"}

Files fan out into subdirectories by the first two characters of the key because one directory
with 100k entries makes listing, lookups and backups slow on common filesystems; keys are meant to
be random (uuid hex), so two characters spread them evenly. The sidecar is written last and removed
first, so a key exists exactly when its sidecar does: a reader never sees a blob without its
metadata. Both files are written to a temporary file in the same directory and moved into place
with os.replace, which is atomic on one filesystem, so a crash or a concurrent reader never sees a
half-written file. The only shared state is the filesystem: instances need no lock, and two
processes may use the same root. Two concurrent puts of one key: the last one wins.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import InvalidInput, NotFound

# A key names a file, never a path: no separators, and no leading dot, so neither the key nor
# its two-character shard directory can be "." or ".." (or a hidden temporary file).
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")

DATA_SUFFIX = ".blob"
SIDECAR_SUFFIX = ".json"  # distinct from DATA_SUFFIX, so no key's data file is another key's sidecar
TEMP_PREFIX = "."  # keys never start with a dot, so temporary files never look like blobs


@dataclass(frozen=True)
class BlobInfo:
    key: str
    content_type: str
    filename: str
    size: int  # bytes


def validate_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InvalidInput(f"invalid blob key {key!r}: use 1-128 of A-Z a-z 0-9 _ . - and do not start with a dot")
    return key


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, data: bytes, content_type: str, filename: str) -> BlobInfo:
        """Store data under key, replacing what was there."""
        shard = self._shard(validate_key(key))
        # Shard directories are never removed (at most a few thousand), so a concurrent delete
        # cannot pull the directory out from under this write.
        shard.mkdir(exist_ok=True)
        info = BlobInfo(key=key, content_type=content_type, filename=filename, size=len(data))
        _write_atomically(shard / (key + DATA_SUFFIX), data)
        sidecar = {"content_type": content_type, "filename": filename, "size": info.size}
        _write_atomically(shard / (key + SIDECAR_SUFFIX), json.dumps(sidecar).encode("utf-8"))
        return info

    def info(self, key: str) -> BlobInfo | None:
        sidecar = self._shard(validate_key(key)) / (key + SIDECAR_SUFFIX)
        try:
            meta = json.loads(sidecar.read_bytes())
        except FileNotFoundError:
            return None
        return BlobInfo(key=key, content_type=meta["content_type"], filename=meta["filename"], size=int(meta["size"]))

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
        for shard in self.root.iterdir():
            if not shard.is_dir():
                continue
            for entry in shard.iterdir():
                name = entry.name
                if name.endswith(SIDECAR_SUFFIX) and not name.startswith(TEMP_PREFIX):
                    found.append(name[: -len(SIDECAR_SUFFIX)])
        return sorted(found)

    def _shard(self, key: str) -> Path:
        return self.root / key[:2]


def _write_atomically(target: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the name points at them
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
