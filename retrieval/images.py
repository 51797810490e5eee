"""Images in, CLIP vectors out; and images (or text aimed at images) as queries.

An upload is decoded and checked (format, size, pixel count) before anything is stored. Each picture
is embedded by CLIP's image tower into the image space (a Milvus collection of its own: CLIP's
dimension differs from the text encoder's). A caption, when there is one, is also embedded by the text
encoder into the text space under the same item id, so a text search matches caption words as well
as pixels. The original and a JPEG thumbnail go to the blob store, keyed by the item id.

Pictures are encoded through a MicroBatcher: concurrent uploads and image queries share CLIP's
forward passes, and a full queue is refused at once (HTTP 503) instead of piling up memory.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import Any, Sequence

import numpy as np

from encoders.clip import ClipEncoder, ClipInfo
from encoders.images import (
    MAX_BYTES,
    MAX_PIXELS,
    THUMBNAIL_CONTENT_TYPE,
    DecodedImage,
    decode_image,
    thumbnail,
)
from retrieval.batching import MicroBatcher
from retrieval.blobs import BlobOwner, blob_key
from retrieval.cache import EmbeddingCache
from retrieval.errors import InvalidInput
from retrieval.group_writes import GroupWriter
from retrieval.ingest import (
    Ingestor,
    check_collection_name,
    check_metadata,
    content_hash,
)
from retrieval.store import MilvusStore
from retrieval.timing import StageTimer
from retrieval.types import Hit, IngestResult, Item
from retrieval.writes import BlobWrite

MAX_CAPTION_CHARS = 4096


@dataclass(frozen=True)
class ImageConfig:
    max_bytes: int = MAX_BYTES
    max_pixels: int = MAX_PIXELS  # a decompression bomb is a small file that states a huge size
    thumbnail_px: int = 256  # longest side of the stored thumbnail
    batch_size: int = 32  # pictures per CLIP forward pass, gathered across requests
    batch_wait_ms: float = 5.0  # how long the first picture waits for others to join its batch
    queue_size: int = 512  # pictures waiting to be encoded before new work is refused


@dataclass
class ImageUpload:
    """One decoded and checked upload, ready to embed."""

    filename: str
    data: bytes
    decoded: DecodedImage
    caption: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def image_id(self, collection: str) -> str:
        """The item id, which is also its document id: the same picture uploaded to a collection again
        replaces itself (its caption and metadata may change), and each collection owns its own copy
        of the original."""
        digest = hashlib.sha256(collection.encode() + b"\0" + self.data).hexdigest()
        return "img-" + digest[:24]


def model_label(info: ClipInfo) -> str:
    """What the image space records as the model that built it."""
    return f"{info.name}/{info.pretrained}" if info.pretrained else info.name


def picture_blob_keys(collection: str, image_id: str) -> list[str]:
    """The blob keys of a picture's original and its thumbnail."""
    return [blob_key("picture", collection, image_id), blob_key("thumbnail", collection, image_id)]


class ImageLibrary:
    def __init__(
        self,
        encoder: ClipEncoder,
        store: MilvusStore,
        ingestor: Ingestor,
        config: ImageConfig = ImageConfig(),
        cache: EmbeddingCache | None = None,
    ) -> None:
        # Refuses an image space built by another CLIP: its vectors would not be comparable.
        store.ensure_space(encoder.info.dimension, model_label(encoder.info))
        self.encoder = encoder
        self.store = store
        self.ingestor = ingestor  # the text side: captions are embedded and stored as text
        self.config = config
        self.cache = cache or EmbeddingCache(1024)
        # The batcher's worker runs CLIP's forward passes only: request threads decode their pictures
        # and prepare CLIP's input (resize, crop, normalise) themselves, beside the model.
        self.batcher = MicroBatcher(
            lambda pixels: list(encoder.embed_pixels(pixels)),
            max_batch=config.batch_size,
            max_wait_ms=config.batch_wait_ms,
            max_queue=config.queue_size,
            name="image-encoder",
        )
        # Pictures that arrive together are stored together (one write for many one-picture requests).
        self.writes = GroupWriter(ingestor.writer, max_group=config.batch_size, max_queue=config.queue_size, name="image-writes")

    @property
    def info(self) -> ClipInfo:
        return self.encoder.info

    def decode(self, filename: str, data: bytes, caption: str | None = None, metadata: dict[str, Any] | None = None) -> ImageUpload:
        """Check and decode an upload; raises InvalidImage, ImageTooLarge or InvalidInput, storing nothing."""
        caption = " ".join((caption or "").split())  # one line: it is shown under the picture
        if len(caption) > MAX_CAPTION_CHARS:
            raise InvalidInput(f"{filename}: the caption is longer than {MAX_CAPTION_CHARS} characters")
        metadata = check_metadata(metadata or {}, f"{filename}: metadata")
        decoded = decode_image(data, filename, self.config.max_bytes, self.config.max_pixels)
        return ImageUpload(filename=filename, data=data, decoded=decoded, caption=caption, metadata=metadata)

    def ingest(self, collection: str, uploads: Sequence[ImageUpload]) -> IngestResult:
        """Embed every picture (and caption), then store originals, thumbnails and vectors as one write
        (retrieval/writes.py; shared with other requests storing at the same time: retrieval/group_writes.py):
        nothing is left behind when a step fails."""
        check_collection_name(collection)
        if not uploads:
            raise InvalidInput("no images given")
        timer = StageTimer()
        with timer.stage("thumbnail"):
            # The same picture twice in one request is one item; the last copy's caption wins, as if
            # it had been uploaded again afterwards.
            by_id = {upload.image_id(collection): upload for upload in uploads}
            images = [self._image_item(collection, doc_id, upload) for doc_id, upload in by_id.items()]
            thumbnails = [thumbnail(upload.decoded.image, self.config.thumbnail_px) for upload in by_id.values()]
        with timer.stage("embed"):
            encoded = self._attach_image_vectors(collection, images, list(by_id.values()))
            captions = [caption_item(image) for image in images if image.text]
            embedded, _ = self.ingestor.attach_vectors(collection, captions)
        with timer.stage("store"):
            blobs = [blob for image, upload, small in zip(images, by_id.values(), thumbnails) for blob in _blobs(image, upload, small)]
            try:
                self.writes.replace(collection, [image.id for image in images], {"image": images, "text": captions}, blobs)
            except ValueError as error:  # an item the store's schema cannot hold: nothing was stored
                raise InvalidInput(str(error)) from None
        return IngestResult(
            ids=[image.id for image in images],
            chunks=len(images),
            embedded=encoded + embedded,
            reused=len(images) - encoded + len(captions) - embedded,
            timings_ms=timer.finish(),
        )

    def _image_item(self, collection: str, doc_id: str, upload: ImageUpload) -> Item:
        return Item(
            id=doc_id,  # one item per picture: one id for both
            collection=collection,
            modality="image",
            doc_id=doc_id,
            text=upload.caption,
            content_hash=hashlib.sha256(upload.data).hexdigest(),
            created_at=int(time.time() * 1000),
            source=upload.filename,
            title=PurePath(upload.filename).stem,
            width=upload.decoded.width,
            height=upload.decoded.height,
            metadata=upload.metadata,
        )

    def _attach_image_vectors(self, collection: str, images: list[Item], uploads: list[ImageUpload]) -> int:
        """CLIP vectors for the pictures, reusing those of identical files already stored in the
        collection. Returns how many were encoded."""
        known = self.store.vectors_by_hash([image.content_hash for image in images], collection)
        missing = [index for index, image in enumerate(images) if image.content_hash not in known]
        vectors = self.batcher.submit([self.encoder.pixels(uploads[index].decoded.image) for index in missing])
        for index, vector in zip(missing, vectors):
            known[images[index].content_hash] = vector.tolist()
        for image in images:
            image.vector = list(known[image.content_hash])
        return len(missing)

    def embed_query_image(self, filename: str, data: bytes) -> np.ndarray:
        upload = self.decode(filename, data)
        return np.asarray(self.batcher.submit([self.encoder.pixels(upload.decoded.image)])[0])

    def embed_query_text(self, text: str) -> np.ndarray:
        """CLIP's text tower, for text aimed at pictures (cached: queries repeat)."""
        key = "clip-query\0" + text
        vector = self.cache.get(key)
        if vector is None:
            vector = self.encoder.embed_texts([text])[0]
            self.cache.put(key, vector)
        return vector

    def search(self, vector: np.ndarray, top_k: int, expression: str) -> list[Hit]:
        return self.store.search(vector.tolist(), top_k, expression)

    @property
    def batchers(self) -> list[MicroBatcher]:
        """For /metrics."""
        return [self.batcher, self.writes.batcher]

    def close(self) -> None:
        self.batcher.close()
        self.writes.close()


class ClipTextMirror:
    """CLIP text-tower vectors of text chunks and transcript windows, kept in the image space under
    the items' own ids, so that a picture can find text (image->text) and recordings (image->audio).
    CLIP reads at most its context (77 tokens for most models): longer items are judged by their start.
    The copies are written in the same version as their items (retrieval/writes.py)."""

    MODALITIES = ("text", "audio")
    space = "image"

    def __init__(self, images: ImageLibrary) -> None:
        self.images = images

    def embed(self, collection: str, items: Sequence[Item]) -> list[Item]:
        copies = [replace(item, vector=None) for item in items if item.modality in self.MODALITIES]
        if not copies:
            return []
        known = self.images.store.vectors_by_hash([item.content_hash for item in copies], collection)
        missing = {item.content_hash: item.text for item in copies if item.content_hash not in known}
        if missing:
            vectors = self.images.encoder.embed_texts(list(missing.values()))
            known.update({content: vector.tolist() for content, vector in zip(missing, vectors)})
        for item in copies:
            item.vector = list(known[item.content_hash])
        return copies


def _blobs(image: Item, upload: ImageUpload, small: bytes) -> list[BlobWrite]:
    """A picture's original and thumbnail, owned by its item."""
    original_key, thumbnail_key = picture_blob_keys(image.collection, image.id)
    return [
        BlobWrite(original_key, upload.data, upload.decoded.content_type, upload.filename, BlobOwner("picture", image.collection, image.id)),
        BlobWrite(thumbnail_key, small, THUMBNAIL_CONTENT_TYPE, upload.filename, BlobOwner("thumbnail", image.collection, image.id)),
    ]


def caption_item(image: Item) -> Item:
    """The caption as a text-space row: the image's id, so a caption match is a match of the image."""
    return Item(
        id=image.id,
        collection=image.collection,
        modality="image",
        doc_id=image.doc_id,
        text=image.text,
        content_hash=content_hash(image.text),
        created_at=image.created_at,
        source=image.source,
        title=image.title,
        width=image.width,
        height=image.height,
        metadata=image.metadata,
        version=image.version,
    )
