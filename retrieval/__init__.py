"""Retrieval: chunking, ingestion, storage on Milvus and search. Knows nothing about HTTP."""

from retrieval.errors import InvalidInput, NotFound
from retrieval.extract import InvalidFile, UnsupportedFile
from retrieval.filters import InvalidFilter
from retrieval.ingest import ChunkingConfig
from retrieval.library import Library
from retrieval.search import Query
from retrieval.store import MilvusStore
from retrieval.store_errors import StoreMismatch, StoreUnavailable
from retrieval.types import (
    CollectionInfo,
    Document,
    Hit,
    IngestResult,
    Item,
    SearchResult,
)

__all__ = [
    "ChunkingConfig",
    "CollectionInfo",
    "Document",
    "Hit",
    "IngestResult",
    "InvalidFile",
    "InvalidFilter",
    "InvalidInput",
    "Item",
    "Library",
    "MilvusStore",
    "NotFound",
    "Query",
    "SearchResult",
    "StoreMismatch",
    "StoreUnavailable",
    "UnsupportedFile",
]
