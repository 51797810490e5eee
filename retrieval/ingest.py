"""Documents in, chunks with vectors out: clean, chunk, reuse known vectors, embed the rest, write.

Every document of a request is validated, chunked and embedded before anything is written, so a bad
document or a failing encoder leaves the store as it was; the write itself is one version of every
document in it (retrieval/writes.py), all or nothing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from encoders import TextEncoder
from retrieval.cache import EmbeddingCache
from retrieval.chunking import chunk_text
from retrieval.errors import InvalidInput
from retrieval.timing import StageTimer
from retrieval.types import Document, IngestResult, Item
from retrieval.writes import BlobWrite, Writer

# The input grammar lives in retrieval.validation; these stay importable from here.
from retrieval.validation import check_collection_name, check_document_fields, check_metadata  # noqa: F401


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 512  # Qwen3 reads 32k tokens, but shorter chunks retrieve more precisely
    overlap: int = 64


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def item_id(collection: str, doc_id: str, position: int) -> str:
    """Stable id of a document's n-th chunk: the same in every version of the document (each version's
    rows are keyed by the id and the version, so a new version never overwrites an old one)."""
    return hashlib.sha256(f"{collection}\0{doc_id}\0{position}".encode("utf-8")).hexdigest()[:32]


class Mirror(Protocol):
    """Another vector space that keeps its own vectors of the text items (CLIP's text tower: so a
    picture can find text). It embeds before anything is written; its copies are written with the items."""

    space: str

    def embed(self, collection: str, items: Sequence[Item]) -> list[Item]: ...


class Ingestor:
    def __init__(
        self,
        encoder: TextEncoder,
        writer: Writer,
        cache: EmbeddingCache,
        chunking: ChunkingConfig = ChunkingConfig(),
    ) -> None:
        self.encoder = encoder
        self.writer = writer
        self.store = writer.spaces["text"]
        self.cache = cache
        # A chunk longer than the model reads would be silently truncated by the model: clamp.
        self.max_tokens = min(chunking.max_tokens, encoder.info.max_tokens)
        self.overlap = min(chunking.overlap, self.max_tokens // 2)
        self.mirrors: list[Mirror] = []  # added by the Library when images are enabled

    def ingest(self, collection: str, documents: Sequence[Document]) -> IngestResult:
        check_collection_name(collection)
        if not documents:
            raise InvalidInput("no documents given")
        timer = StageTimer()
        items: list[Item] = []
        with timer.stage("chunk"):
            first_index: dict[str, int] = {}
            for index, document in enumerate(documents):
                doc_items = self._chunk(collection, index, document)
                doc_id = doc_items[0].doc_id
                if doc_id in first_index:
                    raise InvalidInput(f"documents[{index}] repeats the id {doc_id!r} of documents[{first_index[doc_id]}]")
                first_index[doc_id] = index
                items.extend(doc_items)
        return self.save(collection, items, timer)

    def save(self, collection: str, items: list[Item], timer: StageTimer, blobs: Sequence[BlobWrite] = ()) -> IngestResult:
        """Embed what is not known yet and store the items as the new version of their documents, with
        their CLIP copies and `blobs` (originals). Shared by every modality whose items are embedded as
        text (chunks, transcripts)."""
        with timer.stage("embed"):
            embedded, reused = self.attach_vectors(collection, items)
            rows: dict[str, list[Item]] = {"text": items}
            for mirror in self.mirrors:
                rows[mirror.space] = mirror.embed(collection, items)
        doc_ids = list(dict.fromkeys(item.doc_id for item in items))
        with timer.stage("store"):
            try:
                self.writer.replace(collection, doc_ids, rows, blobs)
            except ValueError as error:  # an item the store's schema cannot hold: nothing was stored
                raise InvalidInput(str(error)) from None
        return IngestResult(ids=doc_ids, chunks=len(items), embedded=embedded, reused=reused, timings_ms=timer.finish())

    def _chunk(self, collection: str, index: int, document: Document) -> list[Item]:
        doc_id = document.id or f"doc-{content_hash(document.text)[:16]}"
        check_document_fields(index, doc_id, document)
        chunks = chunk_text(document.text, self.encoder.token_spans, self.max_tokens, self.overlap)
        if not chunks:
            raise InvalidInput(f"documents[{index}] ({doc_id}): text is empty")
        now = int(time.time() * 1000)
        return [
            Item(
                id=item_id(collection, doc_id, chunk.position),
                collection=collection,
                modality="text",
                doc_id=doc_id,
                text=chunk.text,
                content_hash=content_hash(chunk.text),
                created_at=now,
                source=document.source or "",
                title=document.title or "",
                position=chunk.position,
                char_start=chunk.char_start,
                char_end=chunk.char_end,
                metadata=dict(document.metadata),
            )
            for chunk in chunks
        ]

    def attach_vectors(self, collection: str, items: list[Item]) -> tuple[int, int]:
        """Fill item.vector from the cache, then the store, then the encoder, reusing only what this
        collection holds. Returns (embedded, reused)."""
        vectors: dict[str, np.ndarray] = {}
        for item in items:
            cached = self.cache.get(f"{collection}\0{item.content_hash}")
            if cached is not None:
                vectors[item.content_hash] = cached
        missing = [h for h in dict.fromkeys(item.content_hash for item in items) if h not in vectors]
        if missing:
            for hash_, vector in self.store.vectors_by_hash(missing, collection).items():
                vectors[hash_] = np.asarray(vector, dtype=np.float32)
        texts = {item.content_hash: item.text for item in items if item.content_hash not in vectors}
        if texts:
            fresh = self.encoder.embed_documents(list(texts.values()))
            vectors.update(zip(texts.keys(), fresh))
        for item in items:
            vector = vectors[item.content_hash]
            self.cache.put(f"{collection}\0{item.content_hash}", vector)
            item.vector = vector.tolist()
        return len(texts), len(items) - len(texts)
