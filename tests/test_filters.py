"""build_filter: the exact expression strings, and every way a filter is refused.
That the expressions select the right rows in real Milvus is checked in test_store.py."""

from __future__ import annotations

import pytest

from retrieval.errors import InvalidInput
from retrieval.filters import InvalidFilter, build_filter, string_in, string_literal


# ----------------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ("", '""'),
        ('quo"te', r'"quo\"te"'),
        ("back\\slash", r'"back\\slash"'),
        ("trailing\\", r'"trailing\\"'),
        ('" or 1==1 or "', r'"\" or 1==1 or \""'),
        ("new\nline", r'"new\nline"'),
        ("cr\rlf", r'"cr\rlf"'),
        ("tab\there", r'"tab\there"'),
        ("single'quote", '"single\'quote"'),
        ("héllo ✓ 日本 😀", '"héllo ✓ 日本 😀"'),
        ("bell\x07nul\x00del\x7f", '"bell\x07nul\x00del\x7f"'),  # passed through: see filters.py
    ],
)
def test_string_literal_escapes_only_what_milvus_needs(value, literal):
    assert string_literal(value) == literal


def test_string_literal_never_leaves_an_unescaped_quote():
    for value in ['"', '\\"', '\\\\"', 'a"b\\"c', '\\']:
        body = string_literal(value)[1:-1]
        # Every quote inside must be preceded by an odd number of backslashes.
        for position, char in enumerate(body):
            if char == '"':
                backslashes = len(body[:position]) - len(body[:position].rstrip("\\"))
                assert backslashes % 2 == 1, (value, body)
        # And the body must not end in a lone backslash that would escape the closing quote.
        assert (len(body) - len(body.rstrip("\\"))) % 2 == 0, (value, body)


def test_string_literal_rejects_non_strings():
    with pytest.raises(TypeError):
        string_literal(1)  # type: ignore[arg-type]


def test_string_in():
    assert string_in("id", ["a", 'b"c']) == r'id in ["a", "b\"c"]'


# ----------------------------------------------------------------------------- expressions


def test_collection_alone():
    assert build_filter("notes", None) == 'collection == "notes"'
    assert build_filter("notes", {}) == 'collection == "notes"'


def test_collection_name_is_escaped():
    assert build_filter('x" or "1"=="1', None) == r'collection == "x\" or \"1\"==\"1"'


def test_modality_argument_follows_collection():
    assert build_filter("notes", None, modality="text") == 'collection == "notes" and modality == "text"'


@pytest.mark.parametrize("field", ["doc_id", "source", "modality", "title"])
def test_typed_string_fields(field):
    assert build_filter("c", {field: "v"}) == f'collection == "c" and {field} == "v"'
    assert build_filter("c", {field: ["a", "b"]}) == f'collection == "c" and {field} in ["a", "b"]'
    assert build_filter("c", {field: ("a",)}) == f'collection == "c" and {field} in ["a"]'


def test_created_at_equality_and_ranges():
    assert build_filter("c", {"created_at": 5}) == 'collection == "c" and created_at == 5'
    assert (
        build_filter("c", {"created_at": {"gte": 1, "lt": 9}})
        == 'collection == "c" and created_at >= 1 and created_at < 9'
    )
    assert (
        build_filter("c", {"created_at": {"gt": -1, "lte": 2**63 - 1}})
        == f'collection == "c" and created_at > -1 and created_at <= {2**63 - 1}'
    )


def test_metadata_scalars():
    expression = build_filter(
        "c", {"metadata": {"lang": "en", "year": 2024, "score": 0.5, "draft": False, "tiny": 1e-05}}
    )
    assert expression == (
        'collection == "c" and metadata["lang"] == "en" and metadata["year"] == 2024'
        ' and metadata["score"] == 0.5 and metadata["draft"] == false and metadata["tiny"] == 1e-05'
    )


def test_metadata_lists_become_or_chains():
    # Milvus Lite rejects `in` on a JSON path.
    assert build_filter("c", {"metadata": {"year": [2023, 2024], "ok": [True]}}) == (
        'collection == "c" and (metadata["year"] == 2023 or metadata["year"] == 2024)'
        ' and (metadata["ok"] == true)'
    )


def test_metadata_string_values_are_escaped():
    assert build_filter("c", {"metadata": {"k": ['a"b', "c\\"]}}) == (
        r'collection == "c" and (metadata["k"] == "a\"b" or metadata["k"] == "c\\")'
    )


def test_bool_is_not_mistaken_for_int():
    assert build_filter("c", {"metadata": {"flag": True}}).endswith('metadata["flag"] == true')


def test_conditions_come_in_a_fixed_order():
    filters = {"metadata": {"k": 1}, "created_at": 3, "title": "t", "doc_id": "d"}
    assert build_filter("c", filters, modality="text") == (
        'collection == "c" and modality == "text" and doc_id == "d" and title == "t"'
        ' and created_at == 3 and metadata["k"] == 1'
    )


def test_empty_metadata_adds_nothing():
    assert build_filter("c", {"metadata": {}}) == 'collection == "c"'


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("collection", "filters", "message"),
    [
        ("", None, "collection: must be a non-empty string"),
        (None, None, "collection: must be a non-empty string"),
        ("c", ["doc_id"], "filters: must be an object, got list"),
        ("c", {"nope": 1}, "nope: unknown filter key"),
        ("c", {"collection": "other"}, "collection: unknown filter key"),
        ("c", {"text": "x"}, "text: unknown filter key"),
        ("c", {"doc_id": 1}, "doc_id: must be a string or a list of strings, got int"),
        ("c", {"doc_id": None}, "doc_id: must be a string or a list of strings, got null"),
        ("c", {"source": {"eq": "x"}}, "source: must be a string or a list of strings, got dict"),
        ("c", {"title": []}, "title: an empty list would match nothing"),
        ("c", {"modality": ["text", 1]}, "modality: list elements must be strings, got int"),
        ("c", {"created_at": "2024"}, "created_at: must be an integer"),
        ("c", {"created_at": 1.5}, "created_at: must be an integer"),
        ("c", {"created_at": True}, "created_at: must be an integer"),
        ("c", {"created_at": 2**63}, "created_at: 9223372036854775808 is outside the 64-bit integer range"),
        ("c", {"created_at": {}}, "created_at: give at least one of gte, gt, lte, lt"),
        ("c", {"created_at": {"ge": 1}}, "created_at: unknown operator 'ge'"),
        ("c", {"created_at": {"gte": "1"}}, "created_at.gte: must be an integer"),
        ("c", {"created_at": {"lt": None}}, "created_at.lt: must be an integer (ms since the epoch), got null"),
        ("c", {"metadata": "lang=en"}, "metadata: must be an object, got str"),
        ("c", {"metadata": {"": 1}}, "metadata: key '' must be"),
        ("c", {"metadata": {"1st": 1}}, "metadata: key '1st' must be"),
        ("c", {"metadata": {'k"]': 1}}, "metadata: key 'k\"]' must be"),
        ("c", {"metadata": {"key\n": 1}}, "metadata: key 'key\\n' must be"),
        ("c", {"metadata": {"a.b": 1}}, "metadata: key 'a.b' must be"),
        ("c", {"metadata": {"k" * 65: 1}}, "must be 1-64 letters"),
        ("c", {"metadata": {"k": None}}, "metadata.k: values must be strings, numbers or booleans"),
        ("c", {"metadata": {"k": {"nested": 1}}}, "metadata.k: values must be strings, numbers or booleans"),
        ("c", {"metadata": {"k": [1, [2]]}}, "metadata.k: values must be strings, numbers or booleans"),
        ("c", {"metadata": {"k": []}}, "metadata.k: an empty list would match nothing"),
        ("c", {"metadata": {"k": float("nan")}}, "metadata.k: numbers must be finite"),
        ("c", {"metadata": {"k": float("inf")}}, "metadata.k: numbers must be finite"),
        ("c", {"metadata": {"k": -(2**63) - 1}}, "metadata.k: -9223372036854775809 is outside"),
    ],
)
def test_invalid_filters_name_the_key(collection, filters, message):
    with pytest.raises(InvalidFilter) as raised:
        build_filter(collection, filters)
    assert message in str(raised.value)


def test_metadata_key_may_be_64_characters():
    key = "k" * 64
    assert build_filter("c", {"metadata": {key: 1}}).endswith(f'metadata["{key}"] == 1')


def test_invalid_modality_argument():
    with pytest.raises(InvalidFilter, match="modality"):
        build_filter("c", None, modality=1)  # type: ignore[arg-type]


def test_invalid_filter_is_an_invalid_input():
    # The API maps InvalidInput to 400; InvalidFilter gets its own error code on top.
    assert issubclass(InvalidFilter, InvalidInput)
    assert issubclass(InvalidFilter, ValueError)
