"""What may enter the library, defined once: collection names, document ids, metadata, and the
strings and numbers of any request.

The API's request models and the ingest pipeline both call these checks, so a value refused over
HTTP is refused the same way from the CLI or from Python, with a message naming the field.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Sequence

from retrieval.errors import InvalidInput

# Collection names: letters, digits and a few separators. fullmatch everywhere: with re.match, a
# pattern ending in "$" also accepts the name followed by a newline.
COLLECTION_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)

# Document ids fit the store's doc_id field (VARCHAR of 512 bytes) and survive a URL path: see
# document_id_problem for the whole grammar.
MAX_ID_BYTES = 512
MAX_TITLE_BYTES = 1024  # the store's title and source fields
MAX_SOURCE_BYTES = 1024

# Metadata is stored as a JSON field and returned with every result: bounded so that one document
# cannot make listing or searching a collection fail or slow.
MAX_METADATA_BYTES = 65536  # as UTF-8 JSON
MAX_METADATA_DEPTH = 8  # nested objects and arrays, the metadata object itself included
MAX_METADATA_KEYS = 256  # keys of all its objects together

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # JSON "\ud800": a code point no UTF-8 can encode


def check_collection_name(name: Any) -> str:
    if not isinstance(name, str) or not COLLECTION_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid collection name {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


def string_problem(value: str) -> str | None:
    """Why a string cannot be stored or encoded as UTF-8, or None."""
    found = _LONE_SURROGATE.search(value)
    if found is not None:
        return f"contains a lone UTF-16 surrogate (U+{ord(found.group()):04X}) at character {found.start()}, which is not valid Unicode"
    return None


def check_string(value: str, label: str) -> str:
    problem = string_problem(value)
    if problem:
        raise InvalidInput(f"{label} {problem}")
    return value


def json_problem(value: Any, label: str) -> str | None:
    """The first string (key or value) or number in a parsed JSON value that no store or encoder can
    take: a lone surrogate, NaN or an infinity (Python's JSON parser reads `NaN` and `Infinity`).
    Iterative, so that no nesting depth can exhaust the stack. Returns "<path>: <problem>" or None."""
    stack: list[tuple[str, Any]] = [(label, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            problem = string_problem(node)
            if problem:
                return f"{path}: {problem}"
        elif isinstance(node, float) and not math.isfinite(node):
            return f"{path}: numbers must be finite, got {node}"
        elif isinstance(node, dict):
            for key, child in reversed(list(node.items())):
                problem = string_problem(key) if isinstance(key, str) else None
                if problem:
                    return f"{path}: key {key!r} {problem}"
                stack.append((f"{path}.{key}" if path else str(key), child))
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{path}[{index}]", child) for index, child in reversed(list(enumerate(node))))
    return None


def document_id_problem(doc_id: Any) -> str | None:
    """Why `doc_id` is not a valid document id, or None. A document id is a string of at most 512
    bytes in UTF-8, not blank, without leading or trailing whitespace, without control characters
    or lone surrogates, and whose `/`-separated segments are neither empty, `.` nor `..` (so that
    `DELETE /v1/documents/{doc_id}` reaches every id through any HTTP client: they would rewrite
    such segments). Anything else goes: spaces, `%`, `?`, `#`, backslashes, any script."""
    if not isinstance(doc_id, str):
        return f"must be a string, got {type(doc_id).__name__}"
    if not doc_id.strip():
        return "is blank"
    surrogate = string_problem(doc_id)
    if surrogate:
        return surrogate
    size = len(doc_id.encode("utf-8"))
    if size > MAX_ID_BYTES:
        return f"is {size} bytes long in UTF-8; the limit is {MAX_ID_BYTES}"
    if doc_id != doc_id.strip():
        return "starts or ends with whitespace"
    control = next((char for char in doc_id if unicodedata.category(char) == "Cc"), None)
    if control is not None:
        return f"contains the control character U+{ord(control):04X}"
    if any(segment in ("", ".", "..") for segment in doc_id.split("/")):
        return "has an empty, '.' or '..' path segment (a leading, trailing or doubled '/', or a dot segment)"
    return None


def check_document_id(doc_id: Any, label: str) -> str:
    problem = document_id_problem(doc_id)
    if problem:
        raise InvalidInput(f"{label} {problem}: {_shorten(doc_id)}")
    return doc_id


def check_metadata(metadata: Any, label: str) -> dict[str, Any]:
    """Metadata must be a JSON object the store can keep and give back: plain JSON values (finite
    numbers, integers within 64 bits, valid Unicode), at most MAX_METADATA_DEPTH levels deep,
    MAX_METADATA_KEYS keys in all and MAX_METADATA_BYTES as JSON."""
    if not isinstance(metadata, dict):
        raise InvalidInput(f"{label} must be a JSON object")
    keys = 0
    stack: list[tuple[str, Any, int]] = [(label, metadata, 1)]
    while stack:
        path, node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > MAX_METADATA_DEPTH:
                raise InvalidInput(f"{label} is nested more than {MAX_METADATA_DEPTH} levels deep (at {path})")
            if isinstance(node, dict):
                keys += len(node)
                if keys > MAX_METADATA_KEYS:
                    raise InvalidInput(f"{label} has more than {MAX_METADATA_KEYS} keys in all")
                for key, child in node.items():
                    if not isinstance(key, str):
                        raise InvalidInput(f"{path}: keys must be strings, got {key!r}")
                    check_string(key, f"{path}: the key {key!r}")
                    stack.append((f"{path}.{key}", child, depth + 1))
            else:
                stack.extend((f"{path}[{index}]", child, depth + 1) for index, child in enumerate(node))
        else:
            _check_metadata_value(path, node)
    size = len(json.dumps(metadata, ensure_ascii=False).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(f"{label} is larger than {MAX_METADATA_BYTES} bytes as JSON ({size} bytes)")
    return dict(metadata)


def _check_metadata_value(path: str, value: Any) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        check_string(value, path)
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInput(f"{path}: the integer {_shorten(value)} is outside the 64-bit range the store keeps")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{path} is not plain JSON: numbers must be finite, got {value}")
        return
    raise InvalidInput(f"{path} is not plain JSON: {type(value).__name__} is not a JSON value")


def check_document_fields(index: int, doc_id: str, document: Any) -> None:
    """Reject what the store's typed fields cannot hold, before anything is embedded or written.
    `document` is a retrieval.types.Document."""
    check_document_id(doc_id, f"documents[{index}].id")
    check_string(document.text, f"documents[{index}].text")
    for name, value, limit in (("title", document.title, MAX_TITLE_BYTES), ("source", document.source, MAX_SOURCE_BYTES)):
        check_string(value or "", f"documents[{index}].{name}")
        if len((value or "").encode("utf-8")) > limit:
            raise InvalidInput(f"documents[{index}].{name} is longer than {limit} bytes")
    check_metadata(document.metadata, f"documents[{index}].metadata")


def _shorten(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InputTooLarge(InvalidInput):
    """Over a configured size limit; the message names the setting (HTTP 413)."""


@dataclass(frozen=True)
class TextLimits:
    """How much text one request may bring: a document (or file, after extraction, or embeddings
    input), the documents of one request, and their text together. Chunking and embedding need many
    times the text's size in memory, so these bound a request's memory."""

    max_document_chars: int = 2_000_000
    max_documents: int = 1000
    max_total_chars: int = 20_000_000

    def check_count(self, count: int, what: str = "documents") -> None:
        if count > self.max_documents:
            raise InputTooLarge(f"{count} {what} in one request; the limit is {self.max_documents} (PRISM_MAX_DOCUMENTS_PER_REQUEST)")

    def check_text(self, label: str, text: str) -> None:
        if len(text) > self.max_document_chars:
            raise InputTooLarge(
                f"{label} has {len(text)} characters; the limit is {self.max_document_chars} (PRISM_MAX_DOCUMENT_CHARS): split it"
            )

    def check_texts(self, texts: Sequence[tuple[str, str]]) -> None:
        """Each (label, text) of one request, then their total."""
        for label, text in texts:
            self.check_text(label, text)
        total = sum(len(text) for _, text in texts)
        if total > self.max_total_chars:
            raise InputTooLarge(
                f"the request has {total} characters of text; the limit is {self.max_total_chars} (PRISM_MAX_REQUEST_TEXT_CHARS): send fewer at a time"
            )
