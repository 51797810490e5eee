"""Searching by meaning, with a text query or a spoken one."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import replace
from typing import Annotated, get_args

from fastapi import APIRouter, Depends, File, Form, UploadFile

from api.metrics import observe_stages
from api.routes.deps import get_library
from api.schemas import Modality, ResultOut, SearchIn, SearchOut, TranscriptOut
from retrieval import InvalidInput, Library, TextQuery
from retrieval.timing import StageTimer

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/search", response_model=SearchOut, summary="Search a collection by text or by an audio clip")
def search(body: SearchIn, library: Library = Depends(get_library)) -> SearchOut:
    """Returns the `top_k` items closest to the query, best first, with per-stage timings.

    `query.audio` (base64) is transcribed first and its transcript is searched; the response then
    carries the transcript and its detected language."""
    query = TextQuery(
        text=body.query.text or "",
        collection=body.collection,
        top_k=body.top_k,
        filters=body.filters,
        min_score=body.min_score,
        modalities=tuple(body.modalities or ()),
    )
    audio = decode_base64(body.query.audio) if body.query.audio is not None else None
    return run_search(library, query, audio, "query audio", body.language)


@router.post("/search/upload", response_model=SearchOut, summary="Search with an uploaded audio clip")
def search_upload(
    file: Annotated[UploadFile, File(description="An audio clip (WAV, FLAC, MP3, OGG/Opus, M4A, WebM).")],
    collection: Annotated[str, Form()] = "default",
    top_k: Annotated[int, Form(ge=1, le=1000)] = 10,
    min_score: Annotated[float | None, Form()] = None,
    filters: Annotated[str, Form(description="Filters as a JSON object.")] = "{}",
    modalities: Annotated[str, Form(description="Comma-separated, e.g. text,audio; empty means all.")] = "",
    language: Annotated[str | None, Form(description="Language of the clip; default: detected.")] = None,
    library: Library = Depends(get_library),
) -> SearchOut:
    """The same search as POST /v1/search with `query.audio`, for clients that upload a file."""
    try:
        parsed_filters = json.loads(filters)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"filters is not valid JSON: {error}") from None
    chosen = tuple(m.strip() for m in modalities.split(",") if m.strip())
    unknown = set(chosen) - set(get_args(Modality))
    if unknown:
        raise InvalidInput(f"unknown modalities {sorted(unknown)}; choose from {list(get_args(Modality))}")
    query = TextQuery(text="", collection=collection, top_k=top_k, filters=parsed_filters, min_score=min_score, modalities=chosen)
    return run_search(library, query, file.file.read(), file.filename or "upload", language)


def run_search(library: Library, query: TextQuery, audio: bytes | None, audio_name: str, language: str | None) -> SearchOut:
    """Transcribe an audio query if there is one, then search with the text."""
    transcript = None
    transcribe_ms = 0.0
    if audio is not None:
        timer = StageTimer()
        with timer.stage("transcribe"):
            transcript = library.require_audio().transcribe_query(audio_name, audio, language)
        transcribe_ms = timer.ms["transcribe"]
        query = replace(query, text=transcript.text)
    result = library.search(query)
    timings = dict(result.timings_ms)
    if transcript is not None:
        timings["transcribe"] = round(transcribe_ms, 3)
        timings["total"] = round(timings["total"] + transcribe_ms, 3)
    observe_stages("search", timings)
    return SearchOut(
        results=[ResultOut.of_hit(hit) for hit in result.hits],
        transcript=TranscriptOut(text=transcript.text, language=transcript.language) if transcript else None,
        timings_ms=timings,
    )


def decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("query.audio is not valid base64") from None
