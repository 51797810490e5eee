"""Qwen3-Reranker run in-process with transformers.

The recipe is the one on the Qwen3-Reranker-0.6B model card ("Transformers Usage"): the pair text
`<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {doc}` goes between a fixed prefix (a system turn
that asks for "yes" or "no", then the opening of the user turn) and a fixed suffix (the end of the user turn
and an assistant turn opened with an empty think block). Prefix, pair and suffix are tokenized separately
and concatenated; when too long, the pair's tokens are cut at the end (the document's tail), never the
prefix or the suffix. The score is the probability of "yes" in a softmax over the "no" and "yes" logits at
the last position.

Where this code departs from the card's snippet:
- Pairs are tokenized with `add_special_tokens=False`. Qwen3-Reranker's tokenizer adds nothing anyway; a
  tokenizer that appends <|endoftext|> (Qwen3-Embedding's does) would otherwise put it before the suffix.
- Position ids count from each pair's first real token, so a pair scores the same alone and behind any
  amount of left padding (see encoders/local.py); the card's batches differ from that by rounding only.
- Only the last position's logits are computed (`logits_to_keep=1`): the full logits of a batch would
  take batch x length x 151k floats.
- Special-token text inside a query or document (a literal "<|im_end|>", say) is tokenized as plain
  text, so a document cannot close its own turn and answer "yes" for itself. This is the one change that
  alters scores, and only of such documents.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
import torch

from encoders.torchvision_fix import ensure_torchvision_importable

ensure_torchvision_importable()  # transformers imports torchvision when installed: see encoders/local.py

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from encoders.base import EncoderError  # noqa: E402
from encoders.local import left_pad, pick_device  # noqa: E402
from encoders.rerank import RerankerConfig, RerankerInfo, length_sorted_batches, resolve_reranker_dir  # noqa: E402

SYSTEM_PROMPT = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
PROMPT_PREFIX = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
PROMPT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def format_pair(instruction: str, query: str, document: str) -> str:
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


def format_prompt(instruction: str, query: str, document: str) -> str:
    """The whole text the model reads for one pair (before any truncation)."""
    return PROMPT_PREFIX + format_pair(instruction, query, document) + PROMPT_SUFFIX


class Qwen3Reranker:
    """A Qwen3-Reranker checkpoint (hub id or directory) run with transformers.

    Thread-safe: one lock serialises tokenizer calls (a fast tokenizer keeps per-call settings in shared
    state) and forward passes. It is taken per batch, so a short request waits for at most one batch of a
    long one.
    """

    def __init__(self, config: RerankerConfig):
        self.config = config
        model_dir = resolve_reranker_dir(config.model)
        self.device = pick_device(config.device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # float32 on CPU (slow and inexact in bfloat16); bfloat16, the dtype it was trained in, on GPUs.
        dtype = torch.float32 if self.device.type == "cpu" else torch.bfloat16
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(self.device).eval()
        self.no_id = self._single_token_id("no")
        self.yes_id = self._single_token_id("yes")
        self.prefix_ids = self.tokenizer.encode(PROMPT_PREFIX, add_special_tokens=False)
        self.suffix_ids = self.tokenizer.encode(PROMPT_SUFFIX, add_special_tokens=False)
        self.max_length = min(config.max_length, self.model.config.max_position_embeddings)
        self.pair_budget = self.max_length - len(self.prefix_ids) - len(self.suffix_ids)
        if self.pair_budget < 1:
            raise ValueError(
                f"reranker max_length={config.max_length} leaves no room for the query and document: the "
                f"prompt's fixed parts take {len(self.prefix_ids) + len(self.suffix_ids)} tokens"
            )
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = pad_id if pad_id is not None else (self.tokenizer.eos_token_id or 0)  # masked out anyway
        self.info = RerankerInfo(name=config.model, backend="qwen3")
        self._lock = threading.Lock()

    def _single_token_id(self, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise EncoderError(
                f"{self.config.model} is not a Qwen3-Reranker checkpoint: {word!r} is not a single token "
                f"of its tokenizer"
            )
        return ids[0]

    def prompt(self, query: str, document: str, instruction: str | None = None) -> str:
        return format_prompt(self._instruction(instruction), query, document)

    def encode(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[list[int]]:
        """The token ids the model reads for each document: prefix + pair (truncated) + suffix."""
        pairs = [format_pair(self._instruction(instruction), query, document) for document in documents]
        if not pairs:
            return []
        with self._lock:
            pair_ids = self.tokenizer(pairs, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return [self.prefix_ids + ids[: self.pair_budget] + self.suffix_ids for ids in pair_ids]

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> np.ndarray:
        """P("yes") for each document, in the order given. `instruction` overrides the configured one."""
        id_lists = self.encode(query, list(documents), instruction)
        scores = np.empty(len(id_lists), dtype=np.float32)
        for batch in length_sorted_batches([len(ids) for ids in id_lists], self.config.batch_size):
            scores[batch] = self._yes_probability([id_lists[i] for i in batch])
        return scores

    def _instruction(self, instruction: str | None) -> str:
        return self.config.instruction if instruction is None else instruction

    def _yes_probability(self, id_lists: list[list[int]]) -> np.ndarray:
        input_ids, attention_mask = left_pad(id_lists, self.pad_id)  # every pair ends at the last position
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        with self._lock, torch.inference_mode():
            logits = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                position_ids=position_ids.to(self.device),
                use_cache=False,
                logits_to_keep=1,
            ).logits[:, -1]
            no_yes = torch.stack([logits[:, self.no_id], logits[:, self.yes_id]], dim=1).float()
            return torch.softmax(no_yes, dim=1)[:, 1].cpu().numpy()
