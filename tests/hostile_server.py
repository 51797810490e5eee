"""One real server for the hostile-input tests: every modality (a tiny CLIP, Whisper tiny.en, MiniLM),
an API key, and small text limits, so that limits are reached with small requests."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import minilm_settings
from tests.servers import prism_server

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
