"""An in-process text encoder's work, first come, first served, in bounded batches: queries in a lane
of their own, ingest and embeddings in another, so that a bulk ingest never stalls search.

Each lane is a MicroBatcher (retrieval/batching.py) with one worker thread running the model:
  queries    search queries (and embed_queries calls). A pass takes every query waiting, up to
             batch_size, in the order they came: queries that arrive together share a forward pass,
             and a lone query goes at once (no waiting for company; continuous batching).
  documents  ingest chunks and /v1/embeddings inputs. A request's texts are cut into batches of at
             most batch_size and queued one batch at a time, the next only when the last is done: so
             requests take turns batch by batch in the order they queued, small requests share passes,
             and no request holds the model for more than one pass.
The lanes run side by side (the encoders tokenize under a lock and run their passes in parallel): a
query waits for earlier queries, never for an ingest's pass. A lane that already holds queue_size
texts refuses more at once (QueueFull: HTTP 503 `overloaded`). A request checks for cancellation
(encoders.cancel) before each of its batches, so work nobody waits for stops within one batch.

HTTP backends are not queued here: the server they call batches for itself, and requests in parallel
are what it wants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from encoders import EncoderInfo, TextEncoder
from encoders.cancel import check_cancelled
from encoders.factory import IN_PROCESS_BACKENDS
from retrieval.batching import MicroBatcher


@dataclass(frozen=True)
class TextQueueConfig:
    batch_size: int = 32  # texts per forward pass, in either lane
    queue_size: int = 1024  # texts waiting in one lane before requests are refused


class QueuedTextEncoder:
    """A TextEncoder whose embedding work goes through the two lanes; the rest goes to `encoder`."""

    def __init__(self, encoder: TextEncoder, config: TextQueueConfig = TextQueueConfig()) -> None:
        self.encoder = encoder
        self.config = config
        # A request queues at most this many texts at a time, so that it always fits in an empty lane.
        self.batch_size = min(config.batch_size, config.queue_size)
        options = dict(max_batch=self.batch_size, max_wait_ms=0.0, max_queue=config.queue_size)
        self.queries: MicroBatcher[str, np.ndarray] = MicroBatcher(lambda texts: list(self.encoder.embed_queries(texts)), name="text-queries", **options)
        self.documents: MicroBatcher[str, np.ndarray] = MicroBatcher(lambda texts: list(self.encoder.embed_documents(texts)), name="text-documents", **options)

    @property
    def info(self) -> EncoderInfo:
        return self.encoder.info

    @property
    def batchers(self) -> list[MicroBatcher]:
        """For /metrics."""
        return [self.queries, self.documents]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(self.queries, texts)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(self.documents, texts)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return self.encoder.token_spans(text)  # chunking: the encoder's own tokenizer, not a lane

    def _embed(self, lane: MicroBatcher[str, np.ndarray], texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        vectors: list[np.ndarray] = []
        size = self.batch_size
        for start in range(0, len(texts), size):
            check_cancelled()  # the client left, or the server stops: queue no more of this request
            vectors.extend(lane.submit(texts[start : start + size]))
        return np.stack(vectors).astype(np.float32, copy=False)

    def close(self) -> None:
        """Stop the lanes' workers (texts still queued fail with "batcher closed"), then the encoder."""
        for lane in self.batchers:
            lane.close()
        close_encoder = getattr(self.encoder, "close", None)
        if close_encoder is not None:
            close_encoder()

    def __getattr__(self, name: str) -> Any:
        # Anything else a backend offers (ping, model, config) is the encoder's.
        if name == "encoder":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.encoder, name)


def queue_text_encoder(encoder: TextEncoder, config: TextQueueConfig = TextQueueConfig()) -> TextEncoder:
    """The encoder behind the two lanes when it runs in this process; an HTTP backend as it is."""
    if encoder.info.backend in IN_PROCESS_BACKENDS:
        return QueuedTextEncoder(encoder, config)
    return encoder
