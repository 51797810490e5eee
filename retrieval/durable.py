"""Files that survive a crash: written whole or not at all, and on disk before the call returns."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMP_PREFIX = "."  # temporary files start with a dot, so no reader mistakes them for the real ones


def write_atomically(target: Path, data: bytes, sync_folder: bool = True) -> None:
    """Write `data` to a temporary file beside `target`, fsync it, and rename it over `target` (atomic
    on one filesystem), so a crash or a concurrent reader never sees a half-written file; then fsync the
    folder, so the rename itself survives a crash."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), 0o644)  # as files are created (mkstemp makes them private)
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
    if sync_folder:
        fsync_folder(target.parent)


def fsync_folder(folder: Path) -> None:
    """Make the renames and unlinks in `folder` durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
