"""The retrieval layer's one entry point: what the API and the CLI call.

A Library owns the encoders (text; CLIP and Whisper when they could be loaded), a store per vector
space (text, image) and the blob store of originals, and composes the ingest and search pipelines
over them. Images and audio are optional: without their models, text keeps working and their routes
say why not.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from encoders import EncoderInfo, TextEncoder, truncate_dimensions
from encoders.clip import ClipEncoder, ClipInfo
from encoders.generate import Generator
from encoders.rerank import Reranker
from encoders.whisper import Transcriber, TranscriberInfo
from retrieval.answer import AnswerRequest, AnswerRun
from retrieval.audio import AudioConfig, AudioLibrary, recording_blob_key
from retrieval.blobs import BlobInfo, BlobStore, blob_key
from retrieval.cache import EmbeddingCache
from retrieval.doctor import Doctor, Report
from retrieval.errors import InvalidInput, ModalityUnavailable, NotFound
from retrieval.images import (
    ClipTextMirror,
    ImageConfig,
    ImageLibrary,
    ImageUpload,
    picture_blob_keys,
)
from retrieval.ingest import ChunkingConfig, Ingestor, check_collection_name
from retrieval.jobs import JobConfig, JobQueue
from retrieval.search import Query, Searcher
from retrieval.store import MilvusStore
from retrieval.types import CollectionInfo, Document, IngestResult, Item, SearchResult
from retrieval.versions import Journal
from retrieval.writes import Writer

log = logging.getLogger("prism")

# On a Milvus server several replicas may write: a write younger than this may still be in progress
# elsewhere, and is left to them (or to a later start). Milvus Lite is one process: nothing is left.
STALE_WRITE_S = 600.0


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
        image_store: MilvusStore | None = None,
        clip: ClipEncoder | None = None,
        image_config: ImageConfig = ImageConfig(),
        image_error: str | None = None,
        reranker: Reranker | None = None,
        rerank_error: str | None = None,
        journal: Journal | None = None,
        jobs: JobConfig | None = None,
    ) -> None:
        """`journal`: the write journal (retrieval/versions.py); by default in a folder `journal` beside
        the blob store's, which is where open_library puts it (DATA_DIR/journal)."""
        # Refuses to start on an index built by another model: mixing vector spaces corrupts search.
        store.ensure_space(encoder.info.dimension, encoder.info.name)
        self.encoder = encoder
        self.store = store
        # The image space is opened even without a CLIP model, so that items stored earlier can still
        # be listed, served and deleted.
        self.image_store = image_store
        self.blobs = blobs
        # Background jobs on disk; their workers start once the Library is open (api/state.py).
        self.jobs = JobQueue(jobs) if jobs is not None else None
        cache = EmbeddingCache(cache_size)
        spaces = {"text": store, **({"image": image_store} if image_store is not None else {})}
        journal = journal or Journal(Path(blobs.root).parent / "journal", shared=store.kind == "milvus")
        self.writer = Writer(spaces, blobs, journal)
        self._stale_write_s = 0.0 if store.kind == "milvus-lite" else STALE_WRITE_S
        for done in self.writer.recover(self._stale_write_s):
            log.warning("after a crash: %s", done)
        self.ingestor = Ingestor(encoder, self.writer, cache, chunking)
        # Audio and images are optional: without their models, text keeps working and their routes say why not.
        self.audio = AudioLibrary(transcriber, self.ingestor, audio_config) if transcriber else None
        self.audio_error = audio_error
        self.images = None
        if clip is not None and image_store is not None:
            self.images = ImageLibrary(clip, image_store, self.ingestor, image_config, cache)
            self.ingestor.mirrors.append(ClipTextMirror(self.images))  # so pictures can find text
        self.image_error = image_error or ("the image store is not open" if image_store is None else None)
        self.reranker = reranker
        self.rerank_error = rerank_error if reranker is None else None
        self.searcher = Searcher(
            encoder,
            store,
            cache,
            self.images,
            self.image_error or "no image model is loaded",
            reranker,
            self.rerank_error or "no reranker is configured",
        )

    def require_audio(self) -> AudioLibrary:
        if self.audio is None:
            raise ModalityUnavailable(f"audio is unavailable: {self.audio_error or 'no Whisper model is loaded'}")
        return self.audio

    def require_images(self) -> ImageLibrary:
        if self.images is None:
            raise ModalityUnavailable(f"images are unavailable: {self.image_error or 'no image model is loaded'}")
        return self.images

    @property
    def audio_model(self) -> TranscriberInfo | None:
        return self.audio.transcriber.info if self.audio else None

    @property
    def image_model(self) -> ClipInfo | None:
        return self.images.info if self.images else None

    @property
    def text_model(self) -> EncoderInfo:
        return self.encoder.info

    def ingest_documents(self, collection: str, documents: Sequence[Document]) -> IngestResult:
        return self.ingestor.ingest(collection, documents)

    def ingest_images(self, collection: str, uploads: Sequence[ImageUpload]) -> IngestResult:
        return self.require_images().ingest(collection, uploads)

    def search(self, query: Query) -> SearchResult:
        return self.searcher.search(query)

    def answer(self, request: AnswerRequest, generator: Callable[[], Generator]) -> AnswerRun:
        """A grounded answer (retrieval/answer.py): retrieval runs now; the generator is fetched (a local
        model loads on first use) only when something relevant was found."""
        return AnswerRun(self.search, generator, request)

    def embed(self, texts: Sequence[str], dimensions: int | None = None, as_query: bool = False) -> np.ndarray:
        """Raw embeddings, as the OpenAI-compatible endpoint serves them."""
        self._check_dimensions(dimensions)
        vectors = self.encoder.embed_queries(texts) if as_query else self.encoder.embed_documents(texts)
        return truncate_dimensions(vectors, dimensions)

    def embed_token_ids(self, id_lists: Sequence[Sequence[int]], dimensions: int | None = None) -> np.ndarray:
        """Token ids as they are, for an encoder on an embeddings server (embed_token_ids) to send on."""
        self._check_dimensions(dimensions)
        return truncate_dimensions(self.encoder.embed_token_ids(id_lists), dimensions)  # type: ignore[attr-defined]

    def _check_dimensions(self, dimensions: int | None) -> None:
        info = self.encoder.info
        if dimensions is not None and not 1 <= dimensions <= info.dimension:
            raise InvalidInput(f"dimensions must be between 1 and {info.dimension}")
        if dimensions is not None and dimensions < info.dimension and not info.matryoshka:
            raise InvalidInput(
                f"dimensions: {info.name} was not trained for Matryoshka truncation, so the first {dimensions} values of its vectors "
                f"are not an embedding; leave dimensions out (its vectors have {info.dimension})"
            )

    def get_item(self, item_id: str) -> Item:
        # A picture with a caption has a row in each space under one id; the image row is the item.
        for store in self._stores():
            item = store.get(item_id)
            if item is not None:
                return item
        raise NotFound(f"item {item_id!r} does not exist")

    def delete_item(self, item_id: str) -> None:
        item = self.get_item(item_id)
        blob_keys: list[str] = []
        if item.modality == "image":
            blob_keys = picture_blob_keys(item.collection, item.id)
        elif item.modality == "audio" and list(self.store.document_modalities(item.collection, item.doc_id)) == [item_id]:
            blob_keys = [recording_blob_key(item.collection, item.doc_id)]  # the recording's last window
        self.writer.delete_items(item.collection, item.doc_id, [item_id], blob_keys)

    def delete_document(self, collection: str, doc_id: str) -> int:
        """Delete a document, recording or picture by its document id; returns the items removed."""
        self._require_collection(collection)
        text_items = self.store.document_modalities(collection, doc_id)  # chunks, windows, or a caption
        pictures = [i for i, m in (self.image_store.document_modalities(collection, doc_id) if self.image_store else {}).items() if m == "image"]
        if not text_items and not pictures:
            raise NotFound(f"document {doc_id!r} does not exist in collection {collection!r}")
        blob_keys = [key for picture in pictures for key in picture_blob_keys(collection, picture)]
        if "audio" in text_items.values():
            blob_keys.append(recording_blob_key(collection, doc_id))
        self.writer.delete_documents(collection, [doc_id], blob_keys)
        return len(pictures) or len(text_items)  # a picture is one item, whether it had a caption row or not

    def content(self, item_id: str) -> tuple[Item, BlobInfo, Path]:
        """The stored original behind an item: a picture, or the recording of an audio window."""
        item = self.get_item(item_id)
        key = {"audio": recording_blob_key(item.collection, item.doc_id), "image": blob_key("picture", item.collection, item.id)}.get(item.modality)
        return item, *self._blob(item_id, key, "content")

    def thumbnail(self, item_id: str) -> tuple[Item, BlobInfo, Path]:
        item = self.get_item(item_id)
        key = blob_key("thumbnail", item.collection, item.id) if item.modality == "image" else None
        return item, *self._blob(item_id, key, "thumbnail")

    def _blob(self, item_id: str, key: str | None, what: str) -> tuple[BlobInfo, Path]:
        info = self.blobs.info(key) if key else None
        if info is None:
            raise NotFound(f"item {item_id!r} has no stored {what}")
        return info, self.blobs.path(key)

    def collections(self) -> list[CollectionInfo]:
        infos = self.store.list_collections()
        if self.image_store is None:
            return infos  # one space: its row counts are the items
        return [replace(info, items=self._count_items(info.name)) for info in infos]

    def list_items(self, collection: str, limit: int = 50, offset: int = 0) -> tuple[list[Item], int]:
        """A page of a collection's items, newest first, and how many there are in all."""
        self._require_collection(collection)
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidInput("limit must be between 1 and 1000 and offset not negative")
        spaces = self._item_spaces()
        keys = sorted(
            ((created_at, item_id, store) for store, modalities in spaces for created_at, item_id in store.newest(collection, modalities, offset + limit)),
            key=lambda key: (-key[0], key[1]),
        )[offset : offset + limit]
        items: list[Item] = []
        for store, _ in spaces:
            wanted = [item_id for _, item_id, owner in keys if owner is store]
            items += store.get_many(wanted)
        order = {item_id: index for index, (_, item_id, _) in enumerate(keys)}
        return sorted(items, key=lambda item: order[item.id]), self._count_items(collection)

    def _item_spaces(self) -> list[tuple[MilvusStore, tuple[str, ...]]]:
        """Where each item is found once: chunks and transcript windows in the text space (whose
        captions are rows of the pictures they describe), pictures in the image space (whose other rows
        are CLIP copies of chunks and windows)."""
        spaces = [(self.store, ("text", "audio"))]
        if self.image_store is not None:
            spaces.append((self.image_store, ("image",)))
        return spaces

    def _count_items(self, collection: str) -> int:
        return sum(store.count(collection, modalities) for store, modalities in self._item_spaces())

    def doctor(self, fix: bool = False) -> Report:
        """Check that the store and the blob store agree; with `fix`, repair what is safe to repair."""
        return Doctor(self, self._stale_write_s).run(fix)

    def drop_collection(self, name: str) -> int:
        self._require_collection(name)
        recordings = self.store.document_ids(name, "audio")
        pictures = self.image_store.document_ids(name, "image") if self.image_store is not None else []
        total = self._count_items(name)
        blob_keys = [recording_blob_key(name, recording) for recording in recordings]
        blob_keys += [key for picture in pictures for key in picture_blob_keys(name, picture)]
        self.writer.drop_collection(name, blob_keys)
        return total

    def _stores(self) -> list[MilvusStore]:
        return [store for store in (self.image_store, self.store) if store is not None]

    def _require_collection(self, name: str) -> None:
        check_collection_name(name)
        if not self.store.has_collection(name):
            raise NotFound(f"collection {name!r} does not exist")

    def close(self) -> None:
        if self.jobs is not None:
            self.jobs.close()  # first: a running job uses the stores below
        if self.images is not None:
            self.images.close()
        close_encoder = getattr(self.encoder, "close", None)  # its queues' workers, an HTTP client's connections
        if close_encoder is not None:
            close_encoder()
        close_reranker = getattr(self.reranker, "close", None)  # an HTTP client's connections
        if close_reranker is not None:
            close_reranker()
        for store in self._stores():
            store.close()
