"""prism_client against a real server (every modality, an API key), sync and async: each route the
client covers, uploads of folders with progress, job polling, and errors as typed exceptions."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from PIL import Image

from prism_client import (
    AsyncPrismClient,
    AuthenticationError,
    InvalidInputError,
    InvalidRequestError,
    NotFoundError,
    PrismClient,
    PrismConnectionError,
    UnsupportedFileTypeError,
)
from prism_client import uploads
from tests.audio_files import speak
from tests.fixtures_prism import API_KEY
from tests.servers import free_port
from tests.tiny_clip import make_shape_image


@pytest.fixture(scope="module")
def prism(full_prism_url):
    with PrismClient(full_prism_url, api_key=API_KEY) as client:
        yield client


def png(color: str, shape: str) -> bytes:
    buffer = io.BytesIO()
    make_shape_image(color, shape).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_client_reads_what_the_server_reads():
    from retrieval.audio import AUDIO_CONTENT_TYPES
    from retrieval.extract import DOCUMENT_SUFFIXES

    assert uploads.DOCUMENT_SUFFIXES == DOCUMENT_SUFFIXES
    assert uploads.AUDIO_SUFFIXES == frozenset(AUDIO_CONTENT_TYPES)
    for suffix in uploads.IMAGE_SUFFIXES:  # formats Pillow (the server's decoder) knows by these names
        assert Image.registered_extensions().get(suffix), suffix


def test_documents_search_items_and_deletes(prism, collection):
    added = prism.add_documents(
        [{"id": "owls", "text": "Owls hunt small animals at night.", "metadata": {"lang": "en"}}, "A bicycle has two wheels and a chain."],
        collection=collection,
    )
    assert added["ids"][0] == "owls" and added["chunks"] == 2
    odd_id = "notes/a ?b#c%.md"  # travels in the query of DELETE /v1/documents?doc_id=
    uploaded = prism.upload_documents([(odd_id, b"Comets grow tails near the Sun.")], collection=collection)
    assert uploaded["ids"] == [odd_id]

    body = prism.search("birds that hunt in the dark", collection=collection, top_k=3, modalities=["text"], filters={"metadata": {"lang": "en"}})
    assert [hit["doc_id"] for hit in body["results"]] == ["owls"]
    hit = body["results"][0]
    assert hit["modality"] == "text" and hit["score"] > 0 and "text->text" in hit["routes"]
    assert prism.item(hit["id"])["text"] == "Owls hunt small animals at night."

    page = prism.items(collection, limit=2)
    assert page["total"] == 3 and len(page["items"]) == 2
    assert {c["name"]: c["items"] for c in prism.collections()}[collection] == 3
    assert prism.delete_document(odd_id, collection=collection) == {"deleted": 1}
    assert prism.delete_item(hit["id"]) == {"deleted": 1}
    assert prism.drop_collection(collection) == {"deleted": 1}
    assert collection not in {c["name"] for c in prism.collections()}


def test_errors_are_typed_and_carry_the_servers_answer(prism, full_prism_url, collection):
    with pytest.raises(NotFoundError) as missing:
        prism.item("no-such-item")
    assert missing.value.status == 404 and missing.value.code == "not_found" and "no-such-item" in missing.value.message
    with pytest.raises(InvalidRequestError) as invalid:
        prism.search("owls", collection=collection, top_k=0)
    assert invalid.value.status == 422 and "top_k" in invalid.value.message
    with pytest.raises(UnsupportedFileTypeError) as unsupported:
        prism.upload_documents([("slides.pptx", b"PK\x03\x04")], collection=collection)
    assert unsupported.value.status == 415 and ".pptx" in unsupported.value.message
    with pytest.raises(InvalidInputError) as unreadable:
        prism.upload_documents([("broken.pdf", b"%PDF-1.4 nope")], collection=collection)
    assert unreadable.value.code == "invalid_file" and "broken.pdf" in str(unreadable.value)
    with PrismClient(full_prism_url, api_key="wrong") as stranger, pytest.raises(AuthenticationError) as refused:
        stranger.collections()
    assert refused.value.status == 401 and "API key" in refused.value.message
    with PrismClient(f"http://127.0.0.1:{free_port()}") as nobody, pytest.raises(PrismConnectionError) as unanswered:
        nobody.health(timeout=2)
    assert unanswered.value.status is None and "no answer from Prism" in str(unanswered.value)


def test_pictures_recordings_jobs_and_spoken_search(prism, collection, tmp_path):
    red_circle = png("red", "circle")
    added = prism.add_images([("red-circle.png", red_circle), ("blue-square.png", png("blue", "square"))], collection=collection, captions=["a red circle", ""], metadata={"album": "shapes"})
    assert added["chunks"] == 2 and all(i.startswith("img-") for i in added["ids"])
    query = make_shape_image("red", "circle").resize((48, 48))
    buffer = io.BytesIO()
    query.save(buffer, format="JPEG", quality=60)
    found = prism.search_image(buffer.getvalue(), collection=collection, modalities=["image"], top_k=1)["results"][0]
    assert found["source"] == "red-circle.png" and found["metadata"] == {"album": "shapes"}
    assert prism.content(found["id"]) == red_circle
    assert prism.thumbnail(found["id"])[:3] == b"\xff\xd8\xff"  # a JPEG
    assert prism.url(found["content_url"]) == f"{prism.base_url}/v1/items/{found['id']}/content"

    clip = speak("Next week we will talk about the weather and the rain.", tmp_path / "forecast.wav")
    accepted = prism.submit_audio([clip], collection=collection, language="en")  # over the 1 s threshold: a job
    assert set(accepted) == {"job_id", "status_url"}
    result = prism.wait_for_job(accepted["job_id"], poll_s=0.2, timeout=120)
    assert result["ids"][0].startswith("rec-") and prism.job(accepted["job_id"])["state"] == "succeeded"
    again = prism.add_audio([clip], collection=collection, language="en", poll_s=0.2)  # waits for its job
    assert again["ids"] == result["ids"]

    spoken = prism.search_file(clip, collection=collection, modalities=["audio"], top_k=1, language="en")
    assert "weather" in spoken["transcript"]["text"].lower()
    moment = spoken["results"][0]
    assert moment["modality"] == "audio" and moment["start"] == 0 and moment["content_url"].endswith("#t=0.00")


def test_upload_a_folder_in_batches_with_progress(prism, collection, tmp_path):
    folder = tmp_path / "library"
    for sub in ("a", "b"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "notes.md").write_text(f"Notes of folder {sub} about {'owls' if sub == 'a' else 'bicycles'}.")
    for index in range(3):
        (folder / f"page-{index}.txt").write_text(f"Page {index} of a story about comets and their tails.")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 nope")
    (folder / "red.png").write_bytes(png("red", "circle"))
    (folder / "slides.pptx").write_bytes(b"PK\x03\x04")
    (folder / ".hidden.md").write_text("not read")
    events = []

    report = prism.upload([folder], collection=collection, progress=events.append, max_files=2)
    stored = sorted(f.name for f in report.stored)
    assert stored == ["a/notes.md", "b/notes.md", "page-0.txt", "page-1.txt", "page-2.txt", "red.png"]
    assert [(p.name, p.status, p.code) for p in report.failed] == [("broken.pdf", 400, "invalid_file")]
    assert "not a readable PDF" in report.failed[0].reason and not report.ok
    assert [p.name for p in report.skipped] == ["slides.pptx"] and "unknown type .pptx" in report.skipped[0].reason
    assert events[0].files_done == 0 and events[-1].files_done == events[-1].files_total == 7
    assert [e.files_done for e in events] == sorted(e.files_done for e in events)
    assert prism.items(collection)["total"] == 6

    # Two folders given: their notes.md would share an id, so neither is sent.
    clash = prism.upload([folder / "a", folder / "b"], collection=collection + "_2")
    assert sorted(str(p.path.parent.name) for p in clash.failed) == ["a", "b"] and not clash.stored
    assert "upload their common parent folder" in clash.failed[0].reason


def test_info_doctor_embeddings_and_readiness(prism):
    info = prism.info()
    assert info["ready"] and info["models"]["image"]["available"]
    assert info["configuration"]["api_keys"] == "***" and info["configuration"]["audio_job_threshold_s"] == 1.0
    assert API_KEY not in json.dumps(info)
    assert prism.ready()["status"] == "ready" and prism.health() == {"status": "ok"}
    assert prism.doctor()["problems"] == []
    embeddings = prism.embed(["owls at night", "bicycles"], input_type="query")
    assert [len(e["embedding"]) for e in embeddings["data"]] == [384, 384] and embeddings["model"]
    with pytest.raises(InvalidInputError, match="Matryoshka"):
        prism.embed("owls", dimensions=64)  # MiniLM was not trained for it
    assert "prism_requests_total" in prism.metrics()


def test_the_async_client(full_prism_url, collection, tmp_path):
    (tmp_path / "owls.md").write_text("Owls hunt small animals at night.")

    async def scenario():
        async with AsyncPrismClient(full_prism_url, api_key=API_KEY) as prism:
            await prism.wait_ready(timeout=10)
            report = await prism.upload([tmp_path], collection=collection)
            assert [f.name for f in report.stored] == ["owls.md"] and report.ok
            both = await asyncio.gather(
                prism.search("birds at night", collection=collection, top_k=1),
                prism.search_image(png("red", "circle"), collection=collection),
            )
            with pytest.raises(NotFoundError):
                await prism.item("no-such-item")
            assert (await prism.delete_document("owls.md", collection=collection))["deleted"] == 1
            return both

    text, picture = asyncio.run(scenario())
    assert text["results"][0]["doc_id"] == "owls.md"
    assert "image->text" in picture["routes"]["ran"] and picture["results"][0]["doc_id"] == "owls.md"
