"""Every failure leaves as JSON `{"error": {"code", "message"}}` with a fitting status; never a traceback.

422 means the request does not match the published schema (wrong type, missing field, out of range,
too long: FastAPI's validation); 400 means it matches, but what it says cannot be done (empty text,
an unknown filter key, bad base64, a file that is not what it claims). POST /v1/images, which takes
JSON or multipart, validates its body itself and answers 400 for both.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import COLLECTION_DESCRIPTION, COLLECTION_PATTERN
from encoders import EncoderError, EncoderUnavailable
from encoders.audio import AudioTooLong, InvalidAudio
from encoders.cancel import Cancelled, ShuttingDown
from encoders.generate import GeneratorError, GeneratorUnavailable
from encoders.images import ImageTooLarge, InvalidImage
from retrieval.batching import QueueFull
from retrieval.audio import TooLarge
from retrieval.errors import ModalityUnavailable
from retrieval import InvalidFile, InvalidFilter, InvalidInput, NotFound, StoreMismatch, StoreUnavailable, UnsupportedFile
from retrieval.validation import InputTooLarge

log = logging.getLogger("prism")


class ServiceNotReady(Exception):
    """The Library is still loading or could not be loaded (HTTP 503)."""


class ErrorDetail(BaseModel):
    code: str = Field(
        description="What kind of error: invalid_request (422); invalid_input, invalid_filter, invalid_file, invalid_image, "
        "invalid_audio (400); unauthorized (401); not_found (404); payload_too_large (413); unsupported_file_type (415); "
        "encoder_error, generator_error (502); not_ready, store_unavailable, encoder_unavailable, generator_unavailable, modality_unavailable, "
        "overloaded (503)."
    )
    message: str = Field(description="What was wrong and how to fix it.")


class ErrorOut(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


# Starlette picks the handler registered for the nearest class in an exception's MRO, so InvalidFilter
# gets its own code although it is an InvalidInput too.
ERROR_STATUS: list[tuple[type[Exception], int, str]] = [
    (InvalidFilter, 400, "invalid_filter"),
    (TooLarge, 413, "payload_too_large"),
    (InputTooLarge, 413, "payload_too_large"),
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
    (GeneratorUnavailable, 503, "generator_unavailable"),
    (GeneratorError, 502, "generator_error"),
    (EncoderUnavailable, 503, "encoder_unavailable"),
    (StoreUnavailable, 503, "store_unavailable"),
    (StoreMismatch, 503, "store_mismatch"),
    (EncoderError, 502, "encoder_error"),
    (ShuttingDown, 503, "shutting_down"),
    (Cancelled, 499, "client_closed_request"),  # nginx's code: the client left, nobody reads this
]


def classify(error: BaseException) -> tuple[int, str]:
    """The status and code the error table gives an exception (its nearest class in the table), as
    the handlers would answer it; 500 for anything else. For errors raised after a streamed answer
    has started, which can no longer change the status."""
    table = {exception_type: (status, code) for exception_type, status, code in ERROR_STATUS}
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return 500, "internal_error"


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def describe_validation_error(error: RequestValidationError) -> str:
    parts = []
    for problem in error.errors():
        location = list(problem.get("loc", ()))
        if location and location[0] in ("body", "query", "path", "header", "cookie"):
            location = location[1:]  # where the field was sent; the field's own path is what helps
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location).lstrip(".")
        message = problem.get("msg")
        if problem.get("type") == "string_pattern_mismatch" and (problem.get("ctx") or {}).get("pattern") == COLLECTION_PATTERN:
            message = f"invalid collection name {problem.get('input')!r}: {COLLECTION_DESCRIPTION}"
        parts.append(f"{where}: {message}" if where else str(message))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    for exception_type, status, code in ERROR_STATUS:
        app.add_exception_handler(exception_type, _handler(status, code))

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", describe_validation_error(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {400: "invalid_input", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(error.status_code, "http_error")
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


# What each error status means, for the OpenAPI document. Routes list the statuses they can answer
# with error_responses(); document_errors() adds those that hold for whole groups of routes.
ERROR_DESCRIPTIONS = {
    400: "Bad input: the request matches the schema, but what it asks cannot be done (the message says why).",
    401: "Missing or invalid API key (only when PRISM_API_KEYS is set): send `Authorization: Bearer <key>`.",
    404: "No such collection, item, document or job.",
    409: "Conflict with the current state.",
    413: "Over a size limit: the request body (PRISM_MAX_REQUEST_BYTES), a text, file, picture or recording; the message names the limit.",
    415: "Unsupported file type.",
    422: "The request does not match the schema (wrong type, missing or unknown field, out of range); the message names the field.",
    502: "The embeddings, rerank or answer server answered with an error, or sent something that is not an answer.",
    503: "Not ready (models loading), Milvus, the embeddings or answer server unreachable, the modality's or answer model not loaded, or overloaded.",
}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` for a route: each status with the error body and what it means."""
    return {status: {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


def document_errors(schema: dict) -> dict:
    """Make an OpenAPI document say what the middleware and error handlers do: 401 on every route
    behind the key, 413 on every route that takes a body, and the real error body (not FastAPI's
    `detail` list) for 422 and every other error."""
    reference = {"$ref": "#/components/schemas/ErrorOut"}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if path.startswith("/v1/") or path == "/metrics":
                responses.setdefault("401", {"description": ERROR_DESCRIPTIONS[401]})
            if "requestBody" in operation:
                responses.setdefault("413", {"description": ERROR_DESCRIPTIONS[413]})
            for status, response in responses.items():
                if status[0] in "45" and (status == "422" or "content" not in response):
                    response["content"] = {"application/json": {"schema": reference}}
                    if status == "422":  # FastAPI's default says `detail`; our handler answers `error`
                        response["description"] = ERROR_DESCRIPTIONS[422]
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    if "ErrorOut" not in components:
        error_schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(error_schema.pop("$defs", {}))
        components["ErrorOut"] = error_schema
    return schema
