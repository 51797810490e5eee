"""Shared route dependencies and helpers."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import Form, Path, Query, Request

from api.schemas import COLLECTION_DESCRIPTION, COLLECTION_PATTERN
from retrieval import InvalidInput, Library
from retrieval.validation import TextLimits, check_string


def get_library(request: Request) -> Library:
    """The loaded Library, or 503 (ServiceNotReady) while models load or when loading failed."""
    return request.app.state.prism.require_library()


def get_text_limits(request: Request) -> TextLimits:
    return request.app.state.prism.settings.text_limits()


# A collection named in a form field, a query parameter or the path: the same grammar as in JSON.
CollectionForm = Annotated[str, Form(pattern=COLLECTION_PATTERN, max_length=128, description=COLLECTION_DESCRIPTION)]
CollectionQuery = Annotated[str, Query(pattern=COLLECTION_PATTERN, max_length=128, description=COLLECTION_DESCRIPTION)]
CollectionPath = Annotated[str, Path(pattern=COLLECTION_PATTERN, max_length=128, description=COLLECTION_DESCRIPTION)]


def not_null(schema: dict[str, Any]) -> None:
    """A form field cannot be null, only absent (or empty, which FastAPI reads as absent): publish an
    optional form field as its plain type, not `anyOf [type, null]`."""
    variants = [variant for variant in schema.pop("anyOf", []) if variant.get("type") != "null"]
    if len(variants) == 1:
        schema.update(variants[0])


def decode_base64(data: str, field: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field} is not valid base64") from None


def parse_json_object(raw: str, field: str) -> dict[str, Any]:
    """A form field that carries a JSON object (multipart cannot nest it)."""
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as error:
        raise InvalidInput(f"{field} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object")
    return value


def file_name(name: str | None, field: str) -> str:
    """An uploaded file's name, or `field` when it has none; it must be valid Unicode."""
    return check_string(name, f"{field}: the file name") if name else field
