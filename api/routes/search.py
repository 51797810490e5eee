"""Searching by meaning, with a text, a picture or a spoken clip as the query."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile

from api.errors import error_responses
from api.metrics import observe_stages
from api.routes.deps import CollectionForm, decode_base64, file_name, get_library, not_null, parse_json_object
from api.schemas import RerankOut, ResultOut, RoutesOut, SearchIn, SearchOut, TranscriptOut
from encoders.images import looks_like_image
from retrieval import InvalidInput, Library, Query
from retrieval.fusion import FusionConfig
from retrieval.timing import StageTimer
from retrieval.validation import json_problem

router = APIRouter(prefix="/v1", tags=["search"])


@router.post(
    "/search",
    response_model=SearchOut,
    summary="Search a collection by text, picture or audio clip",
    responses=error_responses(400, 404, 413, 502),
)
def search(body: SearchIn, library: Library = Depends(get_library)) -> SearchOut:
    """Returns the `top_k` items closest to the query, best first, with the routes that found each one
    and per-stage timings.

    `query.text` searches documents, transcripts and captions with the text encoder, and pictures with
    CLIP's text tower; `query.image` (base64) finds pictures that look like it; `query.audio` (base64)
    is transcribed and its transcript searched as text (the response carries the transcript).
    `modalities` limits what comes back."""
    query = Query(
        text=body.query.text,
        image=decode_base64(body.query.image, "query.image") if body.query.image is not None else None,
        image_name="query.image",
        collection=body.collection,
        top_k=body.top_k,
        filters=body.filters,
        min_score=body.min_score,
        modalities=tuple(body.modalities or ()),
        fusion=FusionConfig(method=body.fusion.method, k=body.fusion.k, weights=body.fusion.weights, per_modality_limit=body.per_modality_limit),
        rerank=body.rerank,
        rerank_top_n=body.rerank_top_n,
    )
    audio = decode_base64(body.query.audio, "query.audio") if body.query.audio is not None else None
    return run_search(library, query, audio, "query.audio", body.language)


@router.post(
    "/search/upload",
    response_model=SearchOut,
    summary="Search with an uploaded picture or audio clip",
    responses=error_responses(400, 404, 413, 502),
)
def search_upload(
    file: Annotated[UploadFile, File(description="A picture (JPEG, PNG, WebP, GIF, BMP, TIFF) or an audio clip (WAV, FLAC, MP3, OGG/Opus, M4A, WebM).")],
    collection: CollectionForm = "default",
    top_k: Annotated[int, Form(ge=1, le=1000)] = 10,
    min_score: Annotated[float | None, Form(allow_inf_nan=False, json_schema_extra=not_null, description="A finite number; absent or empty: no threshold.")] = None,
    filters: Annotated[str, Form(description="Filters as a JSON object.")] = "{}",
    modalities: Annotated[str, Form(max_length=64, description="Comma-separated, e.g. text,audio; empty means all.")] = "",
    language: Annotated[str | None, Form(max_length=16, json_schema_extra=not_null, description="Language of an audio clip; default: detected.")] = None,
    per_modality_limit: Annotated[int | None, Form(ge=1, le=1000, json_schema_extra=not_null)] = None,
    rerank: Annotated[bool, Form()] = False,
    rerank_top_n: Annotated[int, Form(ge=1, le=1000)] = 50,
    library: Library = Depends(get_library),
) -> SearchOut:
    """The same search as POST /v1/search with `query.image` or `query.audio`, for clients that upload
    a file; which of the two it is, is told from the file's first bytes."""
    parsed_filters = parse_json_object(filters, "filters")
    problem = json_problem(parsed_filters, "filters")
    if problem:
        raise InvalidInput(problem)
    chosen = tuple(m.strip() for m in modalities.split(",") if m.strip())
    data, name = file.file.read(), file_name(file.filename, "file")
    picture = looks_like_image(data)
    query = Query(
        image=data if picture else None,
        image_name=name,
        collection=collection,
        top_k=top_k,
        filters=parsed_filters,
        min_score=min_score,
        modalities=chosen,
        fusion=FusionConfig(per_modality_limit=per_modality_limit),
        rerank=rerank,
        rerank_top_n=rerank_top_n,
    )
    return run_search(library, query, None if picture else data, name, language)


def run_search(library: Library, query: Query, audio: bytes | None, audio_name: str, language: str | None) -> SearchOut:
    """Transcribe an audio query if there is one, then search with its text."""
    transcript = None
    timer = StageTimer()
    if audio is not None:
        with timer.stage("transcribe"):
            transcript = library.require_audio().transcribe_query(audio_name, audio, language)
        query = replace(query, text=transcript.text, spoken=True)
    result = library.search(query)
    timings = {**timer.ms, **result.timings_ms}
    timings["total"] = round(timings["total"] + timer.ms.get("transcribe", 0.0), 3)
    timings = {stage: round(ms, 3) for stage, ms in timings.items()}
    observe_stages("search", timings)
    return SearchOut(
        results=[ResultOut.of_hit(hit) for hit in result.hits],
        routes=RoutesOut(ran=result.routes, skipped=result.skipped),
        rerank=RerankOut(applied=result.rerank is not None, model=result.rerank, skipped=result.rerank_skipped),
        transcript=TranscriptOut(text=transcript.text, language=transcript.language) if transcript else None,
        timings_ms=timings,
    )
