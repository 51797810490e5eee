"""One query (text, a picture, or a spoken clip's transcript) in; one ranked list across modalities out.

Every (query modality, target modality) pair has a route: an encoder searching one vector space.
  text->text, text->audio   the text encoder over document chunks / transcript windows
  text->image               CLIP's text tower over pictures
  text->caption             the text encoder over pictures' captions
  image->image              CLIP's image tower over pictures
  image->text, image->audio CLIP's image tower over CLIP text-tower copies of chunks / windows
A spoken query is transcribed first and takes the text routes, named audio->text and so on. Each
route's list is cut by min_score; the text encoder's routes are merged by score (they compare texts
with one model), and the rest fused by rank (retrieval.fusion); the best candidates may be reranked
on their text. A route that cannot run (no image model) is skipped and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np

from encoders import EncoderError, TextEncoder
from encoders.rerank import Reranker
from retrieval.cache import EmbeddingCache
from retrieval.errors import InvalidInput, ModalityUnavailable, NotFound
from retrieval.filters import build_filter
from retrieval.fusion import FusionConfig, fuse
from retrieval.images import ImageLibrary
from retrieval.store import MilvusStore
from retrieval.timing import StageTimer
from retrieval.types import Hit, SearchResult

MAX_TOP_K = 1000
MAX_RERANK_TOP_N = 1000
DEFAULT_RERANK_TOP_N = 50
MODALITIES = ("text", "image", "audio")
TEXT_SPACE_SEARCH = "text-space"  # the timing stage of the one search serving several text-encoder routes
ROUTE_NAMES = frozenset(
    [f"{source}->{target}" for source in ("text", "audio") for target in ("text", "audio", "image", "caption")]
    + [f"image->{target}" for target in MODALITIES]
)


@dataclass(frozen=True)
class Query:
    text: str | None = None
    image: bytes | None = None  # an uploaded picture
    image_name: str = "query image"  # how errors about the picture name it
    spoken: bool = False  # the text is the transcript of an audio clip: routes are named audio->...
    collection: str = "default"
    top_k: int = 10
    filters: Mapping[str, Any] | None = None
    min_score: float | None = None  # applied to each route's cosine similarities, before fusion
    modalities: tuple[str, ...] = ()  # empty: all of MODALITIES
    fusion: FusionConfig = field(default_factory=FusionConfig)
    rerank: bool = False
    rerank_top_n: int = DEFAULT_RERANK_TOP_N  # fused candidates the reranker reads


@dataclass(frozen=True)
class Route:
    name: str
    encoder: str  # "text", "clip-text" or "clip-image": routes sharing an encoder encode once
    search: Callable[[np.ndarray, int, str], list[Hit]]
    modality: str  # which items of its space it returns

    @property
    def group(self) -> str:
        """Routes whose cosine scores compare: the text encoder's, which always compares two texts.
        CLIP's are not comparable across targets (picture-to-picture similarities run far higher than
        picture-to-text ones), so each CLIP route is a group of its own."""
        return "text-encoder" if self.encoder == "text" else self.name


class Searcher:
    def __init__(
        self,
        encoder: TextEncoder,
        store: MilvusStore,
        cache: EmbeddingCache,
        images: ImageLibrary | None = None,
        images_error: str = "no image model is loaded",
        reranker: Reranker | None = None,
        rerank_error: str = "no reranker is configured",
    ) -> None:
        self.encoder = encoder
        self.store = store
        self.cache = cache
        self.images = images
        self.images_error = images_error
        self.reranker = reranker
        self.rerank_error = rerank_error

    def search(self, query: Query) -> SearchResult:
        self._check(query)
        routes, skipped = self._plan(query)
        timer = StageTimer()
        vectors: dict[str, np.ndarray] = {}
        ranked: dict[str, list[Hit]] = {}
        # Enough candidates for the reranker to choose from, when it will run.
        depth = max(query.top_k, query.rerank_top_n) if query.rerank else query.top_k
        for batch in self._batches(routes, query):
            encoder = batch[0].encoder
            if encoder not in vectors:
                with timer.stage(f"encode.{encoder}"):
                    vectors[encoder] = self._encode(encoder, query)
            name = batch[0].name if len(batch) == 1 else TEXT_SPACE_SEARCH
            with timer.stage(f"search.{name}"):
                expression = build_filter(query.collection, query.filters, modality=[route.modality for route in batch])
                hits = batch[0].search(vectors[encoder], depth, expression)
            if query.min_score is not None:
                hits = [hit for hit in hits if hit.score >= query.min_score]
            for route in batch:
                ranked[route.name] = [hit for hit in hits if hit.item.modality == route.modality]
        with timer.stage("fusion"):
            hits = fuse(ranked, depth, query.fusion, groups={route.name: route.group for route in routes})
        rerank_name, rerank_skipped = None, None
        if query.rerank:
            rerank_skipped = self._why_not_rerank(query)
            if rerank_skipped is None:
                try:
                    with timer.stage("rerank"):
                        hits = rerank(self.reranker, query.text or "", hits[: query.rerank_top_n]) + hits[query.rerank_top_n :]
                    rerank_name = self.reranker.info.name
                except EncoderError as error:
                    # A rerank server that is down (or answers nonsense) costs the reordering, not
                    # the results: recall is already done, and the response says why it was skipped.
                    rerank_skipped = f"the reranker failed: {error}"
        return SearchResult(
            hits=hits[: query.top_k],
            timings_ms=timer.finish(),
            routes=[route.name for route in routes],
            skipped=skipped,
            rerank=rerank_name,
            rerank_skipped=rerank_skipped,
        )

    def _batches(self, routes: list[Route], query: Query) -> list[list[Route]]:
        """Routes grouped into Milvus searches. The text encoder's routes read one space, so one search
        with a modality filter serves them all (on Milvus Lite each filtered search scans the
        collection: at 100k items, three searches cost three times one). Only when each modality must
        fill its own list (per_modality_limit) do they search apart."""
        text_routes = [route for route in routes if route.encoder == "text"]
        if len(text_routes) < 2 or query.fusion.per_modality_limit is not None:
            return [[route] for route in routes]
        return [text_routes] + [[route] for route in routes if route.encoder != "text"]

    def _check(self, query: Query) -> None:
        """Everything that can be wrong with a query, before any model runs."""
        if (query.text is None) == (query.image is None):
            raise InvalidInput("give exactly one of a query text or a query image")
        if query.text is not None and not query.text.strip():
            raise InvalidInput("query text is empty")
        if not 1 <= query.top_k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be between 1 and {MAX_TOP_K}")
        if not 1 <= query.rerank_top_n <= MAX_RERANK_TOP_N:
            raise InvalidInput(f"rerank_top_n must be between 1 and {MAX_RERANK_TOP_N}")
        unknown = sorted(set(query.modalities) - set(MODALITIES))
        if unknown:
            raise InvalidInput(f"unknown modalities {unknown}; choose from {list(MODALITIES)}")
        if query.fusion.method not in ("rrf", "weighted") or query.fusion.k < 1:
            raise InvalidInput("fusion.method must be rrf or weighted, and fusion.k at least 1")
        unknown_routes = sorted(set(query.fusion.weights) - ROUTE_NAMES)
        if unknown_routes:
            raise InvalidInput(f"fusion.weights names unknown routes {unknown_routes}; routes are {sorted(ROUTE_NAMES)}")
        if query.fusion.per_modality_limit is not None and query.fusion.per_modality_limit < 1:
            raise InvalidInput("per_modality_limit must be at least 1")
        build_filter(query.collection, query.filters)  # a bad filter is a 400 before any model runs
        if not self.store.has_collection(query.collection):
            raise NotFound(f"collection {query.collection!r} does not exist")

    def _plan(self, query: Query) -> tuple[list[Route], dict[str, str]]:
        """The routes that answer this query for the wanted modalities, and those that cannot run."""
        wanted = query.modalities or MODALITIES
        images = self.images
        no_images = f"image search is unavailable: {self.images_error}"
        routes: list[Route] = []
        skipped: dict[str, str] = {}
        if query.image is not None:
            if images is None:
                raise ModalityUnavailable(no_images)  # no route at all can read a picture
            # Picture to picture first: among routes whose first places tie in fusion, it goes first.
            for target in sorted(wanted, key=lambda target: target != "image"):
                routes.append(Route(f"image->{target}", "clip-image", images.search, target))
        else:
            source = "audio" if query.spoken else "text"
            for target in wanted:
                if target == "image":
                    if images is None:
                        skipped[f"{source}->image"] = no_images
                    else:
                        routes.append(Route(f"{source}->image", "clip-text", images.search, "image"))
                    # Captions live in the text space as items of modality "image".
                    routes.append(Route(f"{source}->caption", "text", self.store.search, "image"))
                else:
                    routes.append(Route(f"{source}->{target}", "text", self.store.search, target))
        if not routes:
            raise InvalidInput(f"no route can answer this query for modalities {list(wanted)}")
        return routes, skipped

    def _encode(self, encoder: str, query: Query) -> np.ndarray:
        if encoder == "clip-image":
            return self.images.embed_query_image(query.image_name, query.image)
        if encoder == "clip-text":
            return self.images.embed_query_text(query.text)
        return self.embed_query(query.text)

    def _why_not_rerank(self, query: Query) -> str | None:
        if self.reranker is None:
            return f"reranking is unavailable: {self.rerank_error}"
        if query.image is not None:
            return "a picture query has no text to rerank against"
        return None

    def embed_query(self, text: str) -> np.ndarray:
        key = "query\0" + text  # queries carry an instruction, so never share entries with documents
        vector = self.cache.get(key)
        if vector is None:
            vector = self.encoder.embed_queries([text])[0]
            self.cache.put(key, vector)
        return vector


def rerank(reranker: Reranker, query: str, hits: list[Hit]) -> list[Hit]:
    """The hits reordered by the reranker's reading of their text (chunk, transcript window, caption).

    Pictures without a caption have nothing to read: they keep their fused places, and the items with
    text are reordered among the remaining places."""
    readable = [index for index, hit in enumerate(hits) if hit.item.text.strip()]
    if not readable:
        return hits
    scores = np.asarray(reranker.score(query, [hits[index].item.text for index in readable]), dtype=np.float64)
    order = sorted(range(len(readable)), key=lambda position: -scores[position])  # stable: ties keep fused order
    result = list(hits)
    for place, position in zip(readable, order):
        result[place] = replace(hits[readable[position]], rerank_score=float(scores[position]))
    return result
