"""Background jobs that survive restarts and that every replica can see.

A long upload becomes a job. submit() stores the uploads and the job's record on disk
(retrieval/job_store.py) before it returns, so an accepted job is done even if the process dies.
Every replica's JobQueue looks for pending jobs in the shared directory, claims one with a lease
(retrieval/job_leases.py), runs the handler registered for its kind, and writes progress, result or
error into the record. get() reads the record from disk, so any replica answers for any job.

A job whose replica died while running it runs again, from the start, once its claim is stale; so
handlers must be idempotent (an audio ingest is: a recording's ids derive from its bytes). A job that
was started MAX_ATTEMPTS times without finishing (each start ended in a crash) is failed. A finished
job's inputs are deleted at once; its record is kept for `retention_s`, and at most `max_kept`
finished records are kept.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from encoders.cancel import ShuttingDown
from retrieval.batching import QueueFull
from retrieval.errors import NotFound
from retrieval.job_leases import Claim, Leases, Owner
from retrieval.job_store import JobRecord, JobStore, is_job_id, now_ms

log = logging.getLogger("prism")

MAX_ATTEMPTS = 3
LEFTOVER_AGE_S = 3600.0  # a half-submitted job directory older than this was left by a crash


class JobQueueFull(QueueFull):
    """Too many jobs are waiting or running; nothing was stored (HTTP 503)."""


class JobInterrupted(Exception):
    """Raised from report() when this replica no longer holds the job (it shut down, or another
    replica took the job over); the handler should stop, and the job's record is not written."""


@dataclass(frozen=True)
class JobContext:
    """What a handler gets: the job, its saved inputs, and a way to report progress."""

    record: JobRecord
    inputs: list[tuple[str, Path]]  # (original file name, where its bytes are)
    report: Callable[..., None]  # report(progress 0..1, message=""); raises JobInterrupted

    @property
    def params(self) -> dict[str, Any]:
        return self.record.params


JobHandler = Callable[[JobContext], Any]  # returns the job's result, which must be JSON


@dataclass(frozen=True)
class JobConfig:
    root: Path  # shared by every replica (DATA_DIR/jobs)
    queue_size: int = 32  # jobs waiting or running before submit() refuses more
    retention_s: float = 7 * 24 * 3600.0  # how long a finished job's status is kept
    max_kept: int = 1000  # finished jobs' records kept at most
    lease_s: float = 60.0  # a claim not renewed for this long is taken over by another replica
    poll_s: float = 5.0  # how often to look for jobs submitted elsewhere, stale claims and old records
    workers: int = 1  # jobs run at once per replica: a transcription already uses every core


class JobQueue:
    def __init__(self, config: JobConfig) -> None:
        self.config = config
        self.store = JobStore(config.root)
        self.owner = Owner.this_process()
        self._leases = Leases(self.owner, config.lease_s)
        self._handlers: Mapping[str, JobHandler] = {}
        self._finished: dict[str, int] = {}  # job id -> finished_at: finished records never change
        self._scan_lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self._claims: set[Claim] = set()  # the jobs this replica is running
        self._claims_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()  # no new claims
        self._closed = threading.Event()  # no more renewals
        self._threads: list[threading.Thread] = []

    # The API side: any replica, started or not

    def submit(self, kind: str, params: dict[str, Any], inputs: Sequence[tuple[str, bytes]]) -> JobRecord:
        """Store a queued job and its inputs (durably) and return it; a worker picks it up."""
        if self._stopping.is_set():
            raise JobQueueFull("this server is shutting down and takes no new background jobs; try again")
        with self._submit_lock:
            pending = len(self._scan())
            if pending >= self.config.queue_size:
                raise JobQueueFull(
                    f"{pending} background jobs are waiting or running, the most allowed (PRISM_JOB_QUEUE_SIZE={self.config.queue_size}); "
                    "nothing was stored: try again later"
                )
            record = self.store.create(kind, params, inputs)
        self._wake.set()
        return record

    def get(self, job_id: str) -> JobRecord:
        record = self.store.read(job_id) if is_job_id(job_id) else None
        if record is None:
            kept = f"finished jobs are kept for {describe_seconds(self.config.retention_s)}, and at most {self.config.max_kept} of them"
            raise NotFound(f"job {job_id!r} not found ({kept})")
        return record

    # The worker side

    def start(self, handlers: Mapping[str, JobHandler]) -> None:
        """Run jobs of these kinds, beginning with those a previous run of this replica left unfinished."""
        if self._threads:
            raise RuntimeError("the job queue is already started")
        self._handlers = dict(handlers)
        self.owner.register()
        self.store.remove_leftovers(LEFTOVER_AGE_S)
        self._threads = [threading.Thread(target=self._work, name=f"prism-job-{n}", daemon=True) for n in range(self.config.workers)]
        self._threads.append(threading.Thread(target=self._renew_claims, name="prism-job-leases", daemon=True))
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking jobs, give running ones up to `timeout` seconds, then hand back those still
        running: they stay on disk and run again, from the start, on the next start (or another replica)."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads[:-1]:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._claims_lock:
            unfinished = list(self._claims)
        for claim in unfinished:
            self._hand_back(claim)
        self._closed.set()
        self.owner.unregister()

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = self._claim_next()
            except Exception:  # a disk error must not end the worker; it looks again later
                log.exception("looking for background jobs failed")
                claimed = None
            if claimed is not None:
                self._run(*claimed)
                continue
            self._wake.wait(self.config.poll_s)
            self._wake.clear()

    def _claim_next(self) -> tuple[JobRecord, Claim] | None:
        for record in self._scan():
            if self._stopping.is_set():
                return None
            if record.kind not in self._handlers:
                continue  # a kind this replica cannot run (its model is missing here)
            claim = self._leases.claim(self.store.job_dir(record.id))
            if claim is None:
                continue
            current = self.store.read(record.id)  # read again now that it is ours
            if current is None or current.done:
                claim.release()
                continue
            return current, claim
        return None

    def _scan(self) -> list[JobRecord]:
        """The pending jobs, oldest first; and, on the way, deletes finished jobs past their time."""
        with self._scan_lock:
            pending: list[JobRecord] = []
            present = set(self.store.job_ids())
            for job_id in present - self._finished.keys():
                record = self.store.read(job_id)
                if record is None:
                    continue
                if record.done:
                    self._finished[job_id] = record.finished_at or record.created_at
                    self.store.delete_inputs(job_id)  # a crash between finishing and deleting them
                else:
                    pending.append(record)
            self._forget_old(present)
            self._leases.forget_all_but({self.store.job_dir(record.id) for record in pending})
            return sorted(pending, key=lambda record: (record.created_at, record.id))

    def _forget_old(self, present: set[str]) -> None:
        """Delete finished jobs older than the retention, and the oldest beyond max_kept."""
        for job_id in self._finished.keys() - present:
            del self._finished[job_id]  # deleted by another replica
        cutoff = now_ms() - self.config.retention_s * 1000
        oldest_first = sorted(self._finished.items(), key=lambda item: item[1])
        excess = len(oldest_first) - self.config.max_kept
        for position, (job_id, finished_at) in enumerate(oldest_first):
            if position < excess or finished_at < cutoff:
                self.store.remove(job_id)
                del self._finished[job_id]

    def _run(self, record: JobRecord, claim: Claim) -> None:
        with self._claims_lock:
            self._claims.add(claim)
        try:
            if record.attempts >= MAX_ATTEMPTS:
                error = f"gave up after {record.attempts} attempts: each time the server stopped while running it"
                self._finish(claim, record, state="failed", error=error)
                return
            again = "started again after an interruption" if record.attempts else ""
            record = replace(record, state="running", attempts=record.attempts + 1, progress=0.0, message=again, started_at=now_ms())
            self.store.write(record)
            self._execute(record, claim)
        except Exception:  # the disk failed under the record: the claim lapses and the job runs again
            log.exception("job %s: could not record its state", record.id)
        finally:
            with self._claims_lock:
                self._claims.discard(claim)

    def _execute(self, record: JobRecord, claim: Claim) -> None:
        context = JobContext(
            record=record,
            inputs=list(zip(record.inputs, self.store.input_paths(record))),
            report=lambda progress, message="": self._report(record.id, claim, progress, message),
        )
        try:
            result = json.loads(json.dumps(self._handlers[record.kind](context)))
        except JobInterrupted as why:
            log.info("job %s stopped here: %s", record.id, why)
        except ShuttingDown as why:  # the server is stopping: the job is not failed, it runs again
            log.info("job %s stopped by the shutdown (%s); it goes back to the queue", record.id, why)
            self._stopping.set()  # and this replica takes no other job
            self._hand_back(claim)
        except Exception as error:
            if not claim.held():  # handed back at shutdown (its stores may be closed under it), or taken over
                log.info("job %s stopped here (%s: %s); it is no longer this replica's", record.id, type(error).__name__, error)
                return
            log.exception("job %s failed", record.id)
            self._finish(claim, record, state="failed", error=str(error) or type(error).__name__)
        else:
            self._finish(claim, record, state="succeeded", progress=1.0, result=result)

    def _report(self, job_id: str, claim: Claim, progress: float, message: str = "") -> None:
        with claim.lock:
            if not claim.renew():
                raise JobInterrupted("this replica no longer holds the job (it is shutting down, or another replica took it over)")
            progress = float(progress)
            current = self.store.read(job_id)
            if current is None or math.isnan(progress):
                return
            self.store.write(replace(current, progress=min(1.0, max(0.0, progress)), message=str(message)))

    def _finish(self, claim: Claim, record: JobRecord, **changes: Any) -> None:
        with claim.lock:
            if not claim.held():
                log.warning("job %s: no longer this replica's (handed back or taken over); its record is left alone", record.id)
                return
            current = self.store.read(record.id) or record
            self.store.write(replace(current, finished_at=now_ms(), **changes))
        self.store.delete_inputs(record.id)

    def _hand_back(self, claim: Claim) -> None:
        """Put a job this replica could not finish back in the queue, as if it had not started."""
        with claim.lock:
            if not claim.held():
                return
            job_id = claim.path.parent.name
            current = self.store.read(job_id)
            if current is not None and not current.done:
                message = "interrupted by a shutdown; it will run again from the start"
                self.store.write(replace(current, state="queued", attempts=max(0, current.attempts - 1), message=message))
            claim.release()

    def _renew_claims(self) -> None:
        """Keep this replica's claims alive while their jobs run (a transcription may report no
        progress for minutes)."""
        while not self._closed.wait(self.config.lease_s / 4):
            with self._claims_lock:
                claims = list(self._claims)
            for claim in claims:
                with claim.lock:
                    claim.renew()


def describe_seconds(seconds: float) -> str:
    """7 days, 1 hour, 90 s: for messages."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = round(seconds / size, 1)
            return f"{count:g} {unit}{'' if count == 1 else 's'}"
    return f"{seconds:g} s"
