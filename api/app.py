"""The FastAPI application: lifespan loading, middleware, routers."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import Depends, FastAPI

from api.auth import require_api_key
from api.cancellation import CancelOnDisconnect
from api.errors import install_error_handlers
from api.limits import BodySizeLimit
from api.metrics import RequestMetrics
from api.routes import audio, doctor, documents, images, items, openai_compat, search, system, ui
from api.settings import Settings
from api.state import AppState

DESCRIPTION = """Self-hosted multimodal retrieval on Milvus.

Ingest documents, pictures and audio recordings; search them by meaning with text, a picture or a
spoken clip; and embed text through an OpenAI-compatible endpoint.
Errors are JSON: `{"error": {"code": "...", "message": "..."}}`.
"""


def package_version() -> str:
    try:
        return version("prism-retrieval")
    except PackageNotFoundError:
        return "0.0.0+source"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Models load in a background thread: /healthz answers at once, /readyz when loading is done.
        app.state.prism.start_loading()
        yield
        app.state.prism.close()

    app = FastAPI(title="Prism", version=package_version(), description=DESCRIPTION, lifespan=lifespan)
    app.state.prism = AppState(settings)
    app.state.api_keys = settings.api_key_list

    install_error_handlers(app)
    app.add_middleware(CancelOnDisconnect)  # innermost: the request's work sees its cancel token
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestMetrics)

    app.include_router(system.router)
    app.include_router(ui.router)  # the web UI at /: a static page, which sends the user's key to /v1
    # Each router carries its full /v1 prefix itself, so route templates (metric labels) are complete.
    for router in (documents.router, images.router, audio.router, search.router, items.router, openai_compat.router, doctor.router):
        app.include_router(router, dependencies=[Depends(require_api_key)])
    return app


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # faiss (inside Milvus Lite) reports at INFO each CPU instruction set it tried and could not load.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
