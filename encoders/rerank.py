"""Rerankers: score (query, document) pairs jointly, after recall, to reorder a short candidate list.

One protocol, one config, one registry and one factory, like the text encoders:

- "qwen3": Qwen3-Reranker. In-process with transformers (encoders/rerank_qwen3.py), or, when
  `base_url` is set, over HTTP from an SGLang server's `/v1/rerank` (encoders/rerank_http.py).
- "cross-encoder": any sentence-transformers CrossEncoder directory (encoders/rerank_cross.py).
- "none": no reranker; `create_reranker` returns None.

Backends are imported only when chosen: the in-process ones pull in torch and transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, Sequence

import numpy as np

from encoders.base import ModelNotFound, import_class

DEFAULT_RERANK_MODEL = "Qwen/Qwen3-Reranker-0.6B"
# The instruction of Qwen3-Reranker's model card (its `format_instruction` default), without a final period.
DEFAULT_RERANK_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


@dataclass(frozen=True)
class RerankerConfig:
    backend: Literal["qwen3", "cross-encoder", "none"] = "qwen3"
    model: str = DEFAULT_RERANK_MODEL  # hub id, local dir, or the served model name when base_url is set
    base_url: str | None = None  # qwen3 over HTTP: an SGLang server, e.g. http://host:30001/v1 (POST {base_url}/rerank)
    api_key: str | None = None
    instruction: str = DEFAULT_RERANK_INSTRUCTION  # qwen3 only
    max_length: int = 1024  # tokens per (query, document) pair; longer documents are truncated
    batch_size: int = 8  # pairs per forward pass / per HTTP request
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    timeout_s: float = 30.0  # HTTP only
    max_retries: int = 3  # HTTP only


@dataclass(frozen=True)
class RerankerInfo:
    """What a loaded reranker is, for `GET /v1/info` and logs."""

    name: str  # model id or path as configured (the served model name over HTTP)
    backend: str  # "qwen3" | "qwen3-http" | "cross-encoder"


class Reranker(Protocol):
    """Scores documents against one query: one float per document, same order, higher = more relevant.

    Scores are comparable within one call and across calls to the same reranker, never across rerankers.
    Thread-safe: the server calls it from several request threads.
    """

    info: RerankerInfo

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray: ...


# Backends by RerankerInfo.backend, imported only when chosen.
RERANKERS = {
    "qwen3": "encoders.rerank_qwen3:Qwen3Reranker",
    "qwen3-http": "encoders.rerank_http:SGLangReranker",
    "cross-encoder": "encoders.rerank_cross:CrossEncoderReranker",
}
BACKENDS = ("qwen3", "cross-encoder", "none")


def create_reranker(config: RerankerConfig) -> Reranker | None:
    """The reranker `config` asks for; None for backend "none".

    Raises ModelNotFound when in-process weights cannot be had (a message says which model and why),
    ValueError for a config that cannot work. A remote server is not contacted here: one that is down
    raises EncoderUnavailable from `score`, so it cannot stop the server from starting.
    """
    if config.backend not in BACKENDS:
        raise ValueError(f"unknown reranker backend {config.backend!r}; choose one of {list(BACKENDS)}")
    if config.backend == "none":
        return None
    if config.batch_size < 1:
        raise ValueError(f"reranker batch_size must be at least 1, not {config.batch_size}")
    if config.base_url and config.backend != "qwen3":
        raise ValueError(f"base_url is for the qwen3 backend (an SGLang server), not for {config.backend!r}")
    backend = "qwen3-http" if config.backend == "qwen3" and config.base_url else config.backend
    return import_class(RERANKERS[backend])(config)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of at most `batch_size`, longest first, so that similar lengths share a batch
    (little padding) and running out of memory shows on the first batch, not the last."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def resolve_reranker_dir(model: str) -> Path:
    """The directory holding a reranker's files: a directory, `pip:<package>`, the HF cache or the hub.

    Raises ModelNotFound, saying that this is the reranker's model and how to do without it.
    """
    # Here, not at the top: settings import this module for RerankerConfig, and huggingface_hub takes 0.3 s.
    from encoders.hub import PIP_PREFIX, resolve_model_or_package_dir

    try:
        path = resolve_model_or_package_dir(model)
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"{str(path)!r} has no config.json: it is not a model directory")
    except ModelNotFound as error:
        looks_like_hub_id = not model.startswith((PIP_PREFIX, "/", ".", "~")) and model.count("/") == 1
        remedy = f"download it (hf download {model})" if looks_like_hub_id else "check the name"
        raise ModelNotFound(
            f"reranker model unavailable: {error}. To use it, {remedy}; to search without reranking, "
            f'choose the reranker backend "none".'
        ) from error
    return path
