"""The OpenAI-compatible endpoints, driven by the official `openai` Python client (sync and async)."""

import asyncio

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


def test_dimensions_on_a_model_not_trained_for_matryoshka_are_refused(client, reference):
    """MiniLM's first 64 values are not an embedding: the request says so instead of returning them."""
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(input="a single string", model="default", dimensions=64)
    assert "Matryoshka" in str(error.value) and "384" in str(error.value)
    whole = client.embeddings.create(input="a single string", model="default", dimensions=384, encoding_format="float")
    np.testing.assert_allclose(whole.data[0].embedding, reference.embed_documents(["a single string"])[0], atol=1e-5)


def test_the_async_client_in_both_encodings(prism_url, reference):
    texts = ["Owls hunt at night.", "A bicycle has two wheels."]

    async def both():
        async with openai.AsyncOpenAI(base_url=f"{prism_url}/v1", api_key="unused", max_retries=0) as client:
            return await asyncio.gather(client.embeddings.create(input=texts, model="default"), client.embeddings.create(input=texts, model="default", encoding_format="float"))

    for response in asyncio.run(both()):
        np.testing.assert_allclose(np.array([d.embedding for d in response.data], dtype=np.float32), reference.embed_documents(texts), atol=1e-5)


def test_token_ids_are_read_in_the_models_vocabulary(client, reference):
    """Token ids, one list or a list of lists (what langchain-openai's OpenAIEmbeddings sends by default,
    base64 encoded): the served model's tokenizer reads them, and usage counts them."""
    texts = ["owls hunt small animals at night", "a bicycle has two wheels"]
    ids = [reference.model.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    as_lists = client.embeddings.create(input=ids, model="default")
    one = client.embeddings.create(input=ids[0], model="default", encoding_format="float")
    expected = reference.embed_documents(texts)
    np.testing.assert_allclose(np.array([d.embedding for d in as_lists.data], dtype=np.float32), expected, atol=1e-5)
    np.testing.assert_allclose(one.data[0].embedding, expected[0], atol=1e-5)
    assert as_lists.usage.prompt_tokens == sum(map(len, ids)) and one.usage.prompt_tokens == len(ids[0])
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(input=[[5, 10_000_000]], model="default")
    assert "10000000" in str(error.value) and "vocabulary" in str(error.value)


def test_an_input_longer_than_the_model_is_refused_unless_truncated(client, reference):
    long_text = " ".join(["the"] * 50_000)  # one token per word
    limit = reference.info.max_tokens - reference.info.special_tokens  # 254: 256 less [CLS] and [SEP]
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(input=["short", long_text], model="default")
    assert "input[1] has 50000 tokens" in str(error.value) and f"at most {limit}" in str(error.value) and "truncate" in str(error.value)
    cut = client.embeddings.create(input=["short", long_text], model="default", encoding_format="float", extra_body={"truncate": True})
    assert cut.usage.prompt_tokens == 1 + limit  # what was embedded, not the 50,001 tokens sent
    np.testing.assert_allclose(cut.data[1].embedding, reference.embed_documents([long_text])[0], atol=1e-5)  # the model reads the same


def test_unknown_model_and_bad_input_are_clear_errors(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.embeddings.create(input="x", model="gpt-nonexistent")
    assert "GET /v1/models" in str(error.value)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(input=["ok", "  "], model="default")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(input="x", model="default", dimensions=10_000)


def test_langchain_openai_embeddings(prism_url, reference):
    """langchain-openai's OpenAIEmbeddings, sending text: by default it counts tokens with tiktoken (whose
    encoding file it downloads) and sends ids in OpenAI's vocabulary, whose request bodies the token-id
    test above sends; README tells its users to set check_embedding_ctx_length=False."""
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model="default", base_url=f"{prism_url}/v1", api_key="unused", check_embedding_ctx_length=False, max_retries=0)
    texts = ["Owls hunt at night.", "A bicycle has two wheels."]
    np.testing.assert_allclose(embeddings.embed_documents(texts), reference.embed_documents(texts), atol=1e-5)
    np.testing.assert_allclose(asyncio.run(embeddings.aembed_query("birds of prey")), reference.embed_queries(["birds of prey"])[0], atol=1e-5)


def test_llama_index_openai_like_embedding(prism_url, reference):
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    embedding = OpenAILikeEmbedding(model_name="default", api_base=f"{prism_url}/v1", api_key="unused", max_retries=0)
    texts = ["Owls hunt at night.", "A bicycle has two wheels."]
    np.testing.assert_allclose(embedding.get_text_embedding_batch(texts), reference.embed_documents(texts), atol=1e-5)
    np.testing.assert_allclose(asyncio.run(embedding.aget_query_embedding("birds of prey")), reference.embed_queries(["birds of prey"])[0], atol=1e-5)
