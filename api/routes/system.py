"""Liveness, readiness, info and metrics."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from api.auth import require_api_key
from api.errors import error_responses
from api.metrics import metrics_response
from api.readiness import detailed_view, failing, probe, public_view
from api.schemas import AudioModelOut, ImageModelOut, InfoOut, ModelOut, RerankModelOut
from api.settings import Settings

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    """Answered on the event loop, with no I/O: it never waits for a dependency or for the thread pool
    that runs the other routes."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: models loaded and the store answering",
    responses=error_responses(503),
)
async def readyz(request: Request) -> JSONResponse:
    """200 with a status word per dependency (`ok`, `disabled`, `unavailable`, `not answering`) when the
    store and the text encoder are ok; 503 with the same and an error naming what is missing otherwise.
    Open to all, so it tells no URLs, model names or error texts: GET /v1/info has those."""
    state = request.app.state.prism
    if state.library is None:
        why = "models are still loading" if state.error is None else "loading failed (it may be retrying)"
        message = f"{why}; GET /v1/info or the server log says why"
        return JSONResponse({"status": "not_ready", "checks": {}, "error": {"code": "not_ready", "message": message}}, status_code=503)
    checks = await probe(state.library, state.settings)
    failed = failing(checks)
    if not failed:
        return JSONResponse({"status": "ready", "checks": public_view(checks)})
    code = "store_unavailable" if "store" in failed else "encoder_unavailable"
    message = "; ".join(f"{name}: {checks[name].status}" for name in failed)
    body = {"status": "not_ready", "checks": public_view(checks), "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=503)


@router.get("/v1/info", response_model=InfoOut, dependencies=[Depends(require_api_key)], summary="Models and store in use")
async def info(request: Request) -> InfoOut:
    """The models, the store, and each dependency's check in detail (what /readyz says in one word)."""
    state = request.app.state.prism
    library = state.library
    models = {}
    checks: dict[str, str] = {}
    if library is not None:
        checks = detailed_view(await probe(library, state.settings))
        text = library.text_model
        models["text"] = ModelOut(
            name=text.name,
            backend=text.backend,
            dimension=text.dimension,
            max_tokens=text.max_tokens,
            fallback_used=text.fallback_reason is not None,
            requested=text.requested,
            fallback_reason=text.fallback_reason,
        )
        image = library.image_model
        models["image"] = ImageModelOut(
            available=image is not None,
            name=image.name if image else None,
            pretrained=image.pretrained if image else None,
            dimension=image.dimension if image else None,
            error=library.image_error,
        )
        reranker = library.reranker
        models["rerank"] = RerankModelOut(
            available=reranker is not None,
            name=reranker.info.name if reranker else None,
            backend=reranker.info.backend if reranker else None,
            error=library.rerank_error,
        )
        audio = library.audio_model
        models["audio"] = AudioModelOut(
            available=audio is not None,
            name=audio.name if audio else None,
            backend=audio.backend if audio else None,
            fallback_used=bool(audio and audio.fallback_reason),
            requested=audio.requested if audio else None,
            fallback_reason=audio.fallback_reason if audio else None,
            error=library.audio_error,
        )
    store = {"kind": library.store.kind if library else "unknown", "uri": state.settings.store_uri}
    for space in (library.store, library.image_store) if library else ():
        if space is not None and space.kind == "milvus-lite":  # a server searches its own HNSW index
            store[f"search_{space.space}"] = space.index_description()
    return InfoOut(version=request.app.version, ready=library is not None, error=state.error, models=models, store=store, checks=checks, configuration=configuration_view(state.settings))


def configuration_view(settings: Settings) -> dict[str, Any]:
    """The effective settings as `prism info` shows them: secrets masked, and URLs without passwords."""
    view = settings.public_view()
    for name in ("milvus_uri", "openai_base_url", "rerank_url", "answer_url", "store_uri"):
        if isinstance(view.get(name), str):
            view[name] = masked_url(view[name])
    return view


def masked_url(url: str) -> str:
    """http://user:secret@host/ -> http://user:***@host/; anything else as it is."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@router.get(
    "/metrics",
    dependencies=[Depends(require_api_key)],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    library = request.app.state.prism.library
    if library is None:
        return metrics_response()
    batchers = [*getattr(library.encoder, "batchers", []), *(library.images.batchers if library.images is not None else [])]
    return metrics_response(batchers)
