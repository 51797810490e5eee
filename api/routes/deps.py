"""Shared route dependencies and helpers."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import Request

from retrieval import InvalidInput, Library


def get_library(request: Request) -> Library:
    """The loaded Library, or 503 (ServiceNotReady) while models load or when loading failed."""
    return request.app.state.prism.require_library()


def decode_base64(data: str, field: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field} is not valid base64") from None


def parse_json_object(raw: str, field: str) -> dict[str, Any]:
    """A form field that carries a JSON object (multipart cannot nest it)."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{field} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object")
    return value
