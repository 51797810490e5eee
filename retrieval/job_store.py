"""Background jobs on disk: one directory per job under a root that every replica shares.

    root/<id>/job.json          the record: kind, params, input names, state, progress, result, error, times
    root/<id>/input-<n>         the uploads, byte for byte, until the job has finished
    root/<id>/lease-<g>         claims of the replicas that ran it (retrieval/job_leases.py)
    root/.new-<id>-<token>/     a job being submitted, renamed to root/<id> once complete
    root/.gone-<id>-<token>/    a job being deleted

A job appears all at once: its record and inputs are written and fsync'd in a temporary directory,
which is renamed into place (atomic on one filesystem) before the root directory is fsync'd. So once
create() returns, the job survives a crash of the process or of the machine, and no reader ever sees
a job without its inputs. Records are rewritten through a temporary file and os.replace, so a reader
never sees half of one. Input files are named by position, never by the client's file name.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Sequence

from retrieval.durable import fsync_folder, write_atomically

log = logging.getLogger("prism")

JobState = Literal["queued", "running", "succeeded", "failed"]
FINISHED_STATES = ("succeeded", "failed")

JOB_ID_PATTERN = re.compile(r"[0-9a-f]{32}")  # uuid4 hex: a job id never names anything but its directory
RECORD_NAME = "job.json"
INPUT_PREFIX = "input-"
NEW_PREFIX = ".new-"
GONE_PREFIX = ".gone-"


@dataclass(frozen=True)
class JobRecord:
    """What is known of a job; read it again for news."""

    id: str
    kind: str  # which handler runs it (see JobQueue.start)
    state: JobState
    params: dict[str, Any] = field(default_factory=dict)  # what the kind's handler needs besides the inputs
    inputs: list[str] = field(default_factory=list)  # the uploads' original file names, in order
    progress: float = 0.0  # 0..1
    message: str = ""
    result: Any = None  # the handler's JSON result, once it succeeded
    error: str | None = None
    attempts: int = 0  # times a replica started it and did not hand it back (a crash counts)
    created_at: int = 0  # milliseconds since the epoch
    started_at: int | None = None
    finished_at: int | None = None

    @property
    def done(self) -> bool:
        return self.state in FINISHED_STATES

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> "JobRecord":
        raw = json.loads(data)
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in raw.items() if key in known})


def now_ms() -> int:
    return int(time.time() * 1000)


def is_job_id(value: str) -> bool:
    return isinstance(value, str) and JOB_ID_PATTERN.fullmatch(value) is not None


class JobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def job_dir(self, job_id: str) -> Path:
        if not is_job_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def create(self, kind: str, params: dict[str, Any], inputs: Sequence[tuple[str, bytes]]) -> JobRecord:
        """Write a queued job with its inputs; it exists, durably, once this returns."""
        record = JobRecord(
            id=uuid.uuid4().hex, kind=kind, state="queued", params=params, inputs=[name for name, _ in inputs], created_at=now_ms()
        )
        staging = self.root / f"{NEW_PREFIX}{record.id}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            for position, (_, data) in enumerate(inputs):
                _write_file(staging / f"{INPUT_PREFIX}{position}", data)
            _write_file(staging / RECORD_NAME, record.to_json())
            fsync_folder(staging)
            os.rename(staging, self.root / record.id)
            fsync_folder(self.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return record

    def read(self, job_id: str) -> JobRecord | None:
        """The job's record; None if there is no such job (or it is being deleted)."""
        if not is_job_id(job_id):
            return None
        try:
            return JobRecord.from_json((self.root / job_id / RECORD_NAME).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (ValueError, TypeError) as error:  # never written by Prism: someone edited it
            log.warning("job %s: unreadable record (%s); ignoring the job", job_id, error)
            return None

    def write(self, record: JobRecord) -> None:
        write_atomically(self.job_dir(record.id) / RECORD_NAME, record.to_json())

    def job_ids(self) -> list[str]:
        try:
            return [entry.name for entry in os.scandir(self.root) if is_job_id(entry.name)]
        except FileNotFoundError:
            return []

    def input_paths(self, record: JobRecord) -> list[Path]:
        directory = self.job_dir(record.id)
        return [directory / f"{INPUT_PREFIX}{position}" for position in range(len(record.inputs))]

    def delete_inputs(self, job_id: str) -> None:
        for path in self.job_dir(job_id).glob(f"{INPUT_PREFIX}*"):
            path.unlink(missing_ok=True)

    def remove(self, job_id: str) -> bool:
        """Delete a job with everything it has; True if this call removed it. The directory is
        renamed away first, so the job disappears at once for every reader and replica."""
        gone = self.root / f"{GONE_PREFIX}{job_id}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.job_dir(job_id), gone)
        except FileNotFoundError:
            return False  # another replica removed it first
        shutil.rmtree(gone, ignore_errors=True)
        return True

    def remove_leftovers(self, older_than_s: float) -> None:
        """Directories left by a crash: half-submitted jobs (older than older_than_s, so that a
        submission in progress on another replica is left alone) and half-deleted ones."""
        cutoff = time.time() - older_than_s
        for entry in os.scandir(self.root):
            stale_new = entry.name.startswith(NEW_PREFIX) and _mtime(entry) < cutoff
            if stale_new or entry.name.startswith(GONE_PREFIX):
                shutil.rmtree(entry.path, ignore_errors=True)


def _mtime(entry: os.DirEntry) -> float:
    try:
        return entry.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
