"""The retrieval layer's one entry point: what the API and the CLI call.

A Library owns one text encoder and one store, and composes the ingest and search pipelines over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Sequence

import numpy as np

from encoders import EncoderInfo, TextEncoder, truncate_dimensions
from retrieval.cache import EmbeddingCache
from retrieval.errors import InvalidInput, NotFound
from retrieval.extract import extract_text
from retrieval.ingest import ChunkingConfig, Ingestor, check_collection_name
from retrieval.search import Searcher, TextQuery
from retrieval.store import MilvusStore
from retrieval.types import CollectionInfo, Document, IngestResult, Item, SearchResult


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    data: bytes


class Library:
    def __init__(
        self,
        encoder: TextEncoder,
        store: MilvusStore,
        chunking: ChunkingConfig = ChunkingConfig(),
        cache_size: int = 10_000,
    ) -> None:
        # Refuses to start on an index built by another model: mixing vector spaces corrupts search.
        store.ensure_space(encoder.info.dimension, encoder.info.name)
        self.encoder = encoder
        self.store = store
        cache = EmbeddingCache(cache_size)
        self.ingestor = Ingestor(encoder, store, cache, chunking)
        self.searcher = Searcher(encoder, store, cache)

    @property
    def text_model(self) -> EncoderInfo:
        return self.encoder.info

    def ingest_documents(self, collection: str, documents: Sequence[Document]) -> IngestResult:
        return self.ingestor.ingest(collection, documents)

    def ingest_files(self, collection: str, files: Sequence[UploadedFile]) -> IngestResult:
        """Each file becomes one document whose id and source are its name (re-uploading replaces it)."""
        if not files:
            raise InvalidInput("no files given")
        documents = [
            Document(text=extract_text(file.filename, file.data), id=file.filename, title=PurePath(file.filename).stem, source=file.filename)
            for file in files
        ]
        return self.ingestor.ingest(collection, documents)

    def search(self, query: TextQuery) -> SearchResult:
        return self.searcher.search(query)

    def embed(self, texts: Sequence[str], dimensions: int | None = None, as_query: bool = False) -> np.ndarray:
        """Raw embeddings, as the OpenAI-compatible endpoint serves them."""
        if dimensions is not None and not 1 <= dimensions <= self.encoder.info.dimension:
            raise InvalidInput(f"dimensions must be between 1 and {self.encoder.info.dimension}")
        vectors = self.encoder.embed_queries(texts) if as_query else self.encoder.embed_documents(texts)
        return truncate_dimensions(vectors, dimensions)

    def get_item(self, item_id: str) -> Item:
        item = self.store.get(item_id)
        if item is None:
            raise NotFound(f"item {item_id!r} does not exist")
        return item

    def delete_item(self, item_id: str) -> None:
        self.get_item(item_id)
        self.store.delete_ids([item_id])

    def delete_document(self, collection: str, doc_id: str) -> int:
        self._require_collection(collection)
        deleted = self.store.delete_document(collection, doc_id)
        if not deleted:
            raise NotFound(f"document {doc_id!r} does not exist in collection {collection!r}")
        return deleted

    def collections(self) -> list[CollectionInfo]:
        return self.store.list_collections()

    def drop_collection(self, name: str) -> int:
        self._require_collection(name)
        return self.store.drop_collection(name)

    def _require_collection(self, name: str) -> None:
        check_collection_name(name)
        if not self.store.has_collection(name):
            raise NotFound(f"collection {name!r} does not exist")

    def close(self) -> None:
        self.store.close()
