"""A text query in, the nearest chunks out, with per-stage timings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from encoders import TextEncoder
from retrieval.cache import EmbeddingCache
from retrieval.errors import InvalidInput, NotFound
from retrieval.filters import build_filter
from retrieval.store import MilvusStore
from retrieval.timing import StageTimer
from retrieval.types import SearchResult

MAX_TOP_K = 1000


@dataclass(frozen=True)
class TextQuery:
    text: str
    collection: str = "default"
    top_k: int = 10
    filters: Mapping[str, Any] | None = None
    min_score: float | None = None
    modalities: tuple[str, ...] = ()  # empty: every modality in the text space (text, audio)


class Searcher:
    def __init__(self, encoder: TextEncoder, store: MilvusStore, cache: EmbeddingCache) -> None:
        self.encoder = encoder
        self.store = store
        self.cache = cache

    def search(self, query: TextQuery) -> SearchResult:
        if not query.text.strip():
            raise InvalidInput("query text is empty")
        if not 1 <= query.top_k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be between 1 and {MAX_TOP_K}")
        filters = dict(query.filters or {})
        if query.modalities and "modality" not in filters:
            filters["modality"] = list(query.modalities)
        expression = build_filter(query.collection, filters)
        if not self.store.has_collection(query.collection):
            raise NotFound(f"collection {query.collection!r} does not exist")
        timer = StageTimer()
        with timer.stage("embed"):
            vector = self.embed_query(query.text)
        with timer.stage("search"):
            hits = self.store.search(vector.tolist(), query.top_k, expression)
        if query.min_score is not None:
            hits = [hit for hit in hits if hit.score >= query.min_score]
        return SearchResult(hits=hits, timings_ms=timer.finish())

    def embed_query(self, text: str) -> np.ndarray:
        key = "query\0" + text  # queries carry an instruction, so never share entries with documents
        vector = self.cache.get(key)
        if vector is None:
            vector = self.encoder.embed_queries([text])[0]
            self.cache.put(key, vector)
        return vector
