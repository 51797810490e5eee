"""Background jobs on disk: progress, results and failures reach the caller; jobs survive a restart;
replicas sharing one directory run each job once; old jobs go away.

The job queues here are the real ones on a real directory, with small handlers of their own; the
audio handler is exercised through the server in tests/test_jobs_durable.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from encoders.cancel import ShuttingDown
from retrieval.errors import NotFound
from retrieval.job_store import JobStore, now_ms
from retrieval.jobs import JobConfig, JobInterrupted, JobQueue, JobQueueFull
from tests.servers import poll

WAIT_S = 20


@pytest.fixture
def queues(tmp_path):
    """make(**config) -> a JobQueue on tmp_path/jobs; every one made is closed at the end."""
    made: list[JobQueue] = []

    def make(**config) -> JobQueue:
        queue = JobQueue(JobConfig(root=tmp_path / "jobs", **{"poll_s": 0.05, "lease_s": 2.0, **config}))
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.close(timeout=10)


def wait_done(queue: JobQueue, job_id: str):
    poll(lambda: queue.get(job_id).done, WAIT_S, f"job {job_id} to finish")
    return queue.get(job_id)


def job_files(queue: JobQueue, job_id: str) -> list[str]:
    return sorted(path.name for path in (queue.config.root / job_id).iterdir())


def test_a_job_reports_progress_and_succeeds_with_its_result(queues):
    halfway, go_on = threading.Event(), threading.Event()
    seen_inputs = []

    def work(job):
        seen_inputs.extend((name, path.read_bytes()) for name, path in job.inputs)
        job.report(0.5, "halfway")
        halfway.set()
        assert go_on.wait(WAIT_S)
        return {"chunks": 3, "collection": job.params["collection"]}

    jobs = queues()
    jobs.start({"ingest": work})
    job = jobs.submit("ingest", {"collection": "c"}, [("a b/ü.wav", b"first"), ("two.wav", b"second")])
    assert len(job.id) == 32 and job.kind == "ingest" and job.inputs == ["a b/ü.wav", "two.wav"]
    assert halfway.wait(WAIT_S)
    seen = jobs.get(job.id)
    assert (seen.state, seen.progress, seen.message, seen.attempts) == ("running", 0.5, "halfway", 1)
    assert seen.started_at is not None and seen.finished_at is None
    assert seen_inputs == [("a b/ü.wav", b"first"), ("two.wav", b"second")]

    go_on.set()
    done = wait_done(jobs, job.id)
    assert done.state == "succeeded" and done.result == {"chunks": 3, "collection": "c"}
    assert done.progress == 1.0 and done.error is None
    assert done.created_at <= done.started_at <= done.finished_at
    assert not [name for name in job_files(jobs, job.id) if name.startswith("input-")]  # inputs go once it is done


def test_progress_is_clamped_to_0_1(queues):
    reported, go_on = threading.Event(), threading.Event()

    def work(job):
        job.report(7.0, "too far")
        reported.set()
        assert go_on.wait(WAIT_S)

    jobs = queues()
    jobs.start({"ingest": work})
    job = jobs.submit("ingest", {}, [])
    assert reported.wait(WAIT_S)
    assert jobs.get(job.id).progress == 1.0
    go_on.set()
    wait_done(jobs, job.id)


def test_a_failing_job_is_failed_with_its_message_and_its_inputs_are_deleted(queues):
    def work(job):
        job.report(0.25, "reading")
        raise RuntimeError("the file is not audio")

    jobs = queues()
    jobs.start({"ingest": work})
    job = jobs.submit("ingest", {}, [("x.wav", b"not audio")])
    done = wait_done(jobs, job.id)
    assert done.state == "failed" and done.error == "the file is not audio"
    assert done.result is None and done.finished_at is not None
    assert job_files(jobs, job.id) == ["job.json", "lease-1"]


def test_unknown_and_malformed_job_ids_are_not_found(queues):
    jobs = queues()
    for job_id in ("0" * 32, "../" + "0" * 29, "", "A" * 32):
        with pytest.raises(NotFound, match="not found"):
            jobs.get(job_id)


def test_submit_stores_the_job_and_its_inputs_before_it_returns(queues):
    jobs = queues()  # not started: no worker touches it
    job = jobs.submit("ingest", {"collection": "c", "language": None}, [("../../etc/passwd", b"\x00\x01")])
    assert job_files(jobs, job.id) == ["input-0", "job.json"]  # the client's file name is never a path
    assert (jobs.config.root / job.id / "input-0").read_bytes() == b"\x00\x01"
    stored = JobStore(jobs.config.root).read(job.id)
    assert stored == job and stored.state == "queued" and stored.params == {"collection": "c", "language": None}
    assert not [entry for entry in os.listdir(jobs.config.root) if entry.startswith(".")]


def test_jobs_wait_their_turn_for_the_worker(queues):
    release = threading.Event()
    jobs = queues()
    jobs.start({"block": lambda job: release.wait(WAIT_S), "quick": lambda job: "second"})
    first = jobs.submit("block", {}, [])
    second = jobs.submit("quick", {}, [])
    poll(lambda: jobs.get(first.id).state == "running", WAIT_S, "the first job to start")
    assert jobs.get(second.id).state == "queued"
    release.set()
    assert wait_done(jobs, second.id).result == "second"


def test_finished_jobs_are_still_reported_after_a_restart(queues):
    before = queues()
    before.start({"ingest": lambda job: {"ids": ["rec-1"], "chunks": 2}})
    job = before.submit("ingest", {}, [("a.wav", b"a")])
    wait_done(before, job.id)
    before.close()

    after = queues()  # a new process would see the same directory
    after.start({})
    done = after.get(job.id)
    assert done.state == "succeeded" and done.result == {"ids": ["rec-1"], "chunks": 2}


def test_a_queued_job_runs_when_the_next_replica_starts(queues):
    before = queues()
    job = before.submit("ingest", {"collection": "c"}, [("a.wav", b"recording")])
    before.close()  # stopped before any worker ran it

    after = queues()
    after.start({"ingest": lambda job: [path.read_bytes().decode() for _, path in job.inputs]})
    done = wait_done(after, job.id)
    assert done.state == "succeeded" and done.result == ["recording"] and done.attempts == 1


def test_a_shutdown_hands_running_jobs_back_and_the_next_start_runs_them_again(queues):
    started, release = threading.Event(), threading.Event()
    outcome = []

    def stuck(job):
        started.set()
        release.wait(WAIT_S)
        try:
            job.report(0.9, "nearly")
        except JobInterrupted:
            outcome.append("interrupted")
            raise
        return "the first run's result"

    before = queues()
    before.start({"ingest": stuck})
    job = before.submit("ingest", {}, [("a.wav", b"a")])
    assert started.wait(WAIT_S)
    before.close(timeout=0.1)  # the handler is still running
    handed_back = before.get(job.id)
    assert handed_back.state == "queued" and "interrupted" in handed_back.message and handed_back.attempts == 0

    after = queues()
    after.start({"ingest": lambda job: "the second run's result"})
    done = wait_done(after, job.id)
    release.set()  # the first run wakes up; it must not touch the job any more
    poll(lambda: outcome == ["interrupted"], WAIT_S, "the first run to notice it lost the job")
    assert after.get(job.id).result == "the second run's result" and done.attempts == 1


def test_a_job_cancelled_by_a_shutdown_goes_back_to_the_queue_not_to_failed(queues):
    """A shutdown cancels all work (encoders.cancel); the job it interrupts is handed back, and runs again."""

    def cancelled(job):
        raise ShuttingDown("the server is shutting down")

    before = queues()
    before.start({"ingest": cancelled})
    job = before.submit("ingest", {}, [("a.wav", b"a")])
    poll(lambda: before.get(job.id).message.startswith("interrupted"), WAIT_S, "the job to be handed back")
    assert before.get(job.id).state == "queued"
    before.close(timeout=0.1)
    after = queues()
    after.start({"ingest": lambda job: "done"})
    assert wait_done(after, job.id).result == "done"


def test_a_job_that_crashed_its_replica_again_and_again_is_failed(queues):
    store = JobStore(queues().config.root)
    job = store.create("ingest", {}, [("a.wav", b"a")])
    store.write(replace(job, state="running", attempts=3, started_at=now_ms()))  # three starts, no finish

    jobs = queues()
    ran = []
    jobs.start({"ingest": lambda job: ran.append(job.record.id)})
    done = wait_done(jobs, job.id)
    assert done.state == "failed" and "gave up after 3 attempts" in done.error and ran == []


def test_a_kind_this_replica_cannot_run_waits_for_one_that_can(queues):
    first = queues()
    first.start({"text": lambda job: "text"})
    video = first.submit("video", {}, [])
    text = first.submit("text", {}, [])
    assert wait_done(first, text.id).result == "text"
    assert first.get(video.id).state == "queued"

    second = queues()
    second.start({"video": lambda job: "video"})
    assert wait_done(second, video.id).result == "video"


def test_a_full_queue_refuses_new_jobs_and_stores_nothing(queues):
    jobs = queues(queue_size=2)
    waiting = [jobs.submit("ingest", {}, [("a.wav", b"a")]).id for _ in range(2)]
    with pytest.raises(JobQueueFull, match="PRISM_JOB_QUEUE_SIZE=2"):
        jobs.submit("ingest", {}, [("b.wav", b"b")])
    assert sorted(os.listdir(jobs.config.root)) == sorted(waiting)  # nothing of the refused job

    jobs.start({"ingest": lambda job: "done"})
    for job_id in waiting:
        wait_done(jobs, job_id)
    assert jobs.submit("ingest", {}, [("b.wav", b"b")]).state == "queued"  # finished jobs do not count


def finished_job(store: JobStore, finished_at: int) -> str:
    job = store.create("ingest", {}, [])
    store.write(replace(job, state="succeeded", result="old", finished_at=finished_at))
    return job.id


def test_old_finished_jobs_are_removed_after_the_retention(queues):
    store = JobStore(queues().config.root)
    hour_ms = 3600 * 1000
    expired = finished_job(store, now_ms() - 2 * hour_ms)
    recent = finished_job(store, now_ms() - hour_ms // 2)
    waiting = store.create("ingest", {}, []).id  # old but not finished: never removed

    jobs = queues(retention_s=3600)
    jobs.start({})
    poll(lambda: not (jobs.config.root / expired).exists(), WAIT_S, "the expired job to be removed")
    with pytest.raises(NotFound, match="kept for 1 hour,"):
        jobs.get(expired)
    assert jobs.get(recent).result == "old" and jobs.get(waiting).state == "queued"


def test_only_the_most_recent_finished_jobs_are_kept(queues):
    store = JobStore(queues().config.root)
    ids = [finished_job(store, now_ms() - 1000 * (10 - n)) for n in range(5)]  # oldest first

    jobs = queues(max_kept=3)
    jobs.start({})
    poll(lambda: len(os.listdir(jobs.config.root)) == 3, WAIT_S, "old jobs to be removed")
    assert sorted(os.listdir(jobs.config.root)) == sorted(ids[2:])


def test_two_replicas_on_one_directory_run_each_job_exactly_once(queues):
    runs: list[tuple[str, str]] = []
    lock = threading.Lock()

    def handler(name):
        def run(job):
            job.report(0.5, "working")
            with lock:
                runs.append((name, job.record.id))
            return name

        return run

    first, second = queues(workers=2), queues(workers=2)
    ids = [first.submit("ingest", {}, [("a.wav", b"a")]).id for _ in range(30)]
    first.start({"ingest": handler("first")})  # both look for work at once
    second.start({"ingest": handler("second")})
    for job_id in ids:
        wait_done(second, job_id)

    assert Counter(job_id for _, job_id in runs) == Counter(ids)  # every job once, none twice
    for name, job_id in runs:
        record = first.get(job_id)
        assert record.result == name and record.attempts == 1


STUCK_REPLICA = """
import sys, threading
from pathlib import Path
from retrieval.jobs import JobConfig, JobQueue

root = Path(sys.argv[1])

def run(job):
    (root.parent / "started").write_text(job.record.id)
    threading.Event().wait()  # runs until this process is stopped

JobQueue(JobConfig(root=root, lease_s=1.0, poll_s=0.05)).start({"ingest": run})
threading.Event().wait()
"""


def test_a_job_whose_lease_went_stale_is_taken_over_by_another_replica(queues, tmp_path):
    jobs = queues(lease_s=1.0)
    job = jobs.submit("ingest", {}, [("a.wav", b"a")])
    replica = subprocess.Popen([sys.executable, "-c", STUCK_REPLICA, str(jobs.config.root)], cwd=Path(__file__).resolve().parent.parent)
    try:
        poll(lambda: (tmp_path / "started").is_file(), 60, "the other replica to take the job")
        jobs.start({"ingest": lambda job: "taken over"})
        assert jobs.get(job.id).state == "running"  # the other replica is alive and renews its lease
        os.kill(replica.pid, signal.SIGSTOP)  # alive, but no longer renewing: a hung replica
        done = wait_done(jobs, job.id)
        assert done.state == "succeeded" and done.result == "taken over" and done.attempts == 2
        assert sorted(name for name in job_files(jobs, job.id) if name.startswith("lease-")) == ["lease-1", "lease-2"]
    finally:
        replica.kill()
        replica.wait(timeout=30)
