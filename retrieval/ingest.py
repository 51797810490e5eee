"""Documents in, chunks with vectors out: clean, chunk, reuse known vectors, embed the rest, write.

Every document of a request is validated, chunked and embedded before anything is written, so a bad
document or a failing encoder leaves the store as it was.
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
from retrieval.store import MilvusStore
from retrieval.timing import StageTimer
from retrieval.types import Document, IngestResult, Item

# The input grammar lives in retrieval.validation; these stay importable from here.
from retrieval.validation import check_collection_name, check_document_fields, check_metadata  # noqa: F401


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 512  # Qwen3 reads 32k tokens, but shorter chunks retrieve more precisely
    overlap: int = 64


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def item_id(collection: str, doc_id: str, position: int) -> str:
    """Stable id of a document's n-th chunk: re-ingesting the document overwrites the same rows."""
    return hashlib.sha256(f"{collection}\0{doc_id}\0{position}".encode("utf-8")).hexdigest()[:32]


class Mirror(Protocol):
    """Another vector space that keeps its own vectors of the text items (CLIP's text tower: so a
    picture can find text). It embeds before anything is written, and writes after the text space."""

    def embed(self, items: Sequence[Item]) -> list[Item]: ...

    def write(self, collection: str, items: Sequence[Item], doc_ids: Sequence[str]) -> None: ...


class Ingestor:
    def __init__(
        self,
        encoder: TextEncoder,
        store: MilvusStore,
        cache: EmbeddingCache,
        chunking: ChunkingConfig = ChunkingConfig(),
    ) -> None:
        self.encoder = encoder
        self.store = store
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

    def save(self, collection: str, items: list[Item], timer: StageTimer) -> IngestResult:
        """Embed what is not known yet and write the items, replacing earlier versions of their
        documents. Shared by every modality whose items are embedded as text (chunks, transcripts)."""
        with timer.stage("embed"):
            embedded, reused = self.attach_vectors(items)
            mirrored = [(mirror, mirror.embed(items)) for mirror in self.mirrors]
        with timer.stage("store"):
            doc_ids = self.write(collection, items)
            for mirror, copies in mirrored:
                mirror.write(collection, copies, doc_ids)
        return IngestResult(ids=doc_ids, chunks=len(items), embedded=embedded, reused=reused, timings_ms=timer.finish())

    def write(self, collection: str, items: list[Item], doc_ids: Sequence[str] = ()) -> list[str]:
        """Store items that have their vectors, then drop what earlier versions of their documents (and
        of `doc_ids`, which may have no items now) left behind. Returns the document ids, in order."""
        doc_ids = list(dict.fromkeys([*doc_ids, *(item.doc_id for item in items)]))
        self.store.create_collection(collection)
        self.store.upsert(items)
        # Only after the new items are in: a document is never missing while it is replaced.
        self.store.delete_documents(collection, doc_ids, keep_ids=[item.id for item in items])
        return doc_ids

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

    def attach_vectors(self, items: list[Item]) -> tuple[int, int]:
        """Fill item.vector from the cache, then the store, then the encoder. Returns (embedded, reused)."""
        vectors: dict[str, np.ndarray] = {}
        for item in items:
            cached = self.cache.get(item.content_hash)
            if cached is not None:
                vectors[item.content_hash] = cached
        missing = [h for h in dict.fromkeys(item.content_hash for item in items) if h not in vectors]
        if missing:
            for hash_, vector in self.store.vectors_by_hash(missing).items():
                vectors[hash_] = np.asarray(vector, dtype=np.float32)
        texts = {item.content_hash: item.text for item in items if item.content_hash not in vectors}
        if texts:
            fresh = self.encoder.embed_documents(list(texts.values()))
            vectors.update(zip(texts.keys(), fresh))
        for item in items:
            vector = vectors[item.content_hash]
            self.cache.put(item.content_hash, vector)
            item.vector = vector.tolist()
        return len(texts), len(items) - len(texts)
