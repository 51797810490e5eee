"""The OpenAI-compatible endpoints, driven by the official `openai` Python client."""

import numpy as np
import openai
import pytest

from encoders import TextEncoderConfig, create_text_encoder
from tests.conftest import MINILM


@pytest.fixture(scope="module")
def client(prism_url):
    return openai.OpenAI(base_url=f"{prism_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def reference():
    return create_text_encoder(TextEncoderConfig(backend="sentence-transformers", model=MINILM))


def test_models_lists_default_and_the_model(client):
    ids = [model.id for model in client.models.list()]
    assert ids[0] == "default"
    assert MINILM in ids


def test_embeddings_match_the_encoder(client, reference):
    texts = ["The quick brown fox.", "Une phrase en français."]
    # The client asks for base64 by default and decodes it; both formats must give the same numbers.
    as_base64 = client.embeddings.create(input=texts, model="default")
    as_float = client.embeddings.create(input=texts, model=MINILM, encoding_format="float")
    expected = reference.embed_documents(texts)
    for response in (as_base64, as_float):
        assert [d.index for d in response.data] == [0, 1]
        got = np.array([d.embedding for d in response.data], dtype=np.float32)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert as_float.usage.prompt_tokens > 0


def test_dimensions_truncate_and_renormalise(client, reference):
    response = client.embeddings.create(input="a single string", model="default", dimensions=64)
    vector = np.array(response.data[0].embedding)
    assert vector.shape == (64,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    full = reference.embed_documents(["a single string"])[0]
    np.testing.assert_allclose(vector, full[:64] / np.linalg.norm(full[:64]), atol=1e-5)


def test_unknown_model_and_bad_input_are_clear_errors(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.embeddings.create(input="x", model="gpt-nonexistent")
    assert "GET /v1/models" in str(error.value)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(input=["ok", "  "], model="default")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(input="x", model="default", dimensions=10_000)
