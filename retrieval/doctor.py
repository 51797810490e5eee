"""`prism doctor`: does the store agree with itself and with the blob store? Repairs what is safe.

What it checks, and what `fix` does about it:
  unfinished_write   a write a crash interrupted (journal)            finish or roll it back
  stale_version      a document with rows of several versions         keep the newest
  unregistered       rows of a collection that is not registered      register the collection
  orphan_copy        a CLIP copy whose chunk or window is gone        delete the copy
  missing_copy       a chunk or window without its CLIP copy          embed and store the copy (needs CLIP)
  orphan_caption     a caption row whose picture is gone              delete the caption row
  missing_caption    a captioned picture without its caption row      embed and store the caption row
  missing_thumbnail  a picture whose thumbnail file is gone           make it again from the original
  missing_original   a picture or recording whose original is gone    nothing can bring it back: reported
  orphan_blob        a stored file that no item owns                  delete the file
  stray_file         a temporary file a crash left, or a data file    delete it (once older than a while)
                     without its sidecar
Writes in progress are left out of every check (they are not problems), so the doctor can run beside
a live server.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from encoders.images import THUMBNAIL_CONTENT_TYPE, decode_image, thumbnail
from retrieval.blobs import BlobOwner, blob_key
from retrieval.store import MilvusStore
from retrieval.versions import Txn

if TYPE_CHECKING:
    from retrieval.library import Library

STRAY_AGE_S = 600.0  # younger temporary files may belong to a write in progress
MEDIA_MODALITIES = ("text", "audio")  # the items that have CLIP copies


@dataclass(frozen=True)
class Problem:
    kind: str
    collection: str
    id: str
    message: str
    fixable: bool


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    fixed: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        if not self.problems:
            return "no problems found" + (f" ({len(self.fixed)} repaired)" if self.fixed else "")
        counts: defaultdict[str, int] = defaultdict(int)
        for problem in self.problems:
            counts[problem.kind] += 1
        return f"{len(self.problems)} problems: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


@dataclass(frozen=True)
class Row:
    space: str
    row_id: str
    id: str
    collection: str
    modality: str
    doc_id: str
    version: int

    @classmethod
    def of(cls, space: str, row: dict[str, Any]) -> Row:
        return cls(space, row["row_id"], row["id"], row["collection"], row["modality"], row["doc_id"], int(row["version"]))


class Doctor:
    def __init__(self, library: Library, stale_after_s: float) -> None:
        self.library = library
        self.stale_after_s = stale_after_s
        self.spaces: dict[str, MilvusStore] = dict(library.writer.spaces)

    def run(self, fix: bool = False) -> Report:
        report = Report()
        if fix:
            report.notes += self.library.writer.recover(self.stale_after_s)
        rows = [Row.of(space, row) for space, store in self.spaces.items() for page in store.scan() for row in page]
        keys = self.library.blobs.keys()
        journal = self.library.writer.journal
        busy = _busy(journal.entries(), journal.own(), self.stale_after_s)  # after the scans: writes that began meanwhile
        rows = [row for row in rows if not _in_progress(row, busy)]
        report.checked = {f"rows.{space}": sum(row.space == space for row in rows) for space in self.spaces} | {"blobs": len(keys)}
        current, stale = self._newest_versions(rows)
        checks = [
            self._unfinished_writes(busy),
            stale,
            self._unregistered(current),
            self._clip_copies(current, report),
            self._captions(current),
            self._originals(current),
            self._orphan_blobs(current, keys, busy),
            self._stray_files(),
        ]
        report.problems = [problem for found in checks for problem in found]
        if fix:
            self._fix(report)
        return report

    # ------------------------------------------------------------------ checks

    def _newest_versions(self, rows: list[Row]) -> tuple[list[Row], list[Problem]]:
        """The rows of each document's newest version, and the documents with older versions left."""
        newest: dict[tuple[str, str], int] = {}
        for row in rows:
            key = (row.collection, row.doc_id)
            newest[key] = max(newest.get(key, row.version), row.version)
        stale = sorted({(row.collection, row.doc_id) for row in rows if row.version != newest[(row.collection, row.doc_id)]})
        self._newest = newest  # for _keep_newest
        problems = [Problem("stale_version", c, d, "rows of an older version are still stored", True) for c, d in stale]
        return [row for row in rows if row.version == newest[(row.collection, row.doc_id)]], problems

    def _unfinished_writes(self, busy: list[Txn]) -> list[Problem]:
        versions = {txn.version for txn in busy}
        stale = [txn for txn in self.library.writer.journal.entries() if txn.version not in versions and txn.state != "rolledback"]
        return [Problem("unfinished_write", txn.collection, str(txn.version), f"a {txn.state} write a crash interrupted", True) for txn in stale]

    def _unregistered(self, rows: list[Row]) -> list[Problem]:
        registered = set(self.library.store.collection_names())
        missing = sorted({row.collection for row in rows} - registered)
        return [Problem("unregistered", name, name, "rows of a collection that is not registered", True) for name in missing]

    def _clip_copies(self, rows: list[Row], report: Report) -> list[Problem]:
        if "image" not in self.spaces:
            return []
        items = {(r.collection, r.id, r.version): r for r in rows if r.space == "text" and r.modality in MEDIA_MODALITIES}
        copies = {(r.collection, r.id, r.version): r for r in rows if r.space == "image" and r.modality in MEDIA_MODALITIES}
        found = [Problem("orphan_copy", r.collection, r.row_id, f"a CLIP copy of {r.modality} item {r.id!r}, which is gone", True) for k, r in copies.items() if k not in items]
        if self.library.images is None:
            report.notes.append("chunks without CLIP copies were not looked for: no image model is loaded")
            return found
        return found + [Problem("missing_copy", r.collection, r.row_id, f"{r.modality} item {r.id!r} has no CLIP copy", True) for k, r in items.items() if k not in copies]

    def _captions(self, rows: list[Row]) -> list[Problem]:
        pictures = {(r.collection, r.id, r.version): r for r in rows if r.space == "image" and r.modality == "image"}
        captions = {(r.collection, r.id, r.version): r for r in rows if r.space == "text" and r.modality == "image"}
        found = [Problem("orphan_caption", r.collection, r.row_id, f"the caption of picture {r.id!r}, which is gone", True) for k, r in captions.items() if k not in pictures]
        uncaptioned = [r for k, r in pictures.items() if k not in captions]
        for picture in self.spaces["image"].rows_by_key([r.row_id for r in uncaptioned]) if uncaptioned else []:
            if picture.text:
                found.append(Problem("missing_caption", picture.collection, picture.id, "a captioned picture without its caption row", True))
        return found

    def _originals(self, rows: list[Row]) -> list[Problem]:
        found = []
        blobs = self.library.blobs
        for row in rows:
            if row.space == "image" and row.modality == "image":
                if not blobs.exists(blob_key("picture", row.collection, row.id)):
                    found.append(Problem("missing_original", row.collection, row.id, "the picture's original file is gone", False))
                elif not blobs.exists(blob_key("thumbnail", row.collection, row.id)):
                    found.append(Problem("missing_thumbnail", row.collection, row.id, "the picture's thumbnail is gone", True))
        recordings = {(row.collection, row.doc_id) for row in rows if row.space == "text" and row.modality == "audio"}
        for collection, recording_id in sorted(recordings):
            if not blobs.exists(blob_key("recording", collection, recording_id)):
                found.append(Problem("missing_original", collection, recording_id, "the recording's original file is gone", False))
        return found

    def _orphan_blobs(self, rows: list[Row], keys: list[str], busy: list[Txn]) -> list[Problem]:
        owners = {("picture", r.collection, r.id) for r in rows if r.space == "image" and r.modality == "image"}
        owners |= {("thumbnail", collection, item) for _, collection, item in owners}
        owners |= {("recording", r.collection, r.doc_id) for r in rows if r.space == "text" and r.modality == "audio"}
        in_flight = {key for txn in busy for key in txn.new_blobs}
        found = []
        for key in keys:
            info = self.library.blobs.info(key)
            owner = info.owner if info is not None else None
            if info is None or key in in_flight or (owner is not None and (owner.kind, owner.collection, owner.id) in owners):
                continue
            what = f"owned by {owner.kind} {owner.id!r}, which is gone" if owner else "no owner recorded"
            found.append(Problem("orphan_blob", owner.collection if owner else "", key, f"a stored file with {what}", True))
        return found

    def _stray_files(self) -> list[Problem]:
        now = time.time()
        old = [path for path in self.library.blobs.stray_files() if now - path.stat().st_mtime > STRAY_AGE_S]
        return [Problem("stray_file", "", str(path), "a file a crash left behind", True) for path in old]

    # ------------------------------------------------------------------ repairs

    def _fix(self, report: Report) -> None:
        repairs = {
            "stale_version": self._keep_newest,
            "unregistered": lambda p: self.library.store.create_collection(p.collection),
            "orphan_copy": lambda p: self.spaces["image"].delete_rows([p.id]),
            "orphan_caption": lambda p: self.spaces["text"].delete_rows([p.id]),
            "missing_copy": self._add_copy,
            "missing_caption": self._add_caption,
            "missing_thumbnail": self._remake_thumbnail,
            "orphan_blob": lambda p: self.library.blobs.delete(p.id),
            "stray_file": lambda p: _unlink(p.id),
            "unfinished_write": lambda p: None,  # recovered above
        }
        left = []
        for problem in report.problems:
            if not problem.fixable:
                left.append(problem)
                continue
            repairs[problem.kind](problem)
            report.fixed.append(problem)
        report.problems = left

    def _keep_newest(self, problem: Problem) -> None:
        version = self._newest[(problem.collection, problem.id)]
        txn = Txn(version=version, collection=problem.collection, state="committed", doc_ids=(problem.id,))
        for store in self.spaces.values():
            store.delete_replaced(txn)

    def _add_copy(self, problem: Problem) -> None:
        items = self.spaces["text"].rows_by_key([problem.id])
        mirror_copies = self.library.ingestor.mirrors[0].embed(problem.collection, items)
        self.spaces["image"].upsert(mirror_copies)

    def _add_caption(self, problem: Problem) -> None:
        from retrieval.images import (
            caption_item,  # images imports the encoders' CLIP code
        )

        captions = [caption_item(self.spaces["image"].get(problem.id))]
        self.library.ingestor.attach_vectors(problem.collection, captions)
        self.spaces["text"].upsert(captions)

    def _remake_thumbnail(self, problem: Problem) -> None:
        blobs = self.library.blobs
        original = blobs.path(blob_key("picture", problem.collection, problem.id)).read_bytes()
        info = blobs.info(blob_key("picture", problem.collection, problem.id))
        small = thumbnail(decode_image(original, info.filename).image, self.library.images.config.thumbnail_px if self.library.images else 256)
        owner = BlobOwner("thumbnail", problem.collection, problem.id)
        blobs.put(blob_key("thumbnail", problem.collection, problem.id), small, THUMBNAIL_CONTENT_TYPE, info.filename, owner)


def _busy(entries: Iterable[Txn], own: Iterable[Txn], stale_after_s: float) -> list[Txn]:
    """Writes in progress: this process's, and those younger than `stale_after_s` (another replica's)."""
    recent = [txn for txn in entries if txn.state != "rolledback" and time.time() - txn.started_at < stale_after_s]
    return list({txn.version: txn for txn in [*recent, *own]}.values())


def _in_progress(row: Row, busy: list[Txn]) -> bool:
    """Whether a write in progress stored the row or is replacing it."""
    return any(row.collection == txn.collection and (row.version == txn.version or txn.replaces(row)) for txn in busy)


def _unlink(path: str) -> None:
    from pathlib import Path

    Path(path).unlink(missing_ok=True)
