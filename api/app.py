"""The FastAPI application: lifespan loading, middleware, routers."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api.auth import ApiKeyAuth
from api.cancellation import CancelOnDisconnect
from api.errors import document_errors, error_responses, install_error_handlers
from api.limits import BodySizeLimit
from api.metrics import RequestMetrics
from api.openapi_uploads import binary_uploads
from api.routes import answer, audio, chat, doctor, documents, images, items, openai_compat, search, system, ui
from api.settings import Settings
from api.state import AppState
from encoders.generate import LazyGenerator
from retrieval.validation import TextLimits

DESCRIPTION = """Self-hosted multimodal retrieval on Milvus.

Ingest documents, pictures and audio recordings; search them by meaning with text, a picture or a
spoken clip; ask questions and get answers that cite them (also as an OpenAI-compatible chat model);
and embed text through an OpenAI-compatible endpoint.
Errors are JSON: `{"error": {"code": "...", "message": "..."}}`. 422 means the request does not match
this schema; 400 means it does, but its content cannot be used (the message says why).
With PRISM_API_KEYS set, /v1 and /metrics need `Authorization: Bearer <key>`.
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
        app.state.generators.close()
        app.state.prism.close()

    # /docs and /redoc with Swagger UI's and ReDoc's files from the fastapi-offline package: no CDN.
    app = FastAPIOffline(title="Prism", version=package_version(), description=DESCRIPTION, lifespan=lifespan)
    app.state.prism = AppState(settings)
    app.state.api_keys = settings.api_key_list
    app.state.generators = LazyGenerator(settings.generator_config())  # the answer model, loaded on the first answer

    install_error_handlers(app)
    # The last added runs first: metrics see every answer; the key is checked before the body limit
    # or anything else reads the body; the request's work sees its cancel token (innermost).
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(ApiKeyAuth, keys=settings.api_key_list)
    app.add_middleware(RequestMetrics)

    app.include_router(system.router)
    app.include_router(ui.router)  # the web UI at /: a static page, which sends the user's key to /v1
    # Each router carries its full /v1 prefix itself, so route templates (metric labels) are complete.
    # All of them need the loaded library (503 while loading, or without Milvus).
    for router in (
        documents.router,
        images.router,
        audio.router,
        search.router,
        answer.router,
        chat.router,
        items.router,
        openai_compat.router,
        doctor.router,
    ):
        app.include_router(router, responses=error_responses(503))
    publish_truth(app, settings.text_limits())
    return app


def publish_truth(app: FastAPI, limits: TextLimits) -> None:
    """The OpenAPI document says which errors each route answers, with the real error body, and the
    limits this server was configured with."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = binary_uploads(document_limits(document_errors(generate()), limits))
        return app.openapi_schema

    app.openapi = openapi


def document_limits(schema: dict, limits: TextLimits) -> dict:
    """Settings-dependent limits (answered with 413), written into the schema where they apply."""
    models = schema["components"]["schemas"]
    models["DocumentsIn"]["properties"]["documents"]["maxItems"] = limits.max_documents
    models["DocumentIn"]["properties"]["text"]["maxLength"] = limits.max_document_chars
    text, texts, *_token_ids = models["EmbeddingsIn"]["properties"]["input"]["anyOf"]
    text["maxLength"] = texts["items"]["maxLength"] = limits.max_document_chars
    upload = schema["paths"]["/v1/documents/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    models[upload.rsplit("/", 1)[-1]]["properties"]["files"]["maxItems"] = limits.max_documents
    return schema


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # faiss (inside Milvus Lite) reports at INFO each CPU instruction set it tried and could not load.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
