"""What every text encoder backend promises, and the small helpers they share."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


class EncoderError(Exception):
    """Base class for encoder failures."""


class EncoderUnavailable(EncoderError):
    """The backend cannot be reached or is not loaded (the API answers 503)."""


class ModelNotFound(EncoderError):
    """The model's weights are neither on disk nor downloadable (triggers the offline fallback)."""


@dataclass(frozen=True)
class EncoderInfo:
    """What `GET /v1/info` reports about a loaded encoder."""

    name: str  # model id or path as loaded
    backend: str  # "local" | "openai" | "sentence-transformers"
    dimension: int  # length of the vectors this encoder returns
    max_tokens: int  # longest input the model sees; chunking stays below it
    requested: str | None = None  # the model asked for, when a fallback replaced it
    fallback_reason: str | None = None  # why the fallback was used; None when it was not


class TextEncoder(Protocol):
    """Turns text into unit-length float32 vectors.

    Documents are embedded as they are; queries may get an instruction prefix (Qwen3-Embedding).
    Both return an array of shape (len(texts), info.dimension).
    """

    info: EncoderInfo

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of every token the model would see, without special tokens."""
        ...


def instructed_query(task: str, query: str) -> str:
    """Qwen3-Embedding's query format (from its model card); documents get no instruction."""
    return f"Instruct: {task}\nQuery:{query}"


def resolve_device(device: str) -> str:
    """"auto" means the first GPU when torch sees one, else the CPU; anything else is passed through."""
    if device != "auto":
        return device
    import torch  # here, not at module level: HTTP-only backends never need torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_cpu_threads(threads: int | None) -> None:
    """Threads PyTorch may use within one operation, for the whole process; None keeps its default (one
    per core). On a small machine shared with other processes, one thread per operation can be many
    times faster for single queries: with one per core, every operation waits for a core that another
    process may hold (docs/BENCHMARKS.md, "Threads")."""
    if threads is None:
        return
    import torch  # here, not at module level: HTTP-only backends never need torch

    torch.set_num_threads(threads)


def import_class(spec: str) -> type:
    """The class named by "package.module:ClassName", imported only now. Registries name backends
    this way so that choosing one does not import the heavy libraries of all the others."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def truncate_dimensions(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Matryoshka truncation: keep the first `dimensions` values, then re-normalise.

    Qwen3-Embedding is trained so that prefixes of its vectors are embeddings too, but a prefix of a
    unit vector is shorter than one, so cosine and inner product only agree after re-normalising.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if dimensions is None or dimensions >= vectors.shape[-1]:
        return l2_normalize(vectors)
    return l2_normalize(vectors[..., :dimensions])
