"""Liveness, readiness, info and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from api.auth import require_api_key
from api.errors import error_response, error_responses
from api.metrics import metrics_response
from api.schemas import AudioModelOut, ImageModelOut, InfoOut, ModelOut, RerankModelOut
from encoders import EncoderError
from retrieval import StoreUnavailable

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: models loaded and the store answering", responses=error_responses(503))
def readyz(request: Request) -> JSONResponse:
    """200 with a check per dependency when ready; 503 naming what is missing otherwise."""
    state = request.app.state.prism
    if state.library is None:
        return error_response(503, "not_ready", state.error or "models are still loading")
    library = state.library
    try:
        library.store.ping()  # a load balancer should stop sending traffic when Milvus is gone
    except StoreUnavailable as error:
        return error_response(503, "store_unavailable", str(error))
    try:
        ping_server(library.encoder)  # ... or when the embeddings server is
    except EncoderError as error:
        return error_response(503, "encoder_unavailable", str(error))
    text = library.text_model
    # Images and audio are optional: reported here, but their absence does not make the server unready.
    image = library.image_model
    audio = library.audio_model
    checks = {
        "text_encoder": f"{text.backend} {text.name} loaded",
        "store": f"{library.store.kind} ok",
        "image_encoder": f"{image.name} loaded" if image else f"unavailable: {library.image_error}",
        "audio_transcriber": f"{audio.backend} {audio.name} loaded" if audio else f"unavailable: {library.audio_error}",
        "reranker": reranker_check(library),
    }
    return JSONResponse({"status": "ready", "checks": checks})


def ping_server(model: object) -> None:
    """Models served by another process (SGLang) have a ping; in-process ones are there if loaded."""
    ping = getattr(model, "ping", None)
    if ping is not None:
        ping()


def reranker_check(library) -> str:
    """Reranking is optional: a rerank server that is down is reported, and the server stays ready
    (searches say the rerank was skipped, and why)."""
    reranker = library.reranker
    if reranker is None:
        return f"unavailable: {library.rerank_error}"
    try:
        ping_server(reranker)
    except EncoderError as error:
        return f"unreachable: {error}"
    return f"{reranker.info.backend} {reranker.info.name} ok"


@router.get("/v1/info", response_model=InfoOut, dependencies=[Depends(require_api_key)], summary="Models and store in use")
def info(request: Request) -> InfoOut:
    state = request.app.state.prism
    library = state.library
    models = {}
    if library is not None:
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
    return InfoOut(version=request.app.version, ready=library is not None, error=state.error, models=models, store=store)


@router.get(
    "/metrics",
    dependencies=[Depends(require_api_key)],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    library = request.app.state.prism.library
    return metrics_response([library.images.batcher] if library is not None and library.images is not None else [])
