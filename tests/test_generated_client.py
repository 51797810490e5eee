"""A client generated from the server's /openapi.json by openapi-python-client uploads files: the
multipart routes type their files as binary, so the generator makes them File fields (not strings,
which the server would refuse with 422)."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys

import httpx
import pytest

from prism_client import PrismClient
from tests.fixtures_prism import API_KEY
from tests.tiny_clip import make_shape_image

PACKAGE = "prism_openapi"  # openapi-python-client would call it prism_client, which is ours


@pytest.fixture(scope="module")
def generated(full_prism_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("generated")
    spec = folder / "openapi.json"
    spec.write_text(httpx.get(f"{full_prism_url}/openapi.json").text)
    config = folder / "config.yaml"
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec), "--config", str(config), "--meta", "none"]
    result = subprocess.run([*command, "--output-path", str(folder / PACKAGE)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/v1/documents/upload" not in result.stdout  # no route was left out of the client
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_the_generated_client_uploads_documents_and_searches_with_a_file(generated, full_prism_url, collection):
    documents = importlib.import_module(f"{PACKAGE}.api.documents.upload_documents_v1_documents_upload_post")
    search = importlib.import_module(f"{PACKAGE}.api.search.search_upload_v1_search_upload_post")
    models = importlib.import_module(f"{PACKAGE}.models")
    File = importlib.import_module(f"{PACKAGE}.types").File
    client = generated.AuthenticatedClient(base_url=full_prism_url, token=API_KEY)

    upload = models.BodyUploadDocumentsV1DocumentsUploadPost(
        files=[File(payload=io.BytesIO(b"Owls hunt small animals at night."), file_name="notes/owls.md")], collection=collection
    )
    answer = documents.sync_detailed(client=client, body=upload)
    assert answer.status_code == 200, answer.content
    assert answer.parsed.ids == ["notes/owls.md"] and answer.parsed.chunks == 1

    picture = io.BytesIO()
    make_shape_image("red", "circle").save(picture, format="PNG")
    with PrismClient(full_prism_url, api_key=API_KEY) as prism:
        # POST /v1/images takes multipart or JSON; openapi-python-client 0.29 generates a module for such
        # a route that does not import (its issue #1451), so the picture goes in through prism_client.
        prism.add_images([("red-circle.png", picture.getvalue())], collection=collection)
    query = models.BodySearchUploadV1SearchUploadPost(file=File(payload=io.BytesIO(picture.getvalue()), file_name="query.png"), collection=collection, top_k=1)
    found = search.sync_detailed(client=client, body=query)
    assert found.status_code == 200, found.content
    assert "image->image" in found.parsed.routes.ran and found.parsed.results[0].source == "red-circle.png"
