"""What every text encoder backend promises, and the small helpers they share."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

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
    special_tokens: int = 0  # tokens the model adds to every input ([CLS] and [SEP], <|endoftext|>); max_tokens counts them
    matryoshka: bool = False  # trained so that the first values of a vector are an embedding too (see truncate_dimensions)


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

    # In-process backends also have decode_tokens(ids) -> str: the text of token ids in the model's own
    # vocabulary (POST /v1/embeddings takes token ids, as OpenAI's API does); a remote one has not.


# Model families trained with a Matryoshka loss (a prefix of a vector is an embedding of its own), by a
# part of their names. Others (MiniLM, e5, BGE) lose meaning when cut: a request for fewer dimensions is refused.
MATRYOSHKA_FAMILIES = ("qwen3-embedding", "matryoshka", "text-embedding-3", "nomic-embed-text-v1.5", "mxbai-embed", "jina-embeddings-v3")


def trained_for_matryoshka(model: str) -> bool:
    return any(family in model.lower() for family in MATRYOSHKA_FAMILIES)


def decode_token_ids(tokenizer: Any, ids: Sequence[int]) -> str:
    """The text of token ids in a Hugging Face tokenizer's vocabulary; ValueError naming an id outside it."""
    size = len(tokenizer)
    outside = next((token for token in ids if not 0 <= token < size), None)
    if outside is not None:
        raise ValueError(f"token id {outside} is not in the model's vocabulary (0 to {size - 1})")
    return tokenizer.decode(list(ids), skip_special_tokens=True)


def instructed_query(task: str, query: str) -> str:
    """Qwen3-Embedding's query format (from its model card); documents get no instruction."""
    return f"Instruct: {task}\nQuery:{query}"


def resolve_device(device: str) -> str:
    """"auto" means the first GPU when torch sees one, else the CPU; anything else is passed through."""
    if device != "auto":
        return device
    import torch  # here, not at module level: HTTP-only backends never need torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_cpu_threads(cores: int | None = None) -> int:
    """Threads one operation gets when PRISM_CPU_THREADS is unset: every core this process may use.

    With OpenMP's threads waiting passively (set_cpu_threads), a pool as wide as the machine no longer
    spins on cores that other work holds, and a lone bulk request (an ingest, /v1/embeddings, a batch
    of pictures) gets every core: on 2 cores, against half of them, 1.5 times the ingest throughput,
    2.52 instead of 2.31 times the one-client query rate at 32 clients, for 1.2 times the CPU per query
    (docs/BENCHMARKS.md, "Fast where users are")."""
    return max(1, cores or available_cores())


def set_cpu_threads(threads: int | None) -> int:
    """Size the process's thread pools for serving; None means default_cpu_threads(). Returns the count.

    One count for every pool that runs one operation: PyTorch's (and its MKL's), the BLAS libraries'
    (numpy's and faiss' OpenBLAS, through threadpoolctl) and OpenMP's; OPENBLAS_NUM_THREADS and
    OMP_NUM_THREADS are set in the environment for the libraries that load later (PyTorch reads them
    when it loads, faiss when Milvus Lite opens), and OMP_WAIT_POLICY=PASSIVE unless set otherwise: an
    OpenMP thread waiting for work then sleeps instead of spinning on a core that other work needs
    (docs/BENCHMARKS.md, "Threads"). Whisper's CTranslate2 gets the count from its config.
    Process-wide: call it once, at start, before the models load."""
    threads = threads or default_cpu_threads()
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[variable] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when an OpenMP runtime loads
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads, user_api="blas")  # not as a context manager: the limit stays
    torch = sys.modules.get("torch")  # not imported here: HTTP-only backends never need torch
    if torch is not None:
        torch.set_num_threads(threads)
    return threads


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
