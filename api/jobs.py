"""The kinds of background job, registered in one place: a kind's name -> how a replica runs it.

A kind is a function of the open Library that returns the job's handler, or None when this replica
cannot run that kind (its model is not loaded here); its jobs then wait for a replica that can.
A handler gets the job's parameters and its saved uploads (retrieval/jobs.py JobContext) and returns
the body that GET /v1/jobs/{id} shows as `result`. Handlers run again from the start after a crash,
so they must be idempotent. To add a kind (video, say): write its handler factory, add it to
JOB_KINDS, and submit jobs of that name from its route.
"""

from __future__ import annotations

from typing import Callable

from api.routes.documents import ingest_response
from retrieval import Library
from retrieval.jobs import JobContext, JobHandler

AUDIO_INGEST = "audio-ingest"


def audio_ingest(library: Library) -> JobHandler | None:
    """Transcribe and store recordings: params {"collection", "language", "metadata"}; the inputs are
    the recordings as uploaded, decoded again here (the route decoded them to check them)."""
    audio = library.audio
    if audio is None:
        return None

    def run(job: JobContext) -> dict:
        collection, language, metadata = job.params["collection"], job.params.get("language"), job.params.get("metadata") or {}
        recordings = [audio.decode(filename, path.read_bytes(), metadata) for filename, path in job.inputs]
        return ingest_response(audio.ingest(collection, recordings, language, job.report)).model_dump(mode="json")

    return run


JOB_KINDS: dict[str, Callable[[Library], JobHandler | None]] = {
    AUDIO_INGEST: audio_ingest,
}


def job_handlers(library: Library) -> dict[str, JobHandler]:
    """The handlers of every kind this replica can run."""
    handlers = {name: kind(library) for name, kind in JOB_KINDS.items()}
    return {name: handler for name, handler in handlers.items() if handler is not None}
