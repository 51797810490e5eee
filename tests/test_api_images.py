"""Pictures over the real API: a tiny CLIP trained in the session (tests/tiny_clip.py), MiniLM for
captions, Milvus Lite, a real server on loopback."""

from __future__ import annotations

import base64
import io
import threading

import httpx
import pytest
from PIL import Image

from tests.conftest import minilm_settings
from tests.image_files import bilevel_png, encode
from tests.servers import prism_server
from tests.tiny_clip import all_classes, caption, make_shape_image

CLASSES = all_classes()
THUMBNAIL_PX = 48
BATCH_WAIT_MS = 500  # long enough that concurrent requests in the batching test share a batch


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_clip_dir):
    data_dir = tmp_path_factory.mktemp("images")
    settings = minilm_settings(
        data_dir,
        image_model=f"local-dir:{tiny_clip_dir}",
        image_thumbnail_px=THUMBNAIL_PX,
        image_max_bytes=200_000,
        image_max_pixels=4_000_000,
        image_batch_wait_ms=BATCH_WAIT_MS,
        image_batch_size=8,
        whisper_model="",  # no audio needed here: a faster start
        whisper_fallback_model="",
    )
    with prism_server(settings) as url:
        with httpx.Client(base_url=url, timeout=120) as client:
            client.data_dir = data_dir
            yield client


def png(image: Image.Image) -> bytes:
    return encode(image, "PNG")


def shape_png(color: str, shape: str) -> bytes:
    return png(make_shape_image(color, shape))


def upload(client, collection, files, captions=None, metadata=None):
    """POST /v1/images as multipart: files is a list of (name, bytes)."""
    form: dict = {"collection": collection}
    if captions is not None:
        form["caption"] = captions
    if metadata is not None:
        form["metadata"] = metadata
    return client.post("/v1/images", data=form, files=[("files", (name, data)) for name, data in files])


def ingest_shapes(client, collection) -> dict[str, str]:
    """Every class once, without captions; returns file name -> item id."""
    files = [(f"{color}-{shape}.png", shape_png(color, shape)) for color, shape in CLASSES]
    response = upload(client, collection, files)
    assert response.status_code == 200, response.text
    return dict(zip([name for name, _ in files], response.json()["ids"]))


def search(client, collection, query, **options):
    response = client.post("/v1/search", json={"query": query, "collection": collection, **options})
    assert response.status_code == 200, response.text
    return response.json()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def stored_blobs(client) -> list:
    return sorted(path for path in (client.data_dir / "blobs").rglob("*.blob"))


def collection_items(client, collection) -> int | None:
    for info in client.get("/v1/collections").json()["collections"]:
        if info["name"] == collection:
            return info["items"]
    return None


# ------------------------------------------------------------------ search semantics


def test_text_finds_the_described_picture(server, collection):
    ingest_shapes(server, collection)
    correct = 0
    for color, shape in CLASSES:
        result = search(server, collection, {"text": caption(color, shape)}, modalities=["image"], top_k=3)
        top = result["results"][0]
        assert top["modality"] == "image"
        assert set(top["routes"]) == {"text->image"}  # no captions stored: only CLIP's text tower found it
        correct += top["source"] == f"{color}-{shape}.png"
    assert result["routes"]["ran"] == ["text->image", "text->caption"]
    # The tiny model was trained for seconds: 12/12 is typical, 10/12 allowed (as in test_clip.py).
    assert correct >= 10, f"{correct}/12 descriptions found their picture first"


def altered_copies(color: str, shape: str) -> dict[str, bytes]:
    original = make_shape_image(color, shape)
    return {
        "resized": png(original.resize((41, 41))),
        "recompressed": encode(original, "JPEG", quality=35),
        "flipped": png(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    }


def test_near_duplicates_find_their_original_first(server, collection):
    ids = ingest_shapes(server, collection)
    for color, shape in CLASSES:
        for how, data in altered_copies(color, shape).items():
            result = search(server, collection, {"image": b64(data)}, top_k=3)
            top = result["results"][0]
            assert top["id"] == ids[f"{color}-{shape}.png"], f"{how} {color} {shape} found {top['source']}"
            assert top["routes"] == {"image->image": {"rank": 1, "score": top["score"]}}
            assert result["routes"] == {"ran": ["image->image", "image->text", "image->audio"], "skipped": {}}


def test_an_uploaded_query_picture_is_told_from_audio(server, collection):
    ids = ingest_shapes(server, collection)
    query = altered_copies("blue", "triangle")["recompressed"]
    response = server.post("/v1/search/upload", data={"collection": collection, "top_k": "2"}, files={"file": ("q.jpg", query)})
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["id"] == ids["blue-triangle.png"]
    assert response.json()["transcript"] is None


def test_captions_are_searchable_as_text(server, collection):
    files = [("a.png", shape_png("red", "circle")), ("b.png", shape_png("green", "square"))]
    response = upload(server, collection, files, captions=["The lighthouse keeper's cat", ""])
    ids = response.json()["ids"]
    result = search(server, collection, {"text": "a cat living in a lighthouse"}, modalities=["image"])
    top = result["results"][0]
    assert top["id"] == ids[0] and top["caption"] == "The lighthouse keeper's cat"
    assert top["routes"]["text->caption"]["rank"] == 1  # found by its caption through the text encoder
    # Only the captioned picture has a row in the text space.
    assert all("text->caption" not in r["routes"] for r in result["results"] if r["id"] == ids[1])
    # Captions belong to pictures: a search for text items does not return them.
    assert search(server, collection, {"text": "lighthouse cat"}, modalities=["text"])["results"] == []


def test_result_fields_and_stored_files(server, collection):
    photo = make_shape_image("yellow", "square", size=96)
    response = upload(server, collection, [("photo.png", png(photo))], captions=["a sunny square"], metadata=['{"album": "shapes"}'])
    assert response.status_code == 200, response.text
    result = search(server, collection, {"text": "a yellow square"}, modalities=["image"], filters={"metadata": {"album": "shapes"}})
    top = result["results"][0]
    assert top["modality"] == "image" and top["doc_id"] == top["id"]
    assert (top["width"], top["height"]) == (96, 96)
    assert top["caption"] == "a sunny square" and top["metadata"] == {"album": "shapes"}
    assert top["source"] == "photo.png" and isinstance(top["score"], float)
    assert top["content_url"] == f"/v1/items/{top['id']}/content"
    assert top["thumbnail_url"] == f"/v1/items/{top['id']}/thumbnail"

    content = server.get(top["content_url"])
    assert content.status_code == 200 and content.headers["content-type"] == "image/png"
    assert content.content == png(photo)
    thumb = server.get(top["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == THUMBNAIL_PX
    assert server.get(f"/v1/items/{top['id']}").json()["width"] == 96


def test_json_upload_with_base64(server, collection):
    body = {
        "collection": collection,
        "images": [{"data": b64(shape_png("blue", "circle")), "filename": "blue.png", "caption": "a blue ball", "metadata": {"n": 1}}],
    }
    response = server.post("/v1/images", json=body)
    assert response.status_code == 200, response.text
    item = server.get(f"/v1/items/{response.json()['ids'][0]}").json()
    assert (item["source"], item["caption"], item["metadata"]) == ("blue.png", "a blue ball", {"n": 1})


def test_every_accepted_format_is_ingested_upright(server, collection):
    wide = make_shape_image("red", "square", size=64).resize((80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the stored pixels are on their side
    rgba = wide.convert("RGBA")
    files = {
        "photo.jpg": encode(wide, "JPEG", exif=exif),
        "plain.png": png(wide),
        "palette.png": png(wide.convert("P")),
        "alpha.png": png(rgba),
        "cmyk.jpg": encode(wide.convert("CMYK"), "JPEG"),
        "pic.webp": encode(wide, "WEBP"),
        "anim.gif": encode(wide, "GIF", save_all=True, append_images=[wide.rotate(90)]),
        "pic.bmp": encode(wide, "BMP"),
        "pic.tiff": encode(wide, "TIFF"),
    }
    response = upload(server, collection, list(files.items()))
    assert response.status_code == 200, response.text
    for name, item_id in zip(files, response.json()["ids"]):
        item = server.get(f"/v1/items/{item_id}").json()
        expected = (40, 80) if name == "photo.jpg" else (80, 40)
        assert (item["width"], item["height"]) == expected, name


# ------------------------------------------------------------------ rejections store nothing


def truncated_png() -> bytes:
    data = png(make_shape_image("green", "circle", size=64))
    return data[: len(data) // 2]


REJECTIONS = {
    "not an image": (b"%PDF-1.4 this is not a picture", 400, "not an image"),
    "corrupt": (bilevel_png(64, 64, idat=b"these are not deflated pixels"), 400, "corrupt"),
    "truncated": (truncated_png(), 400, "truncated"),
    "over the size limit": (encode(Image.effect_noise((400, 400), 64).convert("RGB"), "PNG"), 413, "over the limit of 200000 bytes"),
    "decompression bomb": (bilevel_png(20_000, 20_000), 413, "pixels"),
    "empty": (b"", 400, "empty"),
}


@pytest.mark.parametrize("case", REJECTIONS)
def test_a_rejected_file_stores_nothing(server, collection, case):
    data, status, words = REJECTIONS[case]
    before = stored_blobs(server)
    # A good picture in the same request: it must not be stored either.
    response = upload(server, collection, [("good.png", shape_png("red", "circle")), ("bad.png", data)])
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert "bad.png" in error["message"] and words in error["message"], error
    assert collection_items(server, collection) is None  # not even the collection was created
    assert stored_blobs(server) == before


@pytest.mark.parametrize(
    "form, words",
    [
        ({"caption": ["one", "two", "three"]}, "one caption per file"),
        ({"metadata": ["{not json"]}, "not valid JSON"),
        ({"metadata": ["[1, 2]"]}, "must be a JSON object"),
        ({"metadata": ['{"x": NaN}']}, "not plain JSON"),
        ({"collection": "no spaces allowed"}, "invalid collection name"),
    ],
)
def test_bad_form_fields_store_nothing(server, collection, form, words):
    before = stored_blobs(server)
    data = {"collection": collection, **form}
    files = [("files", ("a.png", shape_png("red", "circle"))), ("files", ("b.png", shape_png("blue", "circle")))]
    response = server.post("/v1/images", data=data, files=files)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]["message"]
    assert collection_items(server, collection) is None
    assert stored_blobs(server) == before


def test_bad_json_bodies_are_rejected(server, collection):
    for body, words in [
        ({"collection": collection, "images": [{"data": "%%% not base64"}]}, "not valid base64"),
        ({"collection": collection, "images": []}, "images"),
        ({"collection": collection, "pictures": []}, "multipart/form-data"),
    ]:
        response = server.post("/v1/images", json=body)
        assert response.status_code == 400, response.text
        assert words in response.json()["error"]["message"]
    assert collection_items(server, collection) is None


def test_a_full_encoder_queue_answers_503_and_stores_nothing(tmp_path, tiny_clip_dir, collection):
    settings = minilm_settings(tmp_path, image_model=f"local-dir:{tiny_clip_dir}", image_queue_size=1, whisper_model="", whisper_fallback_model="")
    with prism_server(settings) as url:
        files = [("files", (f"{i}.png", shape_png("red", shape))) for i, shape in enumerate(["circle", "square"])]
        response = httpx.post(f"{url}/v1/images", data={"collection": collection}, files=files, timeout=60)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "overloaded" and "queue full" in response.json()["error"]["message"]
        assert httpx.get(f"{url}/v1/collections").json()["collections"] == []
    assert not list((tmp_path / "blobs").rglob("*.blob"))


# ------------------------------------------------------------------ deleting


def test_deleting_removes_vectors_and_files(server, collection):
    ids = ingest_shapes(server, collection)
    first, second, *rest = ids.values()
    assert collection_items(server, collection) == len(CLASSES)
    blobs_before = len(stored_blobs(server))

    assert server.delete(f"/v1/items/{first}").json() == {"deleted": 1}
    for path in ("", "/content", "/thumbnail"):
        assert server.get(f"/v1/items/{first}{path}").status_code == 404
    assert len(stored_blobs(server)) == blobs_before - 2  # the original and its thumbnail

    assert server.delete(f"/v1/documents/{second}", params={"collection": collection}).json() == {"deleted": 1}
    assert server.get(f"/v1/items/{second}/content").status_code == 404
    assert collection_items(server, collection) == len(CLASSES) - 2

    assert server.delete(f"/v1/collections/{collection}").json() == {"deleted": len(CLASSES) - 2}
    assert len(stored_blobs(server)) == blobs_before - 2 * len(CLASSES)
    assert all(server.get(f"/v1/items/{item_id}/thumbnail").status_code == 404 for item_id in rest)


def test_uploading_a_picture_again_replaces_its_caption(server, collection):
    data = shape_png("green", "triangle")
    first = upload(server, collection, [("t.png", data)], captions=["an old caption"]).json()
    again = upload(server, collection, [("t.png", data)], captions=[""]).json()
    assert first["ids"] == again["ids"] and again["reused"] == 1 and again["embedded"] == 0  # the vector was reused
    assert collection_items(server, collection) == 1
    assert server.get(f"/v1/items/{again['ids'][0]}").json()["caption"] == ""
    # The old caption's row in the text space is gone too.
    assert search(server, collection, {"text": "an old caption"}, modalities=["image"])["results"][0]["routes"].keys() == {"text->image"}


# ------------------------------------------------------------------ batching


def test_concurrent_requests_share_clip_batches(server, collection):
    """Four single-picture queries sent together are encoded in fewer forward passes than four."""
    ingest_shapes(server, collection)
    queries = [altered_copies(color, shape)["flipped"] for color, shape in CLASSES[:4]]
    results: list[int] = []
    start = threading.Barrier(len(queries))

    def query(data: bytes) -> None:
        start.wait()
        response = server.post("/v1/search", json={"query": {"image": b64(data)}, "collection": collection, "top_k": 1})
        results.append(response.status_code)

    threads = [threading.Thread(target=query, args=(data,)) for data in queries]
    stats_before = server.get("/metrics").text
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 4
    batches = batch_count(server.get("/metrics").text) - batch_count(stats_before)
    assert 1 <= batches < 4, f"{batches} CLIP batches for 4 concurrent queries"


def batch_count(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('prism_batcher_batches_total{batcher="image-encoder"}'):
            return float(line.split()[-1])
    return 0.0
