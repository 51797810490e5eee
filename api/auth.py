"""Bearer API keys, compared in constant time, checked before anything reads the request body.

With PRISM_API_KEYS set, every route under /v1 and /metrics needs `Authorization: Bearer <key>`.
The check is an ASGI middleware outside the body-size limit and the body parsers: a request without
a valid key is answered 401 from its headers alone, so neither a malformed nor a huge body is read
(and the connection is closed rather than drained). /healthz, /readyz, the web UI, /openapi.json
and /docs stay open.
"""

from __future__ import annotations

import hmac
import json

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Receive, Scope, Send

UNAUTHORIZED_MESSAGE = "missing or invalid API key: send Authorization: Bearer <key>"


def is_protected(path: str) -> bool:
    return path.startswith("/v1/") or path in ("/v1", "/metrics")


def key_matches(authorization: str, keys: list[str]) -> bool:
    scheme, _, presented = authorization.partition(" ")
    # Compare against every key without stopping at the first match, so timing reveals nothing.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented.strip().encode(), key.encode())
    return scheme.lower() == "bearer" and matched


class ApiKeyAuth:
    """ASGI middleware: 401 for a protected route without a valid key, before the body is read."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or not is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        if key_matches(authorization.decode("latin-1"), self.keys):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": {"code": "unauthorized", "message": UNAUTHORIZED_MESSAGE}}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
            (b"connection", b"close"),  # the body was not read: close instead of reading it to reuse the connection
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def require_api_key(request: Request) -> None:
    """The same check as a FastAPI dependency (ApiKeyAuth already ran for every protected path)."""
    keys: list[str] = request.app.state.api_keys
    if keys and not key_matches(request.headers.get("authorization", ""), keys):
        raise HTTPException(401, UNAUTHORIZED_MESSAGE, headers={"WWW-Authenticate": "Bearer"})
