"""The local Qwen3-Embedding backend against a plain reference computation, on a tiny real checkpoint.

The reference embeds one text at a time the simplest way: tokenize alone (no padding), run the model,
take the last hidden state at the last position, L2-normalise. The encoder batches, pads, truncates and
formats queries; every test checks that it still computes the same thing.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from encoders import ModelNotFound, TextEncoderConfig, create_text_encoder
from encoders.config import DEFAULT_QUERY_TASK
from encoders.local import token_budget_batches
from tests.tiny_models import build_tiny_qwen3_embedding

TEXTS = [
    "hi",
    "the old fisherman remembers the river at night, " * 12,  # ~100 tokens: lots of padding for the others
    "今天天气很好，我们去公园散步。",
    "a dog answers an unexpected question.",
    "東京は日本の首都です。",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_qwen3_embedding(tmp_path_factory.mktemp("tiny-qwen3-embedding"))


def load(model_dir, **settings):
    config = TextEncoderConfig(backend="local", model=str(model_dir), fallback_model=None, **settings)
    return create_text_encoder(config)


@pytest.fixture(scope="module")
def encoder(model_dir):
    return load(model_dir)


@pytest.fixture(scope="module")
def reference(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()

    def embed_one(text: str) -> np.ndarray:
        inputs = tokenizer(text, return_tensors="pt")
        assert inputs["input_ids"][0, -1] == tokenizer.pad_token_id  # <|endoftext|> appended, as in Qwen3
        with torch.no_grad():
            last = model(**inputs).last_hidden_state[0, -1].numpy()
        return last / np.linalg.norm(last)

    return embed_one


def test_info_describes_the_loaded_model(encoder, model_dir):
    assert encoder.info.backend == "local"
    assert encoder.info.name == str(model_dir)
    assert encoder.info.dimension == 64  # the tiny model's hidden size
    assert encoder.info.max_tokens == 8192  # config.max_length; the model allows more
    assert encoder.info.requested is None and encoder.info.fallback_reason is None
    assert encoder.info.matryoshka is True  # the Qwen3-Embedding family: `dimensions` keeps a prefix
    assert encoder.info.special_tokens == 1  # <|endoftext|>, appended to every input


def test_token_ids_decode_in_its_vocabulary(encoder):
    text = "the quick brown fox"
    ids = encoder.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert encoder.decode_tokens(ids) == text
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        encoder.decode_tokens([len(encoder.tokenizer)])


def test_text_alone_and_in_a_left_padded_batch_match_the_reference(encoder, reference):
    batch = encoder.embed_documents(TEXTS)
    assert batch.shape == (len(TEXTS), 64) and batch.dtype == np.float32
    for text, vector in zip(TEXTS, batch):
        np.testing.assert_allclose(vector, reference(text), atol=1e-5)
        np.testing.assert_allclose(encoder.embed_documents([text])[0], vector, atol=1e-5)


def test_instruction_goes_in_front_of_queries_only(encoder, reference):
    query = "what does the fisherman remember?"
    as_query = encoder.embed_queries([query])[0]
    as_document = encoder.embed_documents([query])[0]
    np.testing.assert_allclose(as_query, reference(f"Instruct: {DEFAULT_QUERY_TASK}\nQuery:{query}"), atol=1e-5)
    np.testing.assert_allclose(as_document, reference(query), atol=1e-5)
    assert not np.allclose(as_query, as_document, atol=1e-3)


def test_vectors_have_unit_length(encoder):
    norms = np.linalg.norm(encoder.embed_documents(TEXTS), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_matryoshka_dimensions_keep_a_renormalised_prefix(model_dir, reference):
    small = load(model_dir, dimensions=16)
    assert small.info.dimension == 16
    vectors = small.embed_documents(TEXTS)
    assert vectors.shape == (len(TEXTS), 16)
    for text, vector in zip(TEXTS, vectors):
        prefix = reference(text)[:16]
        np.testing.assert_allclose(vector, prefix / np.linalg.norm(prefix), atol=1e-5)


def test_dimensions_beyond_the_hidden_size_are_refused_at_load(model_dir):
    with pytest.raises(ValueError, match="65"):
        load(model_dir, dimensions=65)


def test_small_token_budget_gives_the_same_vectors_in_the_same_order(model_dir, encoder):
    # A budget of 24 tokens forces most texts into batches of their own, in length order.
    budgeted = load(model_dir, batch_tokens=24)
    np.testing.assert_allclose(budgeted.embed_documents(TEXTS), encoder.embed_documents(TEXTS), atol=1e-5)


def test_token_budget_batches_respect_the_budget():
    lengths = [5, 40, 7, 7, 12, 3, 100, 6]
    batches = token_budget_batches(lengths, batch_tokens=30)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= 30
    assert [6] in batches and [1] in batches  # longer than the budget: alone, not dropped


def test_long_texts_are_truncated_to_max_length(model_dir):
    short = load(model_dir, max_length=8)
    assert short.info.max_tokens == 8
    head = "the cat reads the weather report and the stock market"
    a, b = short.embed_documents([head + " every morning", head + " quantum physics"])
    np.testing.assert_allclose(a, b, atol=1e-6)  # only the first 7 tokens and <|endoftext|> count


def test_token_spans_cover_the_text_in_order(encoder):
    tokenizer = encoder.tokenizer
    texts = ["The committee explains quantum physics.", "机器学习是人工智能的一个分支。", "私は毎朝コーヒーを飲みます。"]
    for text in texts:
        spans = encoder.token_spans(text)
        assert len(spans) == len(tokenizer(text, add_special_tokens=False)["input_ids"])
        starts = [start for start, _ in spans]
        assert starts == sorted(starts)
        covered = {i for start, end in spans for i in range(start, end)}
        assert covered >= {i for i, char in enumerate(text) if not char.isspace()}
        assert all(0 <= start < end <= len(text) for start, end in spans)


def test_concurrent_calls_give_the_same_vectors(encoder):
    expected = encoder.embed_documents(TEXTS)
    results: list[np.ndarray] = [None] * 6

    def work(slot: int) -> None:
        results[slot] = encoder.embed_documents(TEXTS)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-5)


def test_token_spans_beside_embedding_calls_are_never_truncated(model_dir):
    # The fast tokenizer keeps its truncation setting in shared state; without the encoder's lock,
    # token_spans() running beside an embedding call (which truncates) sometimes sees a cut text.
    # A broken lock can slip through a run by chance; a working one never fails this.
    short = load(model_dir, max_length=8)
    text = "the cat reads the weather report. " * 20
    expected = short.token_spans(text)
    stop = threading.Event()

    def embed_until_stopped() -> None:
        while not stop.is_set():
            short.embed_documents([text, text])

    embedder = threading.Thread(target=embed_until_stopped)
    embedder.start()
    try:
        spans = [short.token_spans(text) for _ in range(300)]
    finally:
        stop.set()
        embedder.join(timeout=60)
    assert all(result == expected for result in spans)


def test_empty_input_gives_an_empty_matrix(encoder):
    assert encoder.embed_documents([]).shape == (0, 64)
    assert encoder.embed_queries([]).shape == (0, 64)


def test_missing_model_directory_is_model_not_found(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFound, match="no-such-model"):
        create_text_encoder(TextEncoderConfig(backend="local", model=str(missing), fallback_model=None))
