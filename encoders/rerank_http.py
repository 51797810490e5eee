"""Client for SGLang's `POST /v1/rerank`, serving Qwen3-Reranker on a GPU machine of its own.

The protocol, as verified in SGLang's source (python/sglang/srt/entrypoints/openai/protocol.py:
V1RerankReqInput, RerankResponse; serving_rerank.py) and docs (docs/supported_models/retrieval_ranking/
rerank_models.md):
- request: {"model", "query": str, "documents": [str], "instruct": str (optional), "top_n" (optional),
  "return_documents": bool (default true)}; SGLang refuses an empty or blank query or document (400).
- response: a JSON list of {"score": float, "index": int (position in `documents`), "document"
  (only with return_documents), "meta_info" (optional)}, sorted by descending score, not input order.
- For Qwen3-Reranker (launched without --is-embedding, with --chat-template
  examples/chat_template/qwen3_reranker.jinja) it renders that template with `instruct` and scores
  P(yes) / (P(yes) + P(no)) at the next token: the in-process backend's score. Its template is SGLang's
  own; if it differs from the model card's prompt (versions seen end the assistant turn without the
  empty think block), scores differ slightly between the two backends.
Results are mapped back to input order by `index`. Cohere-style answers ({"results": [{"index",
"relevance_score"}]}, as vLLM and TEI send) are read too.

Failures are loud and bounded, as in encoders/http.py: transient ones are retried a few times with
a short exponential backoff, all within one deadline per request (PRISM_RERANK_TIMEOUT_S), then
EncoderUnavailable names the server; a malformed answer is EncoderError.
"""

from __future__ import annotations

import math
from typing import Sequence

import httpx
import numpy as np

from encoders.base import EncoderError
from encoders.http import call_with_retries, http_client, ping
from encoders.rerank import RerankerConfig, RerankerInfo

# What a blank document scores without being sent (SGLang refuses blank documents): the lowest P(yes).
BLANK_DOCUMENT_SCORE = 0.0


class SGLangReranker:
    """Scores through `{config.base_url}/rerank`. Thread-safe: httpx.Client is."""

    def __init__(self, config: RerankerConfig):
        if not config.base_url:
            raise ValueError("the HTTP reranker needs base_url, e.g. http://host:30001/v1")
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.url = f"{self.base_url}/rerank"
        self._client = http_client(config.api_key, config.timeout_s)
        self.info = RerankerInfo(name=config.model, backend="qwen3-http")

    def ping(self) -> None:
        ping(self._client, self.base_url, f"reranker server at {self.base_url}")

    def close(self) -> None:
        self._client.close()

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        documents = list(documents)
        scores = np.full(len(documents), BLANK_DOCUMENT_SCORE, dtype=np.float32)
        sent = [i for i, document in enumerate(documents) if document.strip()]
        size = self.config.batch_size
        for start in range(0, len(sent), size):
            batch = sent[start : start + size]
            scores[batch] = self._post_with_retries(query, [documents[i] for i in batch])
        return scores

    def _post_with_retries(self, query: str, documents: list[str]) -> np.ndarray:
        return call_with_retries(
            lambda timeout: self._post(query, documents, timeout),
            f"reranker server at {self.url}",
            self.config.max_retries,
            self.config.timeout_s,
            "PRISM_RERANK_TIMEOUT_S",
        )

    def _post(self, query: str, documents: list[str], timeout: httpx.Timeout) -> np.ndarray:
        body = {
            "model": self.config.model,
            "query": query,
            "documents": documents,
            "instruct": self.config.instruction,
            "return_documents": False,  # they are ours already: do not send them back
        }
        response = self._client.post(self.url, json=body, timeout=timeout)
        response.raise_for_status()
        return self._parse(response, len(documents))

    def _parse(self, response: httpx.Response, count: int) -> np.ndarray:
        def malformed(why: str) -> EncoderError:
            return EncoderError(f"reranker server at {self.url} sent a malformed answer ({why}): {response.text[:500]}")

        try:
            body = response.json()
        except ValueError:
            raise malformed("not JSON") from None
        items = body.get("results") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise malformed("no list of results")
        scores = np.full(count, np.nan, dtype=np.float64)
        for item in items:
            if not isinstance(item, dict):
                raise malformed("a result is not an object")
            index, value = item.get("index"), item.get("score", item.get("relevance_score"))
            if not isinstance(index, int) or not 0 <= index < count or not math.isnan(scores[index]):
                raise malformed(f"bad or repeated index {index!r} for {count} documents")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise malformed(f"score {value!r} is not a finite number")
            scores[index] = value
        if np.isnan(scores).any():
            raise malformed(f"{int(np.isnan(scores).sum())} of {count} documents have no score")
        return scores.astype(np.float32)
