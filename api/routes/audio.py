"""Ingesting recordings, and the background jobs that long ones become."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse

from api.errors import error_responses
from api.jobs import AUDIO_INGEST
from api.routes.deps import CollectionForm, get_library, not_null, parse_json_object
from api.routes.documents import ingest_response
from api.schemas import IngestOut, JobAcceptedOut, JobOut
from retrieval import Library, NotFound
from retrieval.errors import ModalityUnavailable
from retrieval.ingest import check_collection_name
from retrieval.jobs import JobQueue

router = APIRouter(prefix="/v1", tags=["audio"])


@router.post(
    "/audio",
    response_model=IngestOut,
    responses={202: {"model": JobAcceptedOut, "description": "Long recordings: a background job was accepted (and stored: it survives a restart)."}, **error_responses(400, 413, 502)},
    summary="Ingest audio recordings",
)
def ingest_audio(
    files: Annotated[list[UploadFile], File(description="Recordings: WAV, FLAC, MP3, OGG/Opus, M4A/AAC, WebM.")],
    collection: CollectionForm = "default",
    language: Annotated[str | None, Form(json_schema_extra=not_null, description="Force a language (e.g. en); default: detected.")] = None,
    metadata: Annotated[str, Form(description="JSON object stored with every window of these recordings.")] = "{}",
    library: Library = Depends(get_library),
):
    """Transcribes each recording, groups its segments into windows of about 30 s and stores them as
    `audio` items with `start`, `end` and the `recording_id`. Every file is decoded and checked first,
    so a bad one stores nothing. When the upload is longer than PRISM_AUDIO_JOB_THRESHOLD_S, the
    uploads are saved as a background job and the answer is 202 with its id at once; the items appear
    when the whole job is done. An accepted job survives a restart of the server. When
    PRISM_JOB_QUEUE_SIZE jobs are already waiting or running, the answer is 503 and nothing is stored."""
    audio = library.require_audio()
    check_collection_name(collection)
    extra = parse_json_object(metadata, "metadata")
    recordings = [audio.decode(f.filename or "upload", f.file.read(), extra) for f in files]
    if sum(r.duration_s for r in recordings) <= audio.config.job_threshold_s:
        return ingest_response(audio.ingest(collection, recordings, language))
    params = {"collection": collection, "language": language, "metadata": extra}
    job = require_jobs(library).submit(AUDIO_INGEST, params, [(r.filename, r.data) for r in recordings])
    accepted = JobAcceptedOut(job_id=job.id, status_url=f"/v1/jobs/{job.id}")
    return JSONResponse(accepted.model_dump(), status_code=202)


@router.get("/jobs/{job_id}", response_model=JobOut, summary="Progress and result of a background job", responses=error_responses(404))
def get_job(job_id: str, library: Library = Depends(get_library)) -> JobOut:
    """Read from the job store that every replica shares, so any replica answers for any job; a
    finished job's status is kept for PRISM_JOB_RETENTION_S (at most PRISM_JOB_MAX_KEPT of them)."""
    if library.jobs is None:
        raise NotFound(f"job {job_id!r} not found (this server runs no background jobs)")
    job = library.jobs.get(job_id)
    return JobOut(
        id=job.id,
        kind=job.kind,
        state=job.state,
        progress=job.progress,
        message=job.message,
        result=job.result,
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )



def require_jobs(library: Library) -> JobQueue:
    if library.jobs is None:
        raise ModalityUnavailable("background jobs are not set up on this server, so long recordings cannot be accepted")
    return library.jobs
