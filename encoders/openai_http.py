"""Client for any server that speaks OpenAI's `POST /embeddings` (SGLang, vLLM, TEI, OpenAI itself).

In production SGLang serves Qwen3-Embedding-4B on a GPU machine of its own. Failures are loud and
bounded: transient ones (connection refused, timeouts, 429, 5xx) are retried with a short exponential
backoff within one deadline (PRISM_OPENAI_TIMEOUT_S), then the caller gets EncoderUnavailable; it never
hangs. An answer that is not a vector per text of the length the server gave at start (a missing or
ragged embedding, strings, NaN, a zero vector) is EncoderError naming the server and the fault, before
anything is stored.
"""

from __future__ import annotations

from typing import Any, Sequence

import httpx
import numpy as np

from encoders.base import EncoderError, EncoderInfo, instructed_query, trained_for_matryoshka, truncate_dimensions
from encoders.cancel import check_cancelled
from encoders.config import TextEncoderConfig
from encoders.http import call_with_retries, http_client, ping
from encoders.tokens import regex_token_spans

PROBE_TEXT = "dimension probe"
TIMEOUT_SETTING = "PRISM_OPENAI_TIMEOUT_S"


class MalformedAnswer(ValueError):
    """What is wrong with an embeddings answer (the client turns it into EncoderError)."""


class OpenAIEmbeddingsEncoder:
    """Embeds through `{config.base_url}/embeddings`. Thread-safe: httpx.Client is."""

    def __init__(self, config: TextEncoderConfig):
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.url = f"{self.base_url}/embeddings"
        self.server = f"text encoder server at {self.base_url}"
        self._client = http_client(config.api_key, config.timeout_s)
        # SGLang embeds the input exactly as given, and Qwen3-Embedding expects an instruction in front
        # of queries, so the client adds it. Other models either take no instruction or a different one
        # (e5's "query: ", BGE's own prompt), and adding Qwen's would hurt them: their queries go as is.
        self.instructs_queries = "qwen3-embedding" in config.model.lower() and bool(config.query_task)
        # How many values the server sends per vector: learnt from the probe, then required of every
        # answer (a server restarted with another model must not slip other vectors into the index).
        self._answer_length: int | None = None
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
            matryoshka=trained_for_matryoshka(config.model),
        )

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        if self.instructs_queries:
            texts = [instructed_query(self.config.query_task, text) for text in texts]
        return self._embed(list(texts))

    def embed_token_ids(self, id_lists: Sequence[Sequence[int]]) -> np.ndarray:
        """Token ids as they are, for the server to read in its own model's vocabulary (OpenAI's API allows
        them; a server that does not read them answers an error, raised as EncoderError naming it)."""
        return self._embed([list(ids) for ids in id_lists])  # type: ignore[list-item]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        check_cancelled()  # called per document while chunking: a cancelled ingest stops there too
        return regex_token_spans(text)

    def ping(self) -> None:
        ping(self._client, self.base_url, self.server)

    def close(self) -> None:
        self._client.close()

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        size = self.config.batch_size
        # call_with_retries checks for cancellation before each request: a client that left stops the
        # rest of the batches.
        batches = [self._post_with_retries(texts[i : i + size]) for i in range(0, len(texts), size)]
        # Servers that ignore `dimensions` send full-length vectors: truncate here. Always re-normalise;
        # not every server returns unit vectors.
        vectors = truncate_dimensions(np.concatenate(batches), self.config.dimensions)
        degenerate = np.flatnonzero(np.linalg.norm(vectors, axis=1) < 0.5)  # l2_normalize leaves zeros at zero
        if degenerate.size:
            kept = f" in its first {self.config.dimensions} values" if self.config.dimensions else ""
            raise EncoderError(
                f"{self.server} sent a zero vector{kept} for text {int(degenerate[0])} of {len(texts)}: it has no direction to compare"
            )
        return vectors

    def _post_with_retries(self, texts: list[str]) -> np.ndarray:
        return call_with_retries(lambda timeout: self._post(texts, timeout), self.server, self.config.max_retries, self.config.timeout_s, TIMEOUT_SETTING)

    def _post(self, texts: list[str], timeout: httpx.Timeout) -> np.ndarray:
        body: dict = {"model": self.config.model, "input": texts, "encoding_format": "float"}
        if self.config.dimensions is not None:
            body["dimensions"] = self.config.dimensions
        response = self._client.post(self.url, json=body, timeout=timeout)
        response.raise_for_status()
        try:
            vectors = vectors_from_answer(response.json(), len(texts), self._answer_length)
        except ValueError as error:  # MalformedAnswer, and json's JSONDecodeError
            raise EncoderError(f"{self.server} sent a malformed answer ({error}): {response.text[:300]}") from None
        if self._answer_length is None:
            if self.config.dimensions is not None and vectors.shape[1] < self.config.dimensions:
                raise EncoderError(
                    f"{self.server} sent vectors of {vectors.shape[1]} values, fewer than the {self.config.dimensions} dimensions asked for (PRISM_TEXT_DIMENSIONS)"
                )
            self._answer_length = vectors.shape[1]
        return vectors


def vectors_from_answer(body: Any, count: int, length: int | None) -> np.ndarray:
    """The vectors of an OpenAI embeddings answer to `count` texts, in input order, as float32 rows
    scaled to at most 1 (so that any finite answer survives float32 and normalisation). Raises
    MalformedAnswer unless there is exactly one finite vector of numbers per text, each `length`
    values long (when given) and all of one length."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise MalformedAnswer("no list of embeddings in `data`")
    if len(data) != count:
        raise MalformedAnswer(f"{len(data)} embeddings for {count} texts")
    rows: list[np.ndarray | None] = [None] * count
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            raise MalformedAnswer(f"data[{position}] is not an object")
        # The API does not promise that results come in input order; `index` says which is which.
        index = item.get("index", position)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count or rows[index] is not None:
            raise MalformedAnswer(f"data[{position}] has a bad or repeated index {index!r} for {count} texts")
        if "embedding" not in item:
            raise MalformedAnswer(f"data[{position}] has no `embedding`")
        rows[index] = _number_row(item["embedding"], f"data[{position}].embedding")
    lengths = sorted({len(row) for row in rows})
    if len(lengths) > 1:
        raise MalformedAnswer(f"vectors of different lengths ({', '.join(map(str, lengths))} values)")
    if length is not None and lengths[0] != length:
        raise MalformedAnswer(f"vectors of {lengths[0]} values, expected {length} (the length it sent at start)")
    matrix = np.stack(rows)
    scale = np.max(np.abs(matrix), axis=1, keepdims=True)
    return (matrix / np.where(scale > 0, scale, 1.0)).astype(np.float32)


def _number_row(value: Any, label: str) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise MalformedAnswer(f"{label} is not a list of numbers")  # e.g. a base64 string, or null
    try:
        row = np.array(value)
    except ValueError:  # nested lists of different lengths
        raise MalformedAnswer(f"{label} is not a list of numbers") from None
    if row.ndim != 1 or row.dtype.kind not in "iuf":  # strings, null, booleans, nested lists
        raise MalformedAnswer(f"{label} is not a list of numbers")
    row = row.astype(np.float64)
    if not np.all(np.isfinite(row)):
        raise MalformedAnswer(f"{label} holds values that are not finite (NaN or infinity)")
    return row
