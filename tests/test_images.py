"""The image pipeline below the API: settings that load CLIP, and what a failed ingest leaves behind."""

from __future__ import annotations

import pytest
from pymilvus import MilvusClient

from api.settings import Settings
from api.state import open_clip_encoder, open_transcriber
from encoders import TextEncoderConfig, create_text_encoder
from encoders.clip import ClipConfig, create_clip_encoder
from retrieval import Library, MilvusStore, StoreMismatch
from retrieval.blobs import BlobStore
from retrieval.images import ImageLibrary, picture_blob_keys
from retrieval.cache import EmbeddingCache
from retrieval.ingest import Ingestor
from tests.conftest import MINILM
from tests.image_files import encode
from tests.tiny_clip import CHECKPOINT_FILE, TINY_CLIP_CONFIG, TINY_CLIP_NAME, make_shape_image


@pytest.mark.parametrize("how", ["local-dir", "checkpoint-file"])
def test_settings_load_the_tiny_clip_the_ways_a_user_would(tiny_clip_dir, how):
    if how == "local-dir":
        settings = Settings(image_model=f"local-dir:{tiny_clip_dir}")
    else:
        settings = Settings(image_model=TINY_CLIP_NAME, image_pretrained=str(tiny_clip_dir / CHECKPOINT_FILE))
    encoder, error = open_clip_encoder(settings)
    assert error is None
    assert encoder.info.dimension == TINY_CLIP_CONFIG["embed_dim"]
    assert encoder.info.pretrained == (None if how == "local-dir" else str(tiny_clip_dir / CHECKPOINT_FILE))
    # Both load the same trained weights.
    reference = create_clip_encoder(ClipConfig(model=f"local-dir:{tiny_clip_dir}"))
    picture = make_shape_image("red", "circle")
    assert encoder.embed_images([picture]) == pytest.approx(reference.embed_images([picture]), abs=1e-5)


def test_empty_image_model_disables_images_and_missing_weights_say_why(tmp_path):
    assert open_clip_encoder(Settings(image_model="")) == (None, "images are disabled (PRISM_IMAGE_MODEL is empty)")
    assert open_transcriber(Settings(whisper_model="")) == (None, "audio is disabled (PRISM_WHISPER_MODEL is empty)")
    encoder, error = open_clip_encoder(Settings(image_model=f"local-dir:{tmp_path}"))
    assert encoder is None and "ModelNotFound" in error and "open_clip_config.json" in error


@pytest.fixture
def library(tmp_path, tiny_clip_dir):
    text = create_text_encoder(TextEncoderConfig(backend="sentence-transformers", model=MINILM))
    uri = str(tmp_path / "milvus.db")
    clip = create_clip_encoder(ClipConfig(model=f"local-dir:{tiny_clip_dir}"))
    lib = Library(text, MilvusStore(uri), BlobStore(tmp_path / "blobs"), image_store=MilvusStore(uri, space="image"), clip=clip)
    yield lib
    lib.close()


def picture(color: str, shape: str, caption: str = ""):
    return lambda images: images.decode(f"{color}-{shape}.png", encode(make_shape_image(color, shape), "PNG"), caption)


def test_a_failed_ingest_leaves_no_blob_and_no_vector(library):
    images = library.require_images()
    kept = images.ingest("c", [picture("red", "circle", "a red ball")(images)])
    blobs_before = library.blobs.keys()
    assert blobs_before == sorted(picture_blob_keys("c", kept.ids[0]))
    # The text space fails after the pictures' originals, thumbnails and vectors were written (a real
    # failure: its Milvus collection is dropped out from under it), so the captions cannot be stored.
    MilvusClient(library.store.uri).drop_collection("prism_text")
    with pytest.raises(Exception, match="prism_text|collection"):
        images.ingest("c", [picture("blue", "square", "a blue box")(images), picture("red", "circle", "a red ball")(images)])
    assert library.blobs.keys() == blobs_before  # the new picture's files are gone, the old one's kept
    assert [item.id for item in library.image_store.get_many(kept.ids + ["img-does-not-exist"])] == kept.ids
    assert library.image_store.count("c", ("image",)) == 1  # the new picture's row is gone
    assert library.image_store.get(kept.ids[0]).text == "a red ball"  # and the old one reads as before


def test_an_image_space_built_by_another_clip_is_refused(library, tiny_clip_dir):
    images = library.require_images()
    images.ingest("c", [picture("green", "square")(images)])
    # The same weights under another name: Prism cannot know they match, so it refuses.
    other = create_clip_encoder(ClipConfig(model=TINY_CLIP_NAME, pretrained=str(tiny_clip_dir / CHECKPOINT_FILE)))
    with pytest.raises(StoreMismatch, match="image index"):
        ImageLibrary(other, library.image_store, Ingestor(library.encoder, library.writer, EmbeddingCache(0)))


def test_text_chunks_get_clip_copies_that_follow_their_document(library):
    """image->text searches CLIP text-tower copies of chunks in the image space: they are replaced,
    trimmed and deleted with their document, and never counted as items of their own."""
    from retrieval import Document

    long_text = " ".join(f"Sentence number {i} is about trains and stations." for i in range(400))
    first = library.ingest_documents("c", [Document(text=long_text, id="doc")])
    assert first.chunks > 1
    assert library.image_store.count("c", ("text",)) == first.chunks
    library.ingest_documents("c", [Document(text="Now it is short.", id="doc")])
    assert library.image_store.count("c", ("text",)) == 1  # the longer version's copies are gone
    images = library.require_images()
    images.ingest("c", [picture("red", "circle", "a red ball")(images)])
    assert [info.items for info in library.collections()] == [2]  # one chunk and one picture
    assert library.delete_document("c", "doc") == 1
    assert library.image_store.count("c", ("text",)) == 0
