"""Long ingests run in the background: submit returns a job id at once, get tells how it is going.

Jobs live in this process's memory only: they do not survive a restart, and a client polling a job
across a restart gets NotFound. Finished jobs are kept for polling, but only the most recent
`keep` of them, so a long-running server does not grow without bound; queued and running jobs are
never dropped.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, replace
from typing import Any, Literal

from retrieval.errors import NotFound

log = logging.getLogger("prism")

JobState = Literal["queued", "running", "succeeded", "failed"]
ProgressCallback = Callable[..., None]  # report(progress: float, message: str = "")

CANCELLED_MESSAGE = "cancelled: the server shut down before the job started"


@dataclass(frozen=True)
class Job:
    """A snapshot of a job; get() again for news."""

    id: str
    kind: str
    state: JobState
    progress: float  # 0..1
    message: str
    result: Any  # whatever the job's function returned; None until it succeeds
    error: str | None
    created_at: int  # milliseconds since the epoch
    started_at: int | None
    finished_at: int | None

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed")


class JobManager:
    def __init__(self, workers: int = 1, keep: int = 1000) -> None:
        # One worker by default: ingests compete for the same encoder and store, so running them
        # side by side mostly adds memory, not throughput.
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prism-job")
        self._keep = keep
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # oldest first
        self._futures: dict[str, Future] = {}
        self._closed = False

    def submit(self, kind: str, fn: Callable[[ProgressCallback], Any]) -> Job:
        """Queue fn(report) to run in the background; returns the queued job at once."""
        job = Job(
            id=uuid.uuid4().hex, kind=kind, state="queued", progress=0.0, message="", result=None, error=None,
            created_at=_now_ms(), started_at=None, finished_at=None,
        )
        with self._lock:
            if self._closed:
                raise RuntimeError("the job manager is closed")
            self._jobs[job.id] = job
            # Under the lock, so close() cannot miss a future that is being submitted.
            self._futures[job.id] = self._executor.submit(self._run, job.id, fn)
            self._forget_old_jobs()
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} not found (jobs are kept in memory and do not survive a restart)")
        return job

    def close(self, timeout: float = 30.0) -> None:
        """Stop: queued jobs are cancelled (they become "failed" with a message saying so) and
        running jobs get up to `timeout` seconds to finish. A job still running after that is not
        killed (Python cannot stop a thread); its thread finishes it, and Python waits for it at exit."""
        with self._lock:
            self._closed = True
            futures = dict(self._futures)
        for job_id, future in futures.items():
            if future.cancel():  # only succeeds for jobs that have not started
                self._update(job_id, state="failed", error=CANCELLED_MESSAGE, finished_at=_now_ms())
                with self._lock:
                    self._futures.pop(job_id, None)
        self._executor.shutdown(wait=False, cancel_futures=True)
        running = [future for future in futures.values() if not future.cancelled()]
        wait_for_futures(running, timeout=timeout)

    def _run(self, job_id: str, fn: Callable[[ProgressCallback], Any]) -> None:
        self._update(job_id, state="running", started_at=_now_ms())

        def report(progress: float, message: str = "") -> None:
            progress = float(progress)
            if math.isnan(progress):
                return
            self._update(job_id, progress=min(1.0, max(0.0, progress)), message=str(message), only_while_running=True)

        try:
            result = fn(report)
        except BaseException as error:  # noqa: BLE001 - every failure must reach the job, not vanish in a thread
            log.exception("job %s failed", job_id)
            self._update(job_id, state="failed", error=str(error) or type(error).__name__, finished_at=_now_ms())
            if not isinstance(error, Exception):
                raise
        else:
            self._update(job_id, state="succeeded", progress=1.0, result=result, finished_at=_now_ms())
        finally:
            with self._lock:
                self._futures.pop(job_id, None)
                self._forget_old_jobs()

    def _update(self, job_id: str, only_while_running: bool = False, **changes: Any) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or (only_while_running and job.state != "running"):
                return  # a late progress report must not overwrite a finished job
            self._jobs[job_id] = replace(job, **changes)

    def _forget_old_jobs(self) -> None:
        """Drop the oldest finished jobs beyond `keep`. Call with the lock held."""
        finished = [job_id for job_id, job in self._jobs.items() if job.done]
        for job_id in finished[: max(0, len(finished) - self._keep)]:
            del self._jobs[job_id]


def _now_ms() -> int:
    return int(time.time() * 1000)
