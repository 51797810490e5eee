"""Client for any server that speaks OpenAI's `POST /embeddings` (SGLang, vLLM, TEI, OpenAI itself).

In production SGLang serves Qwen3-Embedding-4B on a GPU machine of its own. Failures are
loud and bounded: transient ones (connection refused, timeouts, 429, 5xx) are retried a few times with
a short exponential backoff, then the caller gets EncoderUnavailable; it never hangs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from encoders.base import EncoderError, EncoderInfo, instructed_query, truncate_dimensions
from encoders.config import TextEncoderConfig
from encoders.http import call_with_retries, http_client, ping
from encoders.tokens import regex_token_spans

PROBE_TEXT = "dimension probe"


class OpenAIEmbeddingsEncoder:
    """Embeds through `{config.base_url}/embeddings`. Thread-safe: httpx.Client is."""

    def __init__(self, config: TextEncoderConfig):
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.url = f"{self.base_url}/embeddings"
        self._client = http_client(config.api_key, config.timeout_s)
        # SGLang embeds the input exactly as given, and Qwen3-Embedding expects an instruction in front
        # of queries, so the client adds it. Other models either take no instruction or a different one
        # (e5's "query: ", BGE's own prompt), and adding Qwen's would hurt them: their queries go as is.
        self.instructs_queries = "qwen3-embedding" in config.model.lower() and bool(config.query_task)
        # Ask once at start-up: the caller sizes its vector store from info.dimension, and a server that
        # is down should stop the start-up with a clear error rather than fail the first request.
        try:
            dimension = self._embed([PROBE_TEXT]).shape[1]
        except Exception:
            self._client.close()
            raise
        self.info = EncoderInfo(
            name=config.model,
            backend="openai",
            dimension=dimension,
            max_tokens=config.max_length,  # the server's tokenizer is out of reach; trust the config
        )

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        if self.instructs_queries:
            texts = [instructed_query(self.config.query_task, text) for text in texts]
        return self._embed(list(texts))

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return regex_token_spans(text)

    def ping(self) -> None:
        ping(self._client, self.base_url, f"text encoder server at {self.base_url}")

    def close(self) -> None:
        self._client.close()

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        size = self.config.batch_size
        batches = [self._post_with_retries(texts[i : i + size]) for i in range(0, len(texts), size)]
        # Servers that ignore `dimensions` send full-length vectors: truncate here. Always re-normalise;
        # not every server returns unit vectors.
        return truncate_dimensions(np.concatenate(batches), self.config.dimensions)

    def _post_with_retries(self, texts: list[str]) -> np.ndarray:
        return call_with_retries(lambda: self._post(texts), f"text encoder server at {self.base_url}", self.config.max_retries)

    def _post(self, texts: list[str]) -> np.ndarray:
        body: dict = {"model": self.config.model, "input": texts, "encoding_format": "float"}
        if self.config.dimensions is not None:
            body["dimensions"] = self.config.dimensions
        response = self._client.post(self.url, json=body)
        response.raise_for_status()
        try:
            data = response.json()["data"]
        except (ValueError, KeyError, TypeError) as error:
            raise EncoderError(
                f"text encoder server at {self.base_url} sent no embeddings: {response.text[:500]}"
            ) from error
        if len(data) != len(texts):
            raise EncoderError(
                f"text encoder server at {self.base_url} returned {len(data)} vectors for {len(texts)} texts"
            )
        # The API does not promise that results come in input order; `index` says which is which.
        ordered = sorted(data, key=lambda item: item["index"])
        return np.asarray([item["embedding"] for item in ordered], dtype=np.float32)
