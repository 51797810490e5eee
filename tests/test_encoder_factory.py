"""create_text_encoder: the backend registry, and the loud offline fallback."""

from __future__ import annotations

import logging
import socket

import pytest

from encoders import EncoderUnavailable, ModelNotFound, TextEncoderConfig, create_text_encoder
from encoders.config import DEFAULT_TEXT_MODEL, FALLBACK_TEXT_MODEL


@pytest.fixture
def offline(monkeypatch):
    # The default model is not in this machine's Hugging Face cache; offline, nothing may be downloaded.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_missing_default_model_falls_back_to_minilm_loudly(offline, caplog):
    with caplog.at_level(logging.WARNING, logger="encoders"):
        encoder = create_text_encoder(TextEncoderConfig())
    assert DEFAULT_TEXT_MODEL == "Qwen/Qwen3-Embedding-0.6B"
    assert encoder.info.backend == "sentence-transformers"
    assert encoder.info.name == FALLBACK_TEXT_MODEL
    assert encoder.info.dimension == 384
    assert encoder.info.requested == DEFAULT_TEXT_MODEL
    assert DEFAULT_TEXT_MODEL in encoder.info.fallback_reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(DEFAULT_TEXT_MODEL in r.getMessage() and FALLBACK_TEXT_MODEL in r.getMessage() for r in warnings)
    assert encoder.embed_queries(["still works"]).shape == (1, 384)


def test_fallback_ignores_dimensions_meant_for_the_requested_model(offline):
    encoder = create_text_encoder(TextEncoderConfig(dimensions=1024))  # more than MiniLM's 384
    assert encoder.info.requested == DEFAULT_TEXT_MODEL
    assert encoder.info.dimension == 384


def test_without_fallback_the_missing_model_is_an_error(offline):
    with pytest.raises(ModelNotFound, match="Qwen/Qwen3-Embedding-0.6B"):
        create_text_encoder(TextEncoderConfig(fallback_model=None))


def test_a_missing_fallback_is_an_error_too(offline):
    with pytest.raises(ModelNotFound, match="no-such-model-package"):
        create_text_encoder(TextEncoderConfig(fallback_model="pip:no-such-model-package"))


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ValueError) as error:
        create_text_encoder(TextEncoderConfig(backend="onnx"))
    for choice in ("local", "openai", "sentence-transformers"):
        assert choice in str(error.value)


def test_an_unreachable_server_does_not_fall_back():
    # Falling back would silently change the vector space of an index built with the server's model.
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        config = TextEncoderConfig(
            backend="openai", base_url=f"http://127.0.0.1:{bound.getsockname()[1]}/v1", max_retries=0
        )
        with pytest.raises(EncoderUnavailable):
            create_text_encoder(config)
