"""Background jobs: progress, results and failures reach the caller; submit never blocks on the work."""

from __future__ import annotations

import threading

import pytest

from retrieval.errors import NotFound
from retrieval.jobs import CANCELLED_MESSAGE, JobManager
from tests.servers import poll


@pytest.fixture
def jobs():
    manager = JobManager(workers=1)
    yield manager
    manager.close(timeout=10)


def wait_done(jobs: JobManager, job_id: str):
    poll(lambda: jobs.get(job_id).done, 10, f"job {job_id} to finish")
    return jobs.get(job_id)


def is_forgotten(jobs: JobManager, job_id: str) -> bool:
    try:
        jobs.get(job_id)
    except NotFound:
        return True
    return False


def test_a_job_reports_progress_and_succeeds_with_its_result(jobs):
    halfway = threading.Event()
    go_on = threading.Event()

    def work(report):
        report(0.5, "halfway")
        halfway.set()
        assert go_on.wait(10)
        report(0.9, "nearly")
        return {"chunks": 3}

    job = jobs.submit("ingest", work)
    assert len(job.id) == 32 and job.kind == "ingest"
    assert halfway.wait(10)
    seen = jobs.get(job.id)
    assert (seen.state, seen.progress, seen.message) == ("running", 0.5, "halfway")
    assert seen.started_at is not None and seen.finished_at is None

    go_on.set()
    done = wait_done(jobs, job.id)
    assert done.state == "succeeded"
    assert done.result == {"chunks": 3}
    assert done.progress == 1.0 and done.error is None
    assert done.created_at <= done.started_at <= done.finished_at


def test_progress_is_clamped_to_0_1(jobs):
    reported = threading.Event()
    go_on = threading.Event()

    def work(report):
        report(7.0, "too far")
        reported.set()
        assert go_on.wait(10)

    job = jobs.submit("ingest", work)
    assert reported.wait(10)
    assert jobs.get(job.id).progress == 1.0
    go_on.set()
    wait_done(jobs, job.id)


def test_a_failing_job_is_failed_with_its_message(jobs):
    def work(report):
        report(0.25, "reading")
        raise RuntimeError("the file is not audio")

    job = jobs.submit("ingest", work)
    done = wait_done(jobs, job.id)
    assert done.state == "failed"
    assert done.error == "the file is not audio"
    assert done.result is None and done.finished_at is not None


def test_an_unknown_job_id_is_not_found(jobs):
    with pytest.raises(NotFound):
        jobs.get("0" * 32)


def test_submit_returns_before_the_job_finishes(jobs):
    release = threading.Event()
    started = threading.Event()

    def work(report):
        started.set()
        assert release.wait(10)
        return "done"

    job = jobs.submit("ingest", work)  # would hang here for 10 s and then fail if it ran inline
    assert job.state == "queued"
    assert started.wait(10)
    assert jobs.get(job.id).state == "running"
    release.set()
    assert wait_done(jobs, job.id).result == "done"


def test_jobs_wait_their_turn_for_the_worker(jobs):
    release = threading.Event()
    first = jobs.submit("ingest", lambda report: release.wait(10))
    second = jobs.submit("ingest", lambda report: "second")
    poll(lambda: jobs.get(first.id).state == "running", 10, "the first job to start")
    assert jobs.get(second.id).state == "queued"
    release.set()
    assert wait_done(jobs, second.id).result == "second"


def test_only_the_most_recent_finished_jobs_are_kept():
    jobs = JobManager(workers=1, keep=3)
    try:
        ids = [jobs.submit("ingest", lambda report, n=n: n).id for n in range(6)]
        wait_done(jobs, ids[-1])
        poll(lambda: is_forgotten(jobs, ids[2]), 10, "old jobs to be forgotten")
        for old in ids[:3]:
            with pytest.raises(NotFound):
                jobs.get(old)
        assert [jobs.get(job_id).result for job_id in ids[3:]] == [3, 4, 5]
    finally:
        jobs.close()


def test_close_cancels_queued_jobs_and_waits_for_running_ones():
    jobs = JobManager(workers=1)
    started = threading.Event()
    release = threading.Event()
    running = jobs.submit("ingest", lambda report: (started.set(), release.wait(10), "finished")[-1])
    assert started.wait(10)
    queued = jobs.submit("ingest", lambda report: "never")

    closer = threading.Thread(target=jobs.close, kwargs={"timeout": 10})
    closer.start()
    poll(lambda: jobs.get(queued.id).done, 10, "the queued job to be cancelled")
    assert closer.is_alive()  # still waiting for the running job
    release.set()
    closer.join(10)
    assert not closer.is_alive()

    assert jobs.get(running.id).state == "succeeded" and jobs.get(running.id).result == "finished"
    cancelled = jobs.get(queued.id)
    assert cancelled.state == "failed" and cancelled.error == CANCELLED_MESSAGE
    with pytest.raises(RuntimeError):
        jobs.submit("ingest", lambda report: None)
