"""Any sentence-transformers CrossEncoder (ms-marco-MiniLM, BGE-reranker, mxbai-rerank ...), run in-process.

Scores are what `CrossEncoder.predict` returns by default: the model's logit passed through the activation
its config names (`sentence_transformers.activation_fn`), or, when it names none, a sigmoid for a model
with one output (so scores lie in (0, 1) for the usual rerankers). Models with several outputs (classifiers)
are refused: a reranker needs one score per pair.

Query and document are truncated together to max_length tokens ("longest_first": the longer of the two
loses tokens first, usually the document), capped at what the model's position embeddings allow.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from encoders.torchvision_fix import ensure_torchvision_importable

ensure_torchvision_importable()  # sentence-transformers imports transformers: see encoders/local.py

from sentence_transformers import CrossEncoder  # noqa: E402

from encoders.base import EncoderError  # noqa: E402
from encoders.local import pick_device  # noqa: E402
from encoders.rerank import RerankerConfig, RerankerInfo, resolve_reranker_dir  # noqa: E402

# Tokenizers without a recorded limit report a huge placeholder (1e30) as model_max_length.
_NO_LIMIT = 1_000_000


class CrossEncoderReranker:
    """Thread-safe: one lock covers the model and its tokenizer (shared truncation state)."""

    def __init__(self, config: RerankerConfig):
        self.config = config
        model_dir = resolve_reranker_dir(config.model)
        self.model = CrossEncoder(str(model_dir), device=str(pick_device(config.device)))
        if self.model.num_labels != 1:
            raise EncoderError(
                f"{config.model} has {self.model.num_labels} outputs per pair; a reranking CrossEncoder has one"
            )
        limits = [config.max_length]
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if positions:
            limits.append(positions)
        if self.model.max_seq_length and self.model.max_seq_length < _NO_LIMIT:
            limits.append(self.model.max_seq_length)
        self.model.max_seq_length = self.max_length = min(limits)
        self.info = RerankerInfo(name=config.model, backend="cross-encoder")
        self._lock = threading.Lock()

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        pairs = [(query, document) for document in documents]
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            scores = self.model.predict(
                pairs, batch_size=self.config.batch_size, show_progress_bar=False, convert_to_numpy=True
            )
        return np.asarray(scores, dtype=np.float32).reshape(len(pairs))
