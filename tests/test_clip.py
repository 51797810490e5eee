"""The CLIP encoder on a tiny CLIP trained here (tests/tiny_clip.py), loaded the ways a user loads one."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from encoders.base import ModelNotFound
from encoders.clip import ClipConfig, create_clip_encoder
from tests.tiny_clip import CHECKPOINT_FILE, TINY_CLIP_CONFIG, TINY_CLIP_NAME, all_classes, caption
from tests.tiny_clip import make_shape_image

CLASSES = all_classes()


@pytest.fixture(scope="module", params=["local-dir", "checkpoint-file"])
def encoder(request, tiny_clip_dir):
    if request.param == "local-dir":
        config = ClipConfig(model=f"local-dir:{tiny_clip_dir}", device="cpu")
    else:
        config = ClipConfig(model=TINY_CLIP_NAME, pretrained=str(tiny_clip_dir / CHECKPOINT_FILE), device="cpu")
    return create_clip_encoder(config)


def test_vectors_are_unit_length_and_share_one_dimension(encoder):
    images = encoder.embed_images([make_shape_image(color, shape) for color, shape in CLASSES[:3]])
    texts = encoder.embed_texts(["a red circle", "a blue square"])
    assert encoder.info.dimension == TINY_CLIP_CONFIG["embed_dim"]
    assert images.shape == (3, encoder.info.dimension) and texts.shape == (2, encoder.info.dimension)
    assert images.dtype == np.float32 and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)


def test_captions_find_their_pictures(encoder):
    images = encoder.embed_images([make_shape_image(color, shape) for color, shape in CLASSES])
    texts = encoder.embed_texts([caption(color, shape) for color, shape in CLASSES])
    best = np.argmax(texts @ images.T, axis=1)
    correct = int(np.sum(best == np.arange(len(CLASSES))))
    # A model trained for seconds on two cores gets most, not always all: 12/12 is typical, 10/12 allowed.
    assert correct >= 10, f"{correct}/12 captions ranked their picture first"


def _altered(image: Image.Image) -> Image.Image:
    image = image.resize((97, 97)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=60)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_an_altered_copy_is_closest_to_its_original(encoder):
    originals = [make_shape_image(color, shape) for color, shape in CLASSES]
    vectors = encoder.embed_images(originals)
    copies = encoder.embed_images([_altered(image) for image in originals])
    assert list(np.argmax(copies @ vectors.T, axis=1)) == list(range(len(CLASSES)))


def test_empty_inputs_give_empty_arrays(encoder):
    assert encoder.embed_images([]).shape == (0, encoder.info.dimension)
    assert encoder.embed_texts([]).shape == (0, encoder.info.dimension)


def test_default_model_offline_fails_fast_and_says_how_to_provide_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelNotFound) as raised:
        create_clip_encoder(ClipConfig())
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "laion2b_s34b_b79k" in message
    assert "PRISM_IMAGE_MODEL=local-dir:" in message and "PRISM_IMAGE_PRETRAINED=" in message


def test_local_dir_without_weights_is_model_not_found(tmp_path):
    # open_clip itself would only warn and serve random weights.
    (tmp_path / "open_clip_config.json").write_text('{"model_cfg": {}}')
    with pytest.raises(ModelNotFound, match="no \\*.safetensors"):
        create_clip_encoder(ClipConfig(model=f"local-dir:{tmp_path}"))


def test_missing_checkpoint_file_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound, match="neither a checkpoint file"):
        create_clip_encoder(ClipConfig(model="ViT-B-32", pretrained=str(tmp_path / "absent.pt")))
