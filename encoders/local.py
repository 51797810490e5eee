"""Qwen3-Embedding run in-process with transformers.

The recipe follows the model card: left padding, last-token pooling, an instruction in front of queries
only, L2 normalisation, and optional Matryoshka truncation.
"""

from __future__ import annotations

import copy
import threading
from typing import Sequence

import numpy as np
import torch

from encoders.torchvision_fix import ensure_torchvision_importable

# transformers imports torchvision whenever it is installed (open_clip needs it), and on CPU torch that
# import fails without the fix, taking `from transformers import AutoModel` down with it.
ensure_torchvision_importable()

from transformers import AutoModel, AutoTokenizer  # noqa: E402

from encoders.base import EncoderInfo, decode_token_ids, instructed_query, resolve_device, truncate_dimensions
from encoders.cancel import check_cancelled
from encoders.config import TextEncoderConfig
from encoders.hub import resolve_model_dir

# Tokenizers without a recorded limit report a huge placeholder (1e30) as model_max_length.
_NO_LIMIT = 1_000_000


def pick_device(device: str) -> torch.device:
    return torch.device(resolve_device(device))


def token_budget_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Group text indices so that each padded batch holds at most `batch_tokens` tokens.

    A padded batch costs len(batch) * longest_in_batch tokens. Sorting by length keeps texts of similar
    length together (little padding); longest first, so running out of memory shows on the first batch.
    A text longer than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    for index in order:
        if batches:
            batch = batches[-1]
            longest = lengths[batch[0]]
            if (len(batch) + 1) * longest <= batch_tokens:
                batch.append(index)
                continue
        batches.append([index])
    return batches


def left_pad(id_lists: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask with padding on the left, so every text ends at the last position."""
    width = max(len(ids) for ids in id_lists)
    input_ids = torch.full((len(id_lists), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(id_lists), width), dtype=torch.long)
    for row, ids in enumerate(id_lists):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
    return input_ids, attention_mask


class LocalQwen3Encoder:
    """A Qwen3-Embedding checkpoint (hub id or directory) run with transformers.

    Thread-safe: the server calls it from several threads, and runs a batch of queries beside a batch of
    ingest (retrieval/text_queue.py). Forward passes may run side by side; the tokenizer may not (a fast
    tokenizer keeps its truncation setting in shared state: without a lock, token_spans() running beside
    an embedding call sometimes returned the spans of a truncated text). So embedding tokenizes under a
    lock and runs its passes outside it, and token_spans has a tokenizer (and a lock) of its own.
    """

    def __init__(self, config: TextEncoderConfig):
        self.config = config
        model_dir = resolve_model_dir(config.model)
        self.device = pick_device(config.device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        # transformers 5 loads weights in their stored dtype (bfloat16 for Qwen3) unless told otherwise.
        # CPUs are slow and inexact in bfloat16; on GPUs bfloat16 is the dtype the model was trained in.
        dtype = torch.float32 if self.device.type == "cpu" else torch.bfloat16
        self.model = AutoModel.from_pretrained(model_dir, dtype=dtype).to(self.device).eval()

        hidden_size = self.model.config.hidden_size
        if config.dimensions is not None and not 0 < config.dimensions <= hidden_size:
            raise ValueError(
                f"dimensions={config.dimensions} is not possible for {config.model}: "
                f"its vectors have {hidden_size} values"
            )
        self.max_tokens = self._max_tokens()
        self.info = EncoderInfo(
            name=config.model,
            backend="local",
            dimension=config.dimensions or hidden_size,
            max_tokens=self.max_tokens,
            special_tokens=self.tokenizer.num_special_tokens_to_add(),
            matryoshka=True,  # the Qwen3-Embedding family, trained for it
        )
        self._lock = threading.Lock()
        self._spans_tokenizer = copy.deepcopy(self.tokenizer)
        self._spans_lock = threading.Lock()

    def _max_tokens(self) -> int:
        limits = [self.config.max_length, self.model.config.max_position_embeddings]
        if self.tokenizer.model_max_length < _NO_LIMIT:
            limits.append(self.tokenizer.model_max_length)
        return min(limits)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        task = self.config.query_task
        return self._embed([instructed_query(task, text) if task else text for text in texts])

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        check_cancelled()  # called per document while chunking: a cancelled ingest stops there too
        with self._spans_lock:
            encoding = self._spans_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(start, end) for start, end in encoding["offset_mapping"]]

    def decode_tokens(self, ids: Sequence[int]) -> str:
        with self._spans_lock:
            return decode_token_ids(self._spans_tokenizer, ids)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        vectors = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with self._lock:
            # The tokenizer appends <|endoftext|>; truncation keeps it, and its hidden state is the embedding.
            id_lists = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]
        for batch in token_budget_batches([len(ids) for ids in id_lists], self.config.batch_tokens):
            check_cancelled()  # the client left, or the server stops: no more forward passes
            vectors[batch] = self._last_token_states([id_lists[i] for i in batch])
        return truncate_dimensions(vectors, self.config.dimensions)  # also L2-normalises

    def _last_token_states(self, id_lists: list[list[int]]) -> np.ndarray:
        input_ids, attention_mask = left_pad(id_lists, self.tokenizer.pad_token_id)
        # Count positions from each text's first real token, not from the batch's first column: then a
        # text gets the same vector alone and behind any amount of left padding. (RoPE depends only on
        # relative positions in exact arithmetic, but shifted absolute positions change the rounding.)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            output = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                position_ids=position_ids.to(self.device),
                use_cache=False,
            )
            # With left padding the last position holds every text's last real token.
            last = output.last_hidden_state[:, -1]
            return last.float().cpu().numpy()
