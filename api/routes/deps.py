"""Shared route dependencies."""

from __future__ import annotations

from fastapi import Request

from retrieval import Library


def get_library(request: Request) -> Library:
    """The loaded Library, or 503 (ServiceNotReady) while models load or when loading failed."""
    return request.app.state.prism.require_library()
