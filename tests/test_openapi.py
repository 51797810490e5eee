"""The published OpenAPI document tells the truth: every error status a route can answer, with the
body it really has, and every limit the models enforce. (tests/test_fuzz.py checks the running
server against it.)"""

from __future__ import annotations

import json

import jsonschema_rs
import pytest

from api.app import create_app
from api.openai_schemas import EmbeddingsIn
from api.schemas import QueryIn, SearchIn, inline_schema
from tests.conftest import minilm_settings

PROTECTED = ("/v1/", "/metrics")


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    # The document is generated from the routes; no model needs to load for it.
    return create_app(minilm_settings(tmp_path_factory.mktemp("openapi"))).openapi()


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", path, operation


def test_every_error_has_the_real_error_body(schema):
    text = json.dumps(schema)
    assert "HTTPValidationError" not in text and '"detail"' not in text
    error = schema["components"]["schemas"]["ErrorOut"]
    assert error["required"] == ["error"]
    assert schema["components"]["schemas"]["ErrorDetail"]["required"] == ["code", "message"]
    for name, _, operation in operations(schema):
        for status, response in operation["responses"].items():
            if status[0] in "45" and status != "416":
                content = response["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/ErrorOut"}, (name, status)


def test_every_route_documents_the_statuses_it_can_answer(schema):
    for name, path, operation in operations(schema):
        statuses = set(operation["responses"])
        if path.startswith(PROTECTED):
            assert "401" in statuses, name
        if "requestBody" in operation:
            assert "413" in statuses and "400" in statuses, name
            if path != "/v1/images":  # validates its own body: 400
                assert "422" in statuses, name
        if operation.get("parameters"):
            assert "422" in statuses, name
        if path.startswith("/v1/") and path != "/v1/info":
            assert "503" in statuses, name  # the library is loading, or Milvus is gone
    responses = {name: set(operation["responses"]) for name, _, operation in operations(schema)}
    assert "415" in responses["POST /v1/documents/upload"]
    assert "404" in responses["DELETE /v1/documents/{doc_id}"] and "404" in responses["GET /v1/items/{item_id}"]
    assert "503" in responses["GET /readyz"]
    assert "202" in responses["POST /v1/audio"]
    assert "text/plain" in schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_a_query_must_have_exactly_one_of_text_image_or_audio(schema):
    validator = jsonschema_rs.validator_for(inline_schema(QueryIn))
    assert validator.is_valid({"text": "owls"})
    assert validator.is_valid({"text": "owls", "image": None, "audio": None})
    assert validator.is_valid({"image": "aGk="})
    for invalid in ({}, {"text": None, "image": None, "audio": None}, {"text": "owls", "image": "aGk="}, {"image": ""}):
        assert not validator.is_valid(invalid), invalid


def test_limits_are_in_the_schema(schema):
    components = schema["components"]["schemas"]
    document = components["DocumentIn"]["properties"]
    assert document["id"]["anyOf"][0] == {"type": "string", "minLength": 1, "maxLength": 512}
    assert document["metadata"]["maxProperties"] == 256
    assert components["DocumentsIn"]["properties"]["collection"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
    search = jsonschema_rs.validator_for(inline_schema(SearchIn))
    assert not search.is_valid({"query": {"text": "x"}, "top_k": 1001})
    assert not search.is_valid({"query": {"text": "x"}, "collection": "name\n"})
    assert not search.is_valid({"query": {"text": "x" * 65537}})
    embeddings = jsonschema_rs.validator_for(inline_schema(EmbeddingsIn))
    assert embeddings.is_valid({"input": ["x"] * 2048}) and not embeddings.is_valid({"input": ["x"] * 2049})
    assert not embeddings.is_valid({"input": []})
    image = schema["paths"]["/v1/images"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert image["properties"]["images"]["items"]["properties"]["data"]["minLength"] == 1


def test_optional_form_fields_are_never_null(schema):
    """A multipart form cannot send null: an optional field is published as its plain type."""
    for name, _, operation in operations(schema):
        body = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
        if body is None:
            continue
        reference = body["schema"].get("$ref")
        form = schema["components"]["schemas"][reference.rsplit("/", 1)[-1]] if reference else body["schema"]
        for field, field_schema in form["properties"].items():
            assert "null" not in json.dumps(field_schema), (name, field, field_schema)
    upload = schema["components"]["schemas"]["Body_search_upload_v1_search_upload_post"]["properties"]
    assert upload["min_score"]["type"] == "number"


def test_configured_text_limits_are_in_the_schema(tmp_path):
    settings = minilm_settings(tmp_path, max_document_chars=1234, max_documents_per_request=7)
    schema = create_app(settings).openapi()
    models = schema["components"]["schemas"]
    assert models["DocumentsIn"]["properties"]["documents"]["maxItems"] == 7
    assert models["DocumentIn"]["properties"]["text"]["maxLength"] == 1234
    embeddings = jsonschema_rs.validator_for({**models["EmbeddingsIn"], "$defs": {}})
    assert embeddings.is_valid({"input": "x" * 1234}) and not embeddings.is_valid({"input": ["x" * 1235]})
    assert models["Body_upload_documents_v1_documents_upload_post"]["properties"]["files"]["maxItems"] == 7
