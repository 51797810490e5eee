"""Every failure leaves as JSON `{"error": {"code", "message"}}` with a fitting status; never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.state import ServiceNotReady
from encoders import EncoderError, EncoderUnavailable
from encoders.audio import AudioTooLong, InvalidAudio
from encoders.cancel import Cancelled, ShuttingDown
from encoders.images import ImageTooLarge, InvalidImage
from retrieval.batching import QueueFull
from retrieval.audio import TooLarge
from retrieval.errors import ModalityUnavailable
from retrieval import InvalidFile, InvalidFilter, InvalidInput, NotFound, StoreMismatch, StoreUnavailable, UnsupportedFile

log = logging.getLogger("prism")

# Starlette picks the handler registered for the nearest class in an exception's MRO, so InvalidFilter
# gets its own code although it is an InvalidInput too.
ERROR_STATUS: list[tuple[type[Exception], int, str]] = [
    (InvalidFilter, 400, "invalid_filter"),
    (TooLarge, 413, "payload_too_large"),
    (ImageTooLarge, 413, "payload_too_large"),
    (AudioTooLong, 413, "payload_too_large"),
    (InvalidImage, 400, "invalid_image"),
    (InvalidAudio, 400, "invalid_audio"),
    (QueueFull, 503, "overloaded"),
    (ModalityUnavailable, 503, "modality_unavailable"),
    (UnsupportedFile, 415, "unsupported_file_type"),
    (InvalidFile, 400, "invalid_file"),
    (InvalidInput, 400, "invalid_input"),
    (NotFound, 404, "not_found"),
    (ServiceNotReady, 503, "not_ready"),
    (EncoderUnavailable, 503, "encoder_unavailable"),
    (StoreUnavailable, 503, "store_unavailable"),
    (StoreMismatch, 503, "store_mismatch"),
    (EncoderError, 502, "encoder_error"),
    (ShuttingDown, 503, "shutting_down"),
    (Cancelled, 499, "client_closed_request"),  # nginx's code: the client left, nobody reads this
]


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def describe_validation_error(error: RequestValidationError) -> str:
    parts = []
    for problem in error.errors():
        location = list(problem.get("loc", ()))
        if location and location[0] in ("body", "query", "path", "header", "cookie"):
            location = location[1:]  # where the field was sent; the field's own path is what helps
        where = ".".join(str(part) for part in location)
        parts.append(f"{where}: {problem.get('msg')}" if where else str(problem.get("msg")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    for exception_type, status, code in ERROR_STATUS:
        app.add_exception_handler(exception_type, _handler(status, code))

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", describe_validation_error(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail), headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"internal error ({type(error).__name__}); see the server log")


def _handler(status: int, code: str):
    async def handle(request: Request, error: Exception) -> JSONResponse:
        if status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.url.path, status, error)
        return error_response(status, code, str(error))

    return handle
