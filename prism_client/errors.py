"""Typed errors: every failed call raises one, carrying the server's status, code and message.

The server answers every error as `{"error": {"code", "message"}}` (see the README's error table);
the exception class follows the status, `code` says more (e.g. `overloaded` or `modality_unavailable`
for a 503), and `message` is the server's own words, which say what was wrong and how to fix it.
"""

from __future__ import annotations

from typing import Any

import httpx


class PrismError(Exception):
    """A call to Prism failed. `status` is the HTTP status (None when no answer came)."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "error", method: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.method = method
        self.path = path

    def __str__(self) -> str:
        where = f"{self.method} {self.path} -> " if self.method and self.path else ""
        status = f"{self.status} {self.code}: " if self.status is not None else ""
        return f"{where}{status}{self.message}"


class PrismConnectionError(PrismError):
    """Nothing answered: no server at that address, or the connection broke."""


class InvalidInputError(PrismError):
    """400: the request matches the schema, but its content cannot be used (bad file, filter, id, ...)."""


class AuthenticationError(PrismError):
    """401: missing or wrong API key."""


class NotFoundError(PrismError):
    """404: no such collection, item, document or job."""


class PayloadTooLargeError(PrismError):
    """413: over a size limit; the message names the limit and its setting."""


class UnsupportedFileTypeError(PrismError):
    """415: a file of a kind the route does not take."""


class InvalidRequestError(PrismError):
    """422: the request does not match the schema; the message names the field."""


class UpstreamError(PrismError):
    """502: the embeddings or rerank server answered with an error or nonsense."""


class UnavailableError(PrismError):
    """503: not ready, Milvus or the embeddings server unreachable, a modality's model missing,
    overloaded (code `overloaded`) or shutting down (code `shutting_down`)."""


class ServerError(PrismError):
    """500 or another 5xx: a bug in the server; its log says more."""


class JobFailedError(PrismError):
    """A background job (a long recording) ended in `failed`; `job` is its last status."""

    def __init__(self, message: str, job: dict[str, Any]) -> None:
        super().__init__(message, code="job_failed", path=f"/v1/jobs/{job.get('id')}")
        self.job = job


class AnswerFailedError(PrismError):
    """A streamed answer failed after it started (its `error` event): `code` and `message` are the server's."""


ERRORS_BY_STATUS: dict[int, type[PrismError]] = {
    400: InvalidInputError,
    401: AuthenticationError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    415: UnsupportedFileTypeError,
    422: InvalidRequestError,
    502: UpstreamError,
    503: UnavailableError,
}


def error_from_response(response: httpx.Response, method: str, path: str) -> PrismError:
    """The typed error for an answer with a 4xx or 5xx status."""
    code, message = "http_error", response.text[:1000] or response.reason_phrase
    try:
        detail = response.json()["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        pass  # not Prism's error body (a proxy in between?): keep the text
    status = response.status_code
    kind = ERRORS_BY_STATUS.get(status) or (ServerError if status >= 500 else PrismError)
    return kind(message, status=status, code=code, method=method, path=path)
