"""Client for any server that speaks OpenAI's `POST /embeddings` (SGLang, vLLM, TEI, OpenAI itself).

In production SGLang serves Qwen3-Embedding-4B on a GPU machine of its own. Failures are
loud and bounded: transient ones (connection refused, timeouts, 429, 5xx) are retried a few times with
a short exponential backoff, then the caller gets EncoderUnavailable; it never hangs.
"""

from __future__ import annotations

from typing import Sequence

import httpx
import numpy as np
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from encoders.base import (
    EncoderError,
    EncoderInfo,
    EncoderUnavailable,
    instructed_query,
    truncate_dimensions,
)
from encoders.config import TextEncoderConfig
from encoders.tokens import regex_token_spans

# Connecting to a live server on the same network takes milliseconds; waiting longer only delays the
# error when the server is down. Reading the answer gets the full config.timeout_s (long batches).
CONNECT_TIMEOUT_S = 3.0
# Backoff between retries: 0.2 s, 0.4 s, 0.8 s, ... at most 2 s, so three retries cost under 1.5 s.
FIRST_RETRY_WAIT_S = 0.2
MAX_RETRY_WAIT_S = 2.0
PROBE_TEXT = "dimension probe"


def is_transient(error: BaseException) -> bool:
    """Failures worth retrying: the server may be starting, overloaded, or briefly unreachable."""
    if isinstance(error, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)):
        return True
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status == 429 or status >= 500
    return False


def server_message(response: httpx.Response) -> str:
    """The error text of a failed response, from the usual error bodies (OpenAI, SGLang, FastAPI)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if key in body:
                return str(body[key])
    return str(body)[:500]


class OpenAIEmbeddingsEncoder:
    """Embeds through `{config.base_url}/embeddings`. Thread-safe: httpx.Client is."""

    def __init__(self, config: TextEncoderConfig):
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.url = f"{self.base_url}/embeddings"
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        timeout = httpx.Timeout(config.timeout_s, connect=min(CONNECT_TIMEOUT_S, config.timeout_s))
        self._client = httpx.Client(headers=headers, timeout=timeout)
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
        retrying = Retrying(
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=wait_exponential(multiplier=FIRST_RETRY_WAIT_S, max=MAX_RETRY_WAIT_S),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        try:
            return retrying(self._post, texts)
        except httpx.HTTPStatusError as error:
            status, message = error.response.status_code, server_message(error.response)
            if is_transient(error):
                raise EncoderUnavailable(
                    f"text encoder server at {self.base_url} answered {status} "
                    f"after {self.config.max_retries} retries: {message}"
                ) from error
            raise EncoderError(
                f"text encoder server at {self.base_url} refused the request ({status}): {message}"
            ) from error
        except httpx.TransportError as error:
            raise EncoderUnavailable(
                f"text encoder server at {self.base_url} is unreachable: {type(error).__name__}: {error}"
            ) from error

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
