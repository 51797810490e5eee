"""A query (text or an image) in, the nearest items of the wanted modalities out, with per-stage timings.

A query runs along one or more routes, each an encoder searching one vector space:
  text        the text encoder over the text space: document chunks, transcript windows, image captions
  clip-text   CLIP's text tower over the image space: pictures described by the query
  clip-image  CLIP's image tower over the image space: pictures that look like the query image
Their lists are fused by rank (retrieval.fusion). A route that cannot run (no image model) is skipped
and reported; the others still answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from encoders import TextEncoder
from retrieval.cache import EmbeddingCache
from retrieval.errors import InvalidInput, ModalityUnavailable, NotFound
from retrieval.filters import build_filter
from retrieval.fusion import fuse
from retrieval.images import ImageLibrary
from retrieval.store import MilvusStore
from retrieval.timing import StageTimer
from retrieval.types import Hit, SearchResult

MAX_TOP_K = 1000
MODALITIES = ("text", "image", "audio")


@dataclass(frozen=True)
class Query:
    text: str | None = None
    image: bytes | None = None  # an uploaded picture: find pictures like it
    image_name: str = "query image"  # how errors about the picture name it
    collection: str = "default"
    top_k: int = 10
    filters: Mapping[str, Any] | None = None
    min_score: float | None = None  # applied to each route's cosine similarities, before fusion
    modalities: tuple[str, ...] = ()  # empty: all of MODALITIES


@dataclass(frozen=True)
class Route:
    name: str
    embed: Callable[[], np.ndarray]
    search: Callable[[np.ndarray, int, str], list[Hit]]
    modalities: tuple[str, ...]  # which items of its space it may return


class Searcher:
    def __init__(
        self,
        encoder: TextEncoder,
        store: MilvusStore,
        cache: EmbeddingCache,
        images: ImageLibrary | None = None,
        images_error: str = "no image model is loaded",
    ) -> None:
        self.encoder = encoder
        self.store = store
        self.cache = cache
        self.images = images
        self.images_error = images_error

    def search(self, query: Query) -> SearchResult:
        if (query.text is None) == (query.image is None):
            raise InvalidInput("give exactly one of a query text or a query image")
        if query.text is not None and not query.text.strip():
            raise InvalidInput("query text is empty")
        if not 1 <= query.top_k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be between 1 and {MAX_TOP_K}")
        unknown = sorted(set(query.modalities) - set(MODALITIES))
        if unknown:
            raise InvalidInput(f"unknown modalities {unknown}; choose from {list(MODALITIES)}")
        build_filter(query.collection, query.filters)  # a bad filter is a 400 before any model runs
        if not self.store.has_collection(query.collection):
            raise NotFound(f"collection {query.collection!r} does not exist")
        routes, skipped = self._plan(query)
        timer = StageTimer()
        ranked: dict[str, list[Hit]] = {}
        for route in routes:
            with timer.stage(f"embed.{route.name}"):
                vector = route.embed()
            with timer.stage(f"search.{route.name}"):
                expression = build_filter(query.collection, query.filters, modality=list(route.modalities))
                hits = route.search(vector, query.top_k, expression)
            if query.min_score is not None:
                hits = [hit for hit in hits if hit.score >= query.min_score]
            ranked[route.name] = hits
        with timer.stage("fusion"):
            hits = fuse(ranked, query.top_k)
        return SearchResult(hits=hits, timings_ms=timer.finish(), routes=[route.name for route in routes], skipped=skipped)

    def _plan(self, query: Query) -> tuple[list[Route], dict[str, str]]:
        """The routes that answer this query for the wanted modalities, and those that cannot run."""
        wanted = query.modalities or MODALITIES
        routes: list[Route] = []
        skipped: dict[str, str] = {}
        images = self.images
        if query.image is not None:
            if "image" not in wanted:
                raise InvalidInput(f"an image query finds images; modalities {list(wanted)} leave no route to search")
            if images is None:
                raise ModalityUnavailable(f"image search is unavailable: {self.images_error}")
            data = query.image
            routes.append(Route("clip-image", lambda: images.embed_query_image(query.image_name, data), images.search, ("image",)))
            return routes, skipped
        text = query.text or ""
        # Captions live in the text space as items of modality "image", so the text route covers them.
        routes.append(Route("text", lambda: self.embed_query(text), self.store.search, tuple(wanted)))
        if "image" in wanted:
            if images is None:
                skipped["clip-text"] = f"image search is unavailable: {self.images_error}"
            else:
                routes.append(Route("clip-text", lambda: images.embed_query_text(text), images.search, ("image",)))
        return routes, skipped

    def embed_query(self, text: str) -> np.ndarray:
        key = "query\0" + text  # queries carry an instruction, so never share entries with documents
        vector = self.cache.get(key)
        if vector is None:
            vector = self.encoder.embed_queries([text])[0]
            self.cache.put(key, vector)
        return vector
