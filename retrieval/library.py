"""The retrieval layer's one entry point: what the API and the CLI call.

A Library owns one text encoder and one store, and composes the ingest and search pipelines over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Sequence

import numpy as np

from encoders import EncoderInfo, TextEncoder, truncate_dimensions
from encoders.whisper import Transcriber, TranscriberInfo
from retrieval.audio import AudioConfig, AudioLibrary
from retrieval.blobs import BlobInfo, BlobStore
from retrieval.cache import EmbeddingCache
from retrieval.errors import InvalidInput, ModalityUnavailable, NotFound
from retrieval.extract import extract_text
from retrieval.ingest import ChunkingConfig, Ingestor, check_collection_name
from retrieval.jobs import JobManager
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
        blobs: BlobStore,
        chunking: ChunkingConfig = ChunkingConfig(),
        cache_size: int = 10_000,
        transcriber: Transcriber | None = None,
        audio_config: AudioConfig = AudioConfig(),
        audio_error: str | None = None,
    ) -> None:
        # Refuses to start on an index built by another model: mixing vector spaces corrupts search.
        store.ensure_space(encoder.info.dimension, encoder.info.name)
        self.encoder = encoder
        self.store = store
        self.blobs = blobs
        self.jobs = JobManager(workers=1)  # one at a time: a transcription already uses every core
        cache = EmbeddingCache(cache_size)
        self.ingestor = Ingestor(encoder, store, cache, chunking)
        self.searcher = Searcher(encoder, store, cache)
        # Audio is optional: without a Whisper model, text keeps working and audio routes say why not.
        self.audio = AudioLibrary(transcriber, self.ingestor, blobs, audio_config) if transcriber else None
        self.audio_error = audio_error

    def require_audio(self) -> AudioLibrary:
        if self.audio is None:
            raise ModalityUnavailable(f"audio is unavailable: {self.audio_error or 'no Whisper model is loaded'}")
        return self.audio

    @property
    def audio_model(self) -> TranscriberInfo | None:
        return self.audio.transcriber.info if self.audio else None

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
        item = self.get_item(item_id)
        self.store.delete_ids([item_id])
        if item.modality == "audio" and not self.store.document_hashes(item.collection, item.doc_id):
            self.blobs.delete(item.doc_id)  # the recording's last window is gone

    def delete_document(self, collection: str, doc_id: str) -> int:
        self._require_collection(collection)
        deleted = self.store.delete_document(collection, doc_id)
        if not deleted:
            raise NotFound(f"document {doc_id!r} does not exist in collection {collection!r}")
        self.blobs.delete(doc_id)  # a recording's original, if it was one
        return deleted

    def content(self, item_id: str) -> tuple[Item, BlobInfo, Path]:
        """The stored original behind an item (a recording, for audio windows)."""
        item = self.get_item(item_id)
        info = self.blobs.info(item.doc_id) if item.modality == "audio" else None
        if info is None:
            raise NotFound(f"item {item_id!r} has no stored content")
        return item, info, self.blobs.path(item.doc_id)

    def collections(self) -> list[CollectionInfo]:
        return self.store.list_collections()

    def drop_collection(self, name: str) -> int:
        self._require_collection(name)
        recordings = self.store.document_ids(name, "audio")
        deleted = self.store.drop_collection(name)
        for recording_id in recordings:
            self.blobs.delete(recording_id)
        return deleted

    def _require_collection(self, name: str) -> None:
        check_collection_name(name)
        if not self.store.has_collection(name):
            raise NotFound(f"collection {name!r} does not exist")

    def close(self) -> None:
        self.jobs.close()
        self.store.close()
