"""Tiny, randomly initialised Qwen3 checkpoints for tests that cannot download the real ones.

They are saved with `save_pretrained`, so `AutoModel.from_pretrained(directory)` and
`AutoTokenizer.from_pretrained(directory)` load them through exactly the code path a real
Qwen3-Embedding / Qwen3-Reranker checkpoint takes. Their vectors mean nothing; what they are good for is
checking the plumbing (padding, pooling, instructions, truncation) against a reference computation.

Building one takes well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

PAD_TOKEN = "<|endoftext|>"  # Qwen3 pads with, and appends, <|endoftext|>
SPECIAL_TOKENS = [PAD_TOKEN, "<|im_start|>", "<|im_end|>"]

# The pre-tokenizer regex of the real Qwen2/Qwen3 tokenizer (transformers' Qwen2Tokenizer).
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

_SUBJECTS = ["the cat", "a dog", "my neighbour", "the old fisherman", "a student", "the committee", "our team"]
_VERBS = ["reads", "writes about", "looks for", "remembers", "explains", "ignores", "answers"]
_OBJECTS = [
    "the weather report",
    "a long letter",
    "the stock market",
    "quantum physics",
    "the river at night",
    "an unexpected question",
    "the recipe for bread",
]
_CJK_SENTENCES = [
    "今天天气很好，我们去公园散步。",
    "机器学习是人工智能的一个分支。",
    "这本书讲述了一个古老的故事。",
    "東京は日本の首都です。",
    "私は毎朝コーヒーを飲みます。",
    "ひらがなとカタカナを勉強しています。",
    "서울은 한국의 수도입니다.",
]


def _training_sentences() -> list[str]:
    """A few hundred varied sentences: English, Chinese, Japanese, Korean, and the reranker's yes/no."""
    sentences = [f"{s} {v} {o}." for s in _SUBJECTS for v in _VERBS for o in _OBJECTS]
    sentences += _CJK_SENTENCES * 5
    # The reranker reads the logits of the tokens "yes" and "no"; frequent words become whole tokens.
    sentences += ["Is this relevant? yes", "Is this relevant? no", "Answer: yes or no"] * 30
    return sentences


def train_qwen_style_bpe(sentences: list[str], special_tokens: list[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE trained on `sentences`, wired like Qwen3's: NFC, Qwen's regex split, byte-level
    BPE over every byte (nothing is ever unknown). Callers add the post-processor they need."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(sentences, trainer=trainer)
    return tokenizer


def build_tiny_tokenizer(vocab_size: int = 800) -> PreTrainedTokenizerFast:
    """A real byte-level BPE tokenizer wired like Qwen3's: NFC, Qwen's regex split, byte-level BPE.

    Like the Qwen3-Embedding tokenizer, its post-processor appends <|endoftext|> to every input, which is
    the token whose hidden state last-token pooling reads.
    """
    tokenizer = train_qwen_style_bpe(_training_sentences(), SPECIAL_TOKENS, vocab_size)
    eos_id = tokenizer.token_to_id(PAD_TOKEN)
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"$A:0 {PAD_TOKEN}:0",
                pair=f"$A:0 {PAD_TOKEN}:0 $B:1 {PAD_TOKEN}:1",
                special_tokens=[(PAD_TOKEN, eos_id)],
            ),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=PAD_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=32768,
    )


def tiny_qwen3_config(tokenizer: PreTrainedTokenizerFast, **overrides) -> Qwen3Config:
    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=32768,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    settings.update(overrides)
    return Qwen3Config(**settings)


def save_tiny_model(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    # Real Qwen3 checkpoints name Qwen2Tokenizer; loading through it keeps the test on the same path
    # (transformers rebuilds the pipeline from vocab + merges and keeps tokenizer.json's post-processor).
    config_path = directory / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config["tokenizer_class"] = "Qwen2Tokenizer"
    config_path.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
    return directory


def build_tiny_qwen3_embedding(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny Qwen3Model (hidden size 64) and its tokenizer in `directory`; return the directory."""
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    model = Qwen3Model(tiny_qwen3_config(tokenizer)).eval()
    return save_tiny_model(model, tokenizer, directory)
