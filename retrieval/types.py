"""Typed data passed between the retrieval layer and its callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """A document to ingest. `id` is stable: ingesting the same id again replaces its chunks."""

    text: str
    id: str | None = None
    title: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document's text, with where it came from."""

    text: str
    position: int  # 0-based index of the chunk within its document
    char_start: int  # offsets into the document text as submitted
    char_end: int


@dataclass
class Item:
    """One row of the store: a text chunk, an image (or its caption), or an audio transcript window."""

    id: str
    collection: str
    modality: str
    doc_id: str
    text: str
    content_hash: str
    created_at: int  # milliseconds since the epoch
    source: str = ""
    title: str = ""
    position: int = 0
    char_start: int = 0
    char_end: int = 0
    width: int = 0  # images: size in pixels, upright (0 for everything else)
    height: int = 0
    start_s: float = 0.0  # audio segments: where the window starts and ends in the recording
    end_s: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: list[float] | None = None
    version: int = 0  # the write that stored this row; a document reads as one version (retrieval/versions.py)


@dataclass(frozen=True)
class RouteScore:
    """Where one route (a query encoder searching one vector space) placed an item."""

    rank: int  # 1-based
    score: float  # that route's cosine similarity


@dataclass(frozen=True)
class Hit:
    item: Item
    score: float  # cosine similarity; the fused score when several routes found results
    routes: dict[str, RouteScore] = field(default_factory=dict)  # provenance: route name -> its rank and score
    rerank_score: float | None = None  # the reranker's relevance, when the hit was reranked


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    items: int
    created_at: int


@dataclass
class IngestResult:
    ids: list[str]  # document ids, in request order
    chunks: int  # chunks written
    embedded: int  # distinct chunk texts sent to the encoder
    reused: int  # chunks whose vector was already known (same content hash) and not embedded again
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    routes: list[str] = field(default_factory=list)  # the routes that ran
    skipped: dict[str, str] = field(default_factory=dict)  # routes that could not run -> why
    rerank: str | None = None  # the reranker that reordered the results, if any
    rerank_skipped: str | None = None  # why reranking was asked for and did not run
