"""The store's errors, how to tell "Milvus is gone" from "Milvus answered with an error", and
how to describe either in a message without leaking credentials."""

from __future__ import annotations

from urllib.parse import urlsplit

import grpc
from pymilvus.client.types import Status
from pymilvus.exceptions import (
    ConnectError,
    MilvusException,
    MilvusUnavailableException,
)


class StoreUnavailable(RuntimeError):
    """Milvus cannot be reached (or a Milvus Lite file cannot be opened). The API answers 503."""


class StoreMismatch(RuntimeError):
    """The stored index was built with another embedding model or dimension."""


# How pymilvus reports "the server is gone": a gRPC status, pymilvus' own connection-failure
# code (2, which Milvus servers also use for "service unavailable"; Milvus Lite never sends it),
# or its connection exception classes. And 101, "collection not loaded": the store loads its
# collections when it opens them, so this means a restarted server is still reloading them
# (measured: ~30 s of it after a restart). Anything else is a real error and propagates as is.
_UNAVAILABLE_GRPC_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_COLLECTION_NOT_LOADED = 101
_UNAVAILABLE_MILVUS_CODES = {Status.CONNECT_FAILED, _COLLECTION_NOT_LOADED, *_UNAVAILABLE_GRPC_CODES}


def is_unavailable_error(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) means Milvus cannot answer now (gone, or still
    starting), as opposed to Milvus answering with an error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    # pymilvus raises `e from e`, so the cause chain can loop: track what was visited.
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectError, MilvusUnavailableException, ConnectionError)):
            return True
        if isinstance(current, MilvusException) and current.code in _UNAVAILABLE_MILVUS_CODES:
            return True
        if isinstance(current, grpc.RpcError) and callable(getattr(current, "code", None)):
            if current.code() in _UNAVAILABLE_GRPC_CODES:
                return True
        current = current.__cause__ or current.__context__
    return False


def reason(exc: BaseException) -> str:
    """What went wrong, for a message: Milvus' own message where it gave one."""
    if isinstance(exc, MilvusException) and exc.message:
        return exc.message
    return str(exc) or type(exc).__name__


def redact(uri: str) -> str:
    """The URI without user:password, for messages and logs."""
    parts = urlsplit(uri)
    if parts.scheme and (parts.username or parts.password):
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return parts._replace(netloc=netloc).geturl()
    return uri
