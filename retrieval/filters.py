"""Structured search filters -> Milvus boolean expressions.

Callers send filters as JSON, e.g.

    {"doc_id": ["a", "b"], "created_at": {"gte": 1700000000000},
     "metadata": {"lang": "en", "year": [2023, 2024]}}

and `build_filter` turns them into an expression such as

    collection == "notes" and doc_id in ["a", "b"] and created_at >= 1700000000000
    and metadata["lang"] == "en" and (metadata["year"] == 2023 or metadata["year"] == 2024)

Every value is rendered by `string_literal` / `_scalar_literal`, never pasted in raw, so
no input can change the shape of the expression. Anything we cannot render safely is
refused with `InvalidFilter` (the API turns it into a 400).

The expression is a `FilterExpression`: a str that also carries the same conditions in structured
form (`conditions`), for the in-memory index on Milvus Lite (retrieval/lite_index.py), which filters
without parsing the string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from retrieval.errors import InvalidInput

# Typed VARCHAR fields of the store's schema that can be filtered by value.
STRING_FIELDS = ("doc_id", "source", "modality", "title")
TIME_FIELD = "created_at"
METADATA_FIELD = "metadata"
SUPPORTED_KEYS = (*STRING_FIELDS, TIME_FIELD, METADATA_FIELD)

# Metadata keys end up inside metadata["..."], so they are held to identifier syntax
# rather than escaped: it keeps expressions readable and keys portable.
METADATA_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

RANGE_OPERATORS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Inside a double-quoted Milvus string literal, a backslash and a double quote must be
# escaped, and a raw CR or LF ends the literal (both parsers reject it). Milvus Lite does not
# understand \uXXXX escapes, so every other character, control characters included, is
# passed through as is; tests/test_store.py checks that all of C0, DEL, C1 and non-ASCII
# round-trip on Milvus Lite and on the server.
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


class InvalidFilter(InvalidInput):
    """A filter that cannot be turned into a safe expression. The message names the key."""


@dataclass(frozen=True)
class Condition:
    """One condition of a filter, structured: `field` (a typed field, or "metadata.KEY") is one of
    `values` (op "in"), or compares with `values[0]` (op ">=", ">", "<=", "<")."""

    field: str
    op: str
    values: tuple[Any, ...]


class FilterExpression(str):
    """A Milvus filter expression that also carries its conditions (all of which must hold)."""

    conditions: tuple[Condition, ...]

    def __new__(cls, expression: str, conditions: Iterable[Condition]) -> FilterExpression:
        made = super().__new__(cls, expression)
        made.conditions = tuple(conditions)
        return made


def string_literal(value: str) -> str:
    """Quote `value` as a Milvus string literal that matches exactly `value`."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def string_in(field: str, values: Iterable[str]) -> str:
    """`field in ["a", "b"]` for a typed VARCHAR field, every value quoted."""
    return f"{field} in [{', '.join(string_literal(v) for v in values)}]"


def build_filter(
    collection: str,
    filters: Mapping[str, Any] | None,
    modality: str | None = None,
) -> str:
    """Expression restricting a search to `collection` (always the first condition),
    optionally to one `modality`, and to the structured `filters`."""
    if not isinstance(collection, str) or not collection:
        raise InvalidFilter("collection: must be a non-empty string")
    conditions = [f"collection == {string_literal(collection)}"]
    structured = [Condition("collection", "in", (collection,))]
    if modality is not None:
        conditions.append(_string_condition("modality", modality))
        structured.append(_string_structured("modality", modality))
    if filters is None:
        return FilterExpression(" and ".join(conditions), structured)
    if not isinstance(filters, Mapping):
        raise InvalidFilter(f"filters: must be an object, got {_type_name(filters)}")

    unknown = [key for key in filters if key not in SUPPORTED_KEYS]
    if unknown:
        raise InvalidFilter(
            f"{unknown[0]}: unknown filter key; supported keys are {', '.join(SUPPORTED_KEYS)}"
        )
    # A fixed order (not the caller's) keeps the expression deterministic.
    for key in STRING_FIELDS:
        if key in filters:
            conditions.append(_string_condition(key, filters[key]))
            structured.append(_string_structured(key, filters[key]))
    if TIME_FIELD in filters:
        conditions.extend(_time_conditions(filters[TIME_FIELD]))
        structured.extend(_time_structured(filters[TIME_FIELD]))
    if METADATA_FIELD in filters:
        conditions.extend(_metadata_conditions(filters[METADATA_FIELD]))
        structured.extend(Condition(f"{METADATA_FIELD}.{key}", "in", tuple(wanted) if isinstance(wanted, (list, tuple)) else (wanted,)) for key, wanted in filters[METADATA_FIELD].items())
    return FilterExpression(" and ".join(conditions), structured)


def _string_structured(field: str, value: str | list[str]) -> Condition:
    """The structured form of a condition that _string_condition has checked."""
    return Condition(field, "in", (value,) if isinstance(value, str) else tuple(value))


def _time_structured(value: int | Mapping[str, int]) -> list[Condition]:
    """The structured form of conditions that _time_conditions has checked."""
    if _is_int(value):
        return [Condition(TIME_FIELD, "in", (value,))]
    return [Condition(TIME_FIELD, RANGE_OPERATORS[op], (bound,)) for op, bound in value.items()]


def _string_condition(field: str, value: Any) -> str:
    if isinstance(value, str):
        return f"{field} == {string_literal(value)}"
    if isinstance(value, (list, tuple)):
        if not value:
            raise InvalidFilter(f"{field}: an empty list would match nothing")
        for element in value:
            if not isinstance(element, str):
                raise InvalidFilter(
                    f"{field}: list elements must be strings, got {_type_name(element)}"
                )
        return string_in(field, value)
    raise InvalidFilter(
        f"{field}: must be a string or a list of strings, got {_type_name(value)}"
    )


def _time_conditions(value: Any) -> list[str]:
    if _is_int(value):
        return [f"{TIME_FIELD} == {_int_literal(TIME_FIELD, value)}"]
    if not isinstance(value, Mapping):
        raise InvalidFilter(
            f"{TIME_FIELD}: must be an integer (ms since the epoch) or an object with "
            f"{'/'.join(RANGE_OPERATORS)}, got {_type_name(value)}"
        )
    if not value:
        raise InvalidFilter(f"{TIME_FIELD}: give at least one of {', '.join(RANGE_OPERATORS)}")
    conditions = []
    for op, bound in value.items():
        if op not in RANGE_OPERATORS:
            raise InvalidFilter(
                f"{TIME_FIELD}: unknown operator {op!r}; use {', '.join(RANGE_OPERATORS)}"
            )
        if not _is_int(bound):
            raise InvalidFilter(
                f"{TIME_FIELD}.{op}: must be an integer (ms since the epoch), "
                f"got {_type_name(bound)}"
            )
        conditions.append(f"{TIME_FIELD} {RANGE_OPERATORS[op]} {_int_literal(TIME_FIELD, bound)}")
    return conditions


def _metadata_conditions(value: Any) -> list[str]:
    if not isinstance(value, Mapping):
        raise InvalidFilter(f"metadata: must be an object, got {_type_name(value)}")
    conditions = []
    for key, wanted in value.items():
        # fullmatch, not match with "$": "$" also matches before a trailing newline.
        if not isinstance(key, str) or not METADATA_KEY_PATTERN.fullmatch(key):
            raise InvalidFilter(
                f"metadata: key {key!r} must be 1-64 letters, digits or underscores, "
                "not starting with a digit"
            )
        path = f'{METADATA_FIELD}["{key}"]'
        label = f"metadata.{key}"
        if isinstance(wanted, (list, tuple)):
            if not wanted:
                raise InvalidFilter(f"{label}: an empty list would match nothing")
            # Milvus Lite rejects `in` on a JSON path, so a list becomes an or-chain.
            alternatives = [f"{path} == {_scalar_literal(label, v)}" for v in wanted]
            conditions.append("(" + " or ".join(alternatives) + ")")
        else:
            conditions.append(f"{path} == {_scalar_literal(label, wanted)}")
    return conditions


def _scalar_literal(label: str, value: Any) -> str:
    # bool first: True is also an int in Python.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _int_literal(label, value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidFilter(f"{label}: numbers must be finite, got {value!r}")
        return repr(value)  # e.g. 0.5, 1e-05: both parsers accept Python's float syntax
    if isinstance(value, str):
        return string_literal(value)
    raise InvalidFilter(
        f"{label}: values must be strings, numbers or booleans (or a list of them), "
        f"got {_type_name(value)}"
    )


def _int_literal(label: str, value: int) -> str:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidFilter(f"{label}: {value} is outside the 64-bit integer range")
    return str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
