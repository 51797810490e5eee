"""POST /v1/answer: a grounded answer that cites documents, pictures and moments in recordings.

With `stream: true` the answer is sent as server-sent events while the model writes it:
  event: token    data: {"text": "..."}           one per piece of the answer
  event: answer   data: {AnswerOut}                last: the whole answer with its citations
  event: error    data: {"error": {code, message}} instead of `answer`, if the model fails midway
Everything that can fail before the first word (a bad query, an unknown collection, no generator, a
chat server that is down) is an ordinary error status, as without streaming.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from api.answer_schemas import SSE, AnswerIn, AnswerOut, CitationOut
from api.errors import classify, error_responses
from api.metrics import observe_stages
from api.routes.deps import decode_base64, get_library
from api.schemas import TranscriptOut
from encoders.generate import LazyGenerator
from retrieval import Library, Query
from retrieval.answer import Answer, AnswerRequest, AnswerRun
from retrieval.timing import StageTimer

log = logging.getLogger("prism")

router = APIRouter(prefix="/v1", tags=["answers"])

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of the events


def get_generators(request: Request) -> LazyGenerator:
    """The configured answer generator, created on first use; with PRISM_ANSWER_BACKEND=none, 503
    saying how to turn answers on."""
    generators: LazyGenerator = request.app.state.generators
    if not generators.enabled:
        generators.get()  # raises GeneratorUnavailable with the reason and the fix
    return generators


def streamed_responses(model: type[BaseModel], description: str, events: tuple[str, ...] = ("message",)) -> dict[int | str, dict]:
    """The 200 of a route that answers JSON, or server-sent events when asked to stream. The event
    stream's schema is that of one event (OpenAPI 3.1 has no itemSchema yet; tools such as
    schemathesis read `schema` so): its name among `events` and its data, a JSON text."""
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {"event": {"type": "string", "enum": list(events)}, "data": {"type": "string", "description": "JSON"}, "id": {"type": "string"}, "retry": {"type": "integer"}},
    }
    return {200: {"model": model, "content": {SSE: {"schema": event}}, "description": description}}


@router.post(
    "/answer",
    response_model=AnswerOut,
    summary="Answer a question from a collection, citing the sources",
    responses={**streamed_responses(AnswerOut, "The answer (JSON), or with `stream: true` server-sent events: `token` pieces, then `answer` (or `error`).", events=("token", "answer", "error")), **error_responses(400, 404, 413, 502)},
)
def answer(body: AnswerIn, request: Request, library: Library = Depends(get_library), generators: LazyGenerator = Depends(get_generators)):
    """Retrieves the sources closest to the question (every modality unless `modalities` says
    otherwise), keeps those whose relevance reaches `min_score`, and has the answer model write an
    answer that cites them as [1], [2], ...; `citations` resolves the cited numbers to items (a
    document chunk, a picture with its thumbnail, a moment in a recording with the second it starts).
    When no source is relevant, the answer says so (`nothing_found`) and the model is not called."""
    settings = request.app.state.prism.settings
    timer = StageTimer()
    question, transcript = body.query.text, None
    if body.query.audio is not None:
        with timer.stage("transcribe"):
            transcript = library.require_audio().transcribe_query("query.audio", decode_base64(body.query.audio, "query.audio"), body.language)
        question = transcript.text
    query = Query(
        text=question,
        image=decode_base64(body.query.image, "query.image") if body.query.image is not None else None,
        image_name="query.image",
        spoken=transcript is not None,
        collection=body.collection,
        top_k=body.top_k or settings.answer_top_k,
        filters=body.filters,
        modalities=tuple(body.modalities or ()),
        rerank=body.rerank,
    )
    answer_request = AnswerRequest(
        query=query,
        question=question,
        min_score=settings.answer_min_score if body.min_score is None else body.min_score,
        max_tokens=min(body.max_tokens or settings.answer_max_tokens, settings.answer_max_tokens),
        temperature=body.temperature,
    )
    run = library.answer(answer_request, generators.get)
    extra = {**timer.ms}
    transcript_out = TranscriptOut(text=transcript.text, language=transcript.language) if transcript else None

    def finish(result: Answer) -> AnswerOut:
        return answer_out(result, transcript_out, extra)

    if body.stream:
        return stream_events(run, finish)
    return finish(run.result())


def answer_out(result: Answer, transcript: TranscriptOut | None, extra_ms: dict[str, float]) -> AnswerOut:
    timings = {**{stage: round(ms, 3) for stage, ms in extra_ms.items()}, **result.timings_ms}
    timings["total"] = round(timings.get("total", 0.0) + sum(extra_ms.values()), 3)
    observe_stages("answer", timings)
    return AnswerOut(
        answer=result.text,
        nothing_found=result.nothing_found,
        citations=[CitationOut.of(source) for source in result.citations],
        used_context=[CitationOut.of(source) for source in result.sources],
        model=result.model,
        backend=result.backend,
        transcript=transcript,
        timings_ms=timings,
    )


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def error_data(error: BaseException) -> dict[str, Any]:
    status, code = classify(error)
    if status >= 500:
        log.warning("a streamed answer failed after it started: %s: %s", type(error).__name__, error)
    message = str(error) if status != 500 else f"internal error ({type(error).__name__}); see the server log"
    return {"error": {"code": code, "message": message}}


def first_then_rest(run: AnswerRun) -> Iterator[str]:
    """The answer's pieces, with the first already produced: a generator that cannot answer raises
    here, while the response can still carry an error status."""
    pieces = run.pieces()
    first = next(pieces, None)

    def rest() -> Iterator[str]:
        if first is not None:
            yield first
        yield from pieces

    return rest()


def stream_events(run: AnswerRun, finish: Callable[[Answer], AnswerOut]) -> StreamingResponse:
    pieces = first_then_rest(run)

    def events() -> Iterator[str]:
        try:
            for piece in pieces:
                yield sse("token", {"text": piece})
            yield sse("answer", finish(run.result()).model_dump(mode="json"))
        except Exception as error:  # noqa: BLE001 - the status is sent already: say it in the stream
            yield sse("error", error_data(error))

    return StreamingResponse(events(), media_type=SSE, headers=STREAM_HEADERS)

