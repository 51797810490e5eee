"""Bad input never answers 500, and every valid input works: document ids, collection names, metadata,
lone surrogates, non-finite numbers, undecodable text files and oversized text, over real HTTP."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest

from tests.audio_files import silence
from tests.commands import clean_env, prism
from tests.conftest import minilm_settings
from tests.image_files import encode
from tests.servers import prism_server
from tests.tiny_clip import make_shape_image

# One server for the module: every modality (a tiny CLIP, Whisper tiny.en, MiniLM), an API key, and
# small text limits, so that limits are reached with small requests.
KEY = "hostile-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_DOCUMENT_CHARS = 2000
MAX_DOCUMENTS_PER_REQUEST = 3
MAX_REQUEST_TEXT_CHARS = 5000


@pytest.fixture(scope="module")
def hostile_url(tmp_path_factory, tiny_clip_dir):
    settings = minilm_settings(
        tmp_path_factory.mktemp("hostile"),
        image_model=f"local-dir:{tiny_clip_dir}",
        api_keys=KEY,
        max_document_chars=MAX_DOCUMENT_CHARS,
        max_documents_per_request=MAX_DOCUMENTS_PER_REQUEST,
        max_request_text_chars=MAX_REQUEST_TEXT_CHARS,
    )
    with prism_server(settings) as url:
        yield url


@pytest.fixture
def client(hostile_url):
    """A client that sends the key."""
    with httpx.Client(base_url=hostile_url, headers=AUTH, timeout=120) as client:
        yield client


def collection_names(client) -> set[str]:
    response = client.get("/v1/collections")
    assert response.status_code == 200, response.text
    return {c["name"] for c in response.json()["collections"]}


def ingest(client, collection, documents) -> httpx.Response:
    return client.post("/v1/documents", json={"collection": collection, "documents": documents})


def error_of(response: httpx.Response, status: int) -> dict:
    """The JSON error body of a response that must have `status`."""
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()["error"]


VALID_IDS = ["sub/notes.md", "a b", "naïve – ü.md", "back\\slash", "100%", "q?x#y", "é" * 250, "x" * 512, "+&=;,'\"<>"]


def post_raw(client, path, text: str):
    """POST a JSON text as it is: Python's json.dumps writes lone surrogates as \\udXXX escapes and
    accepts NaN, which the JSON a client sends may contain."""
    return client.post(path, content=text.encode("ascii"), headers={"content-type": "application/json"})


def png() -> bytes:
    return encode(make_shape_image("red", "circle"), "PNG")


def search_doc_ids(client, collection, text, doc_id) -> list[str]:
    body = {"query": {"text": text}, "collection": collection, "filters": {"doc_id": doc_id}}
    response = client.post("/v1/search", json=body)
    assert response.status_code == 200, response.text
    return [result["doc_id"] for result in response.json()["results"]]


# ------------------------------------------------------------------ 7: document ids


@pytest.mark.parametrize("form", ["path", "query"])
@pytest.mark.parametrize("doc_id", VALID_IDS, ids=lambda doc_id: doc_id[:16])
def test_every_valid_document_id_round_trips(client, collection, doc_id, form):
    text = "Kestrels hover over meadows while hunting voles."
    response = ingest(client, collection, [{"id": doc_id, "text": text}])
    assert response.status_code == 200, response.text
    assert response.json()["ids"] == [doc_id]
    assert search_doc_ids(client, collection, "a hovering falcon", doc_id) == [doc_id]

    if form == "path":
        response = client.delete(f"/v1/documents/{quote(doc_id, safe='')}", params={"collection": collection})
    else:
        response = client.delete("/v1/documents", params={"doc_id": doc_id, "collection": collection})
    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": 1}
    assert search_doc_ids(client, collection, "a hovering falcon", doc_id) == []
    again = client.delete("/v1/documents", params={"doc_id": doc_id, "collection": collection})
    assert error_of(again, 404)["code"] == "not_found"


@pytest.mark.parametrize(
    "doc_id, words",
    [
        ("   ", "blank"),
        (" lead", "whitespace"),
        ("trail\t", "whitespace"),
        ("line\nbreak", "control character U+000A"),
        ("bell\x07", "control character U+0007"),
        ("/absolute", "path segment"),
        ("sub//double", "path segment"),
        ("sub/", "path segment"),
        ("sub/../up", "path segment"),
        ("./here", "path segment"),
        ("é" * 257, "514 bytes"),
    ],
)
def test_invalid_document_ids_are_refused_naming_the_document(client, collection, doc_id, words):
    response = ingest(client, collection, [{"id": "fine", "text": "first"}, {"id": doc_id, "text": "second"}])
    error = error_of(response, 400)
    assert error["code"] == "invalid_input"
    assert "documents[1].id" in error["message"] and words in error["message"]
    assert collection not in collection_names(client)


def test_ids_longer_than_the_schema_allows_are_422(client, collection):
    error = error_of(ingest(client, collection, [{"id": "fine", "text": "first"}, {"id": "x" * 513, "text": "second"}]), 422)
    assert "documents[1].id" in error["message"] and "512" in error["message"]


def test_uploaded_file_names_follow_the_id_grammar(client, collection):
    files = [("files", ("sub/notes.md", b"Notes about herons.")), ("files", ("sub/../escape.md", b"x"))]
    error = error_of(client.post("/v1/documents/upload", data={"collection": collection}, files=files), 400)
    assert "files[1]" in error["message"] and "path segment" in error["message"]
    response = client.post("/v1/documents/upload", data={"collection": collection}, files=files[:1])
    assert response.status_code == 200 and response.json()["ids"] == ["sub/notes.md"]
    response = client.delete("/v1/documents/sub/notes.md", params={"collection": collection})  # the path form, unencoded
    assert response.status_code == 200 and response.json() == {"deleted": 1}


def test_cli_deletes_any_document_id(client, hostile_url, collection):
    doc_id = "q?x#y/ü 100%"
    assert ingest(client, collection, [{"id": doc_id, "text": "Grebes dive for fish."}]).status_code == 200
    result = prism("--url", hostile_url, "--api-key", KEY, "delete", doc_id, "--document", "--collection", collection, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert "deleted 1 item(s)" in result.stdout
    assert search_doc_ids(client, collection, "diving birds", doc_id) == []


# ------------------------------------------------------------------ 8: collection names


def test_a_collection_name_with_a_trailing_newline_is_refused(client, collection):
    assert ingest(client, collection, [{"text": "Lapwings nest on open fields."}]).status_code == 200
    lookalike = collection + "\n"
    responses = [
        ingest(client, lookalike, [{"text": "an impostor"}]),
        client.post("/v1/search", json={"query": {"text": "lapwing"}, "collection": lookalike}),
        client.post("/v1/documents/upload", data={"collection": lookalike}, files=[("files", ("a.txt", b"an impostor"))]),
        client.post("/v1/images", data={"collection": lookalike}, files=[("files", ("a.png", png()))]),
        client.post("/v1/audio", data={"collection": lookalike}, files=[("files", ("a.wav", silence(1.0)))]),
        client.get(f"/v1/collections/{quote(lookalike, safe='')}/items"),
        client.delete(f"/v1/collections/{quote(lookalike, safe='')}"),
        client.delete("/v1/documents/x", params={"collection": lookalike}),
    ]
    for response in responses:
        assert response.status_code in (400, 422), (response.request.url, response.text)
        assert "collection" in response.json()["error"]["message"]
    assert lookalike not in collection_names(client)


# ------------------------------------------------------------------ 9 and 11: metadata


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "metadata, words",
    [
        (nested(300), "nested more than 8 levels"),
        (nested(9), "nested more than 8 levels"),
        ({f"k{i}": i for i in range(257)}, "more than 256 keys"),
        ({"x": "y" * 70_000}, "larger than 65536 bytes"),
        ({"n": 2**64}, "64-bit"),
        ({"n": -(2**63) - 1}, "64-bit"),
    ],
    ids=["deep-300", "deep-9", "keys", "bytes", "int-2^64", "int-below"],
)
def test_unstorable_metadata_is_refused_before_anything_is_created(client, collection, metadata, words):
    response = ingest(client, collection, [{"text": "Curlews probe mud with long bills.", "metadata": metadata}])
    error = error_of(response, 400)
    assert "documents[0].metadata" in error["message"] and words in error["message"]
    assert collection not in collection_names(client)


def test_metadata_within_the_limits_is_kept(client, collection):
    metadata = {**nested(8), "n": 2**63 - 1, "m": -(2**63), "keys": {f"k{i}": i for i in range(200)}}
    assert ingest(client, collection, [{"text": "Avocets sweep their bills.", "metadata": metadata}]).status_code == 200
    items = client.get(f"/v1/collections/{collection}/items")
    assert items.status_code == 200 and items.json()["items"][0]["metadata"] == metadata


def test_deep_metadata_is_refused_for_pictures_and_recordings(client, collection):
    deep = json.dumps(nested(300))
    responses = [
        client.post("/v1/images", data={"collection": collection, "metadata": deep}, files=[("files", ("a.png", png()))]),
        client.post("/v1/images", json={"collection": collection, "images": [{"data": "iVBORw0KGgo=", "metadata": nested(9)}]}),
        client.post("/v1/audio", data={"collection": collection, "metadata": deep}, files=[("files", ("a.wav", silence(2.0)))]),
        client.post("/v1/audio", data={"collection": collection, "metadata": json.dumps({"n": 2**64})}, files=[("files", ("a.wav", silence(2.0)))]),
    ]
    for response, words in zip(responses, ["nested", "nested", "nested", "64-bit"]):
        assert words in error_of(response, 400)["message"], response.request.url
    assert collection not in collection_names(client)


# ------------------------------------------------------------------ 10: lone surrogates

LONE = "\ud800"


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/v1/documents", {"documents": [{"text": "ok " + LONE}]}, "documents[0].text"),
        ("/v1/documents", {"documents": [{"id": LONE, "text": "ok"}]}, "documents[0].id"),
        ("/v1/documents", {"documents": [{"text": "ok", "title": LONE}]}, "documents[0].title"),
        ("/v1/documents", {"documents": [{"text": "ok", "source": LONE}]}, "documents[0].source"),
        ("/v1/documents", {"documents": [{"text": "ok", "metadata": {LONE: 1}}]}, "documents[0].metadata"),
        ("/v1/documents", {"documents": [{"text": "ok", "metadata": {"k": [LONE]}}]}, "documents[0].metadata.k[0]"),
        ("/v1/documents", {"collection": "c" + LONE, "documents": [{"text": "ok"}]}, "collection"),
        ("/v1/search", {"query": {"text": LONE}}, "query.text"),
        ("/v1/search", {"query": {"text": "x"}, "filters": {"doc_id": [LONE]}}, "filters.doc_id[0]"),
        ("/v1/search", {"query": {"text": "x"}, "filters": {"metadata": {"k": LONE}}}, "filters.metadata.k"),
        ("/v1/search", {"query": {"text": "x"}, "collection": LONE}, "collection"),
        ("/v1/embeddings", {"input": ["fine", LONE]}, "input[1]"),
        ("/v1/embeddings", {"input": LONE}, "input"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(client, path, body, field):
    error = error_of(post_raw(client, path, json.dumps(body)), 422)
    assert error["code"] == "invalid_request"
    assert field in error["message"] and "surrogate" in error["message"]


def test_json_nested_beyond_the_parser_is_refused(client):
    depth = 100_000
    response = post_raw(client, "/v1/search", '{"query": {"text": "x"}, "filters": {"doc_id": ' + "[" * depth + "]" * depth + "}}")
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("invalid_input", "invalid_request")


def test_lone_surrogates_in_pictures_json_are_refused(client, collection):
    body = {"collection": collection, "images": [{"data": "iVBORw0KGgo=", "caption": LONE}]}
    assert error_of(post_raw(client, "/v1/images", json.dumps(body)), 400)["code"] == "invalid_input"


# ------------------------------------------------------------------ 12: undecodable text files


@pytest.mark.parametrize(
    "data",
    [b"\xef\xbb\xbfok \xff\xfe", b"\xff\xfe" + "ok".encode("utf-16-le") + b"\x00\xd8", b"\xfe\xff\x00o\x00"],
    ids=["utf8-bom", "utf16le-lone-surrogate", "utf16be-odd-length"],
)
def test_text_files_with_a_bom_and_bad_bytes_are_400(client, collection, data):
    response = client.post("/v1/documents/upload", data={"collection": collection}, files=[("files", ("bom.txt", data))])
    error = error_of(response, 400)
    assert error["code"] == "invalid_file" and "bom.txt" in error["message"]


# ------------------------------------------------------------------ 13: non-finite numbers


@pytest.mark.parametrize(
    "text, field",
    [
        ('{"query": {"text": "x"}, "min_score": NaN}', "min_score"),
        ('{"query": {"text": "x"}, "min_score": Infinity}', "min_score"),
        ('{"query": {"text": "x"}, "fusion": {"weights": {"text->text": NaN}}}', "fusion.weights"),
        ('{"query": {"text": "x"}, "fusion": {"weights": {"text->text": -Infinity}}}', "fusion.weights"),
        ('{"query": {"text": "x"}, "filters": {"metadata": {"k": NaN}}}', "filters.metadata.k"),
    ],
)
def test_non_finite_numbers_are_refused(client, text, field):
    error = error_of(post_raw(client, "/v1/search", text), 422)
    assert field in error["message"]


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_non_finite_min_score_in_the_upload_form_is_refused(client, collection, value):
    assert ingest(client, collection, [{"text": "A red circle."}]).status_code == 200
    form = {"collection": collection, "min_score": value}
    error = error_of(client.post("/v1/search/upload", data=form, files={"file": ("q.png", png())}), 422)
    assert "min_score" in error["message"]


def test_an_upload_search_without_min_score_still_works(client, collection):
    assert ingest(client, collection, [{"text": "A red circle."}]).status_code == 200
    response = client.post("/v1/search/upload", data={"collection": collection, "min_score": ""}, files={"file": ("q.png", png())})
    assert response.status_code == 200, response.text


# ------------------------------------------------------------------ 17: text limits


def test_document_text_limits_are_413(client, collection):
    too_long = [{"text": "w" * (MAX_DOCUMENT_CHARS + 1)}]
    error = error_of(ingest(client, collection, too_long), 413)
    assert error["code"] == "payload_too_large" and "documents[0]" in error["message"] and "PRISM_MAX_DOCUMENT_CHARS" in error["message"]
    too_many = [{"text": f"document {i}"} for i in range(MAX_DOCUMENTS_PER_REQUEST + 1)]
    assert "PRISM_MAX_DOCUMENTS_PER_REQUEST" in error_of(ingest(client, collection, too_many), 413)["message"]
    size = MAX_REQUEST_TEXT_CHARS // MAX_DOCUMENTS_PER_REQUEST + 1
    too_much = [{"text": f"{i} " + "w" * size} for i in range(MAX_DOCUMENTS_PER_REQUEST)]
    assert "PRISM_MAX_REQUEST_TEXT_CHARS" in error_of(ingest(client, collection, too_much), 413)["message"]
    assert collection not in collection_names(client)


def test_uploaded_file_text_limits_are_413(client, collection):
    big = [("files", ("big.txt", b"w" * (MAX_DOCUMENT_CHARS + 1)))]
    error = error_of(client.post("/v1/documents/upload", data={"collection": collection}, files=big), 413)
    assert "big.txt" in error["message"] and "PRISM_MAX_DOCUMENT_CHARS" in error["message"]
    many = [("files", (f"{i}.txt", b"small")) for i in range(MAX_DOCUMENTS_PER_REQUEST + 1)]
    assert "PRISM_MAX_DOCUMENTS_PER_REQUEST" in error_of(client.post("/v1/documents/upload", data={"collection": collection}, files=many), 413)["message"]
    assert collection not in collection_names(client)


def test_embeddings_input_is_bounded(client):
    assert "input" in error_of(client.post("/v1/embeddings", json={"input": ["x"] * 2049}), 422)["message"]
    error = error_of(client.post("/v1/embeddings", json={"input": ["x", "w" * (MAX_DOCUMENT_CHARS + 1)]}), 413)
    assert "input[1]" in error["message"] and "PRISM_MAX_DOCUMENT_CHARS" in error["message"]
    assert client.post("/v1/embeddings", json={"input": ["x"] * 3}).status_code == 200


def test_a_query_text_is_bounded(client):
    error = error_of(client.post("/v1/search", json={"query": {"text": "w" * 70_000}}), 422)
    assert "query.text" in error["message"]
