"""Bearer API keys, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request


def require_api_key(request: Request) -> None:
    """FastAPI dependency: with PRISM_API_KEYS set, a matching `Authorization: Bearer <key>` is required."""
    keys: list[str] = request.app.state.api_keys
    if not keys:
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    # Compare against every key without stopping at the first match, so timing reveals nothing.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented.strip().encode(), key.encode())
    if scheme.lower() != "bearer" or not matched:
        raise HTTPException(401, "missing or invalid API key: send Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"})
