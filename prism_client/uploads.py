"""Uploading files and folders: find what Prism can read, send it in batches, report per file.

A file's name on the server is its path relative to the folder given (`notes/owls.md`), or its own
name when the file itself was given; a document's name is its id, so re-uploading it replaces it.
Batches are bounded by count and by bytes. The server stores all of a request or none of it, so
when it refuses a batch for its content (a 4xx), each of its files is sent again alone: the good
ones are stored and the bad ones reported with the server's reason. Hidden files and folders (a
name starting with '.') are not read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from prism_client import calls
from prism_client.calls import Call, Operation
from prism_client.errors import AuthenticationError, PrismConnectionError, PrismError

# What the server reads (a test holds these to the server's own lists).
DOCUMENT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".pdf"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm"})
MAX_BATCH_FILES = 64
MAX_BATCH_BYTES = 16 * 1024 * 1024

Kind = Literal["document", "image", "audio"]


@dataclass(frozen=True)
class LocalFile:
    path: Path
    name: str  # as sent: relative to the folder given
    kind: Kind
    size: int


@dataclass(frozen=True)
class FileProblem:
    path: Path
    name: str
    reason: str
    status: int | None = None  # the server's answer, for a failed file
    code: str | None = None


@dataclass(frozen=True)
class UploadProgress:
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    last: str  # the file (or first file of the batch) just sent


@dataclass
class UploadReport:
    collection: str
    stored: list[LocalFile] = field(default_factory=list)
    skipped: list[FileProblem] = field(default_factory=list)  # not a kind Prism reads: never sent
    failed: list[FileProblem] = field(default_factory=list)  # refused, with the server's reason
    ids: list[str] = field(default_factory=list)
    chunks: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def kind_of(path: Path) -> Kind | None:
    suffix = path.suffix.lower()
    if suffix in DOCUMENT_SUFFIXES:
        return "document"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    return None


def find_files(paths: Sequence[str | Path]) -> tuple[list[LocalFile], list[FileProblem]]:
    """Every file Prism reads under `paths` (folders recursively), and those it does not."""
    found: list[tuple[Path, str]] = []
    for given in (Path(path).expanduser() for path in paths):
        if given.is_dir():
            for path in sorted(given.rglob("*")):
                relative = path.relative_to(given)
                if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                    found.append((path, relative.as_posix()))
        elif given.is_file():
            found.append((given, given.name))
        else:
            raise FileNotFoundError(f"{given} does not exist")
    files, skipped = [], []
    for path, name in found:
        kind = kind_of(path)
        if kind is None:
            known = ", ".join(sorted(DOCUMENT_SUFFIXES | IMAGE_SUFFIXES | AUDIO_SUFFIXES))
            skipped.append(FileProblem(path, name, f"unknown type {path.suffix or '(no suffix)'}: Prism reads {known}"))
        else:
            files.append(LocalFile(path, name, kind, path.stat().st_size))
    return files, skipped


def separate_clashes(files: list[LocalFile]) -> tuple[list[LocalFile], list[FileProblem]]:
    """Documents whose names (ids) would clash: two different files would overwrite each other, so
    neither is sent. (Pictures and recordings are identified by their bytes, so they cannot.)"""
    by_name: dict[str, list[LocalFile]] = {}
    for file in files:
        if file.kind == "document":
            by_name.setdefault(file.name, []).append(file)
    clashing = {name: group for name, group in by_name.items() if len({f.path.resolve() for f in group}) > 1}
    problems = [
        FileProblem(f.path, f.name, f"{len(group)} files would have the id {name!r} ({', '.join(str(g.path) for g in group)}); "
                    "upload their common parent folder so that their ids differ")
        for name, group in clashing.items() for f in group
    ]  # fmt: skip
    return [f for f in files if not (f.kind == "document" and f.name in clashing)], problems


def plan_batches(files: list[LocalFile], max_files: int, max_bytes: int) -> list[list[LocalFile]]:
    """Batches of one kind, at most `max_files` and `max_bytes` each (a larger file goes alone);
    recordings one at a time (each may become a background job)."""
    batches: list[list[LocalFile]] = []
    for kind in ("document", "image", "audio"):
        batch: list[LocalFile] = []
        size = 0
        for file in (f for f in files if f.kind == kind):
            if batch and (len(batch) >= (1 if kind == "audio" else max_files) or size + file.size > max_bytes):
                batches.append(batch)
                batch, size = [], 0
            batch.append(file)
            size += file.size
        if batch:
            batches.append(batch)
    return batches


def upload(
    paths: Sequence[str | Path],
    collection: str,
    language: str | None = None,
    progress: Callable[[UploadProgress], None] | None = None,
    max_files: int = MAX_BATCH_FILES,
    max_bytes: int = MAX_BATCH_BYTES,
    poll_s: float = calls.JOB_POLL_S,
) -> Operation[UploadReport]:
    files, skipped = find_files(paths)
    files, clashes = separate_clashes(files)
    report = UploadReport(collection, skipped=skipped, failed=clashes)
    total_bytes = sum(f.size for f in files)
    done = sent_bytes = 0
    notify = progress or (lambda _: None)
    notify(UploadProgress(0, len(files), 0, total_bytes, ""))
    for batch in plan_batches(files, max_files, max_bytes):
        yield from send_batch(batch, collection, language, poll_s, report)
        done, sent_bytes = done + len(batch), sent_bytes + sum(f.size for f in batch)
        notify(UploadProgress(done, len(files), sent_bytes, total_bytes, batch[0].name))
    return report


def send_batch(batch: list[LocalFile], collection: str, language: str | None, poll_s: float, report: UploadReport) -> Operation[None]:
    try:
        result = yield from ingest(batch, collection, language, poll_s)
    except (PrismConnectionError, AuthenticationError):
        raise  # nothing further can succeed
    except PrismError as error:
        if len(batch) > 1 and error.status is not None and 400 <= error.status < 500:
            for file in batch:  # which one is refused? store the others
                yield from send_batch([file], collection, language, poll_s, report)
            return
        report.failed += [FileProblem(f.path, f.name, error.message, error.status, error.code) for f in batch]
        return
    except OSError as error:  # the file went away or cannot be read
        report.failed += [FileProblem(f.path, f.name, f"cannot read it: {error}") for f in batch]
        return
    report.stored += batch
    report.ids += result["ids"]
    report.chunks += result["chunks"]


def ingest(batch: list[LocalFile], collection: str, language: str | None, poll_s: float) -> Operation[Any]:
    files = [(f.name, f.path.read_bytes()) for f in batch]
    kind = batch[0].kind
    if kind == "audio":
        return (yield from calls.add_audio(calls.submit_audio(files, collection, language, None), poll_s, None))
    call: Call = calls.upload_documents(files, collection) if kind == "document" else calls.add_images(files, collection, None, None)
    return (yield call).json()
