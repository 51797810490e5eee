"""Client for any OpenAI-compatible chat server (SGLang, vLLM, llama.cpp's server, Ollama): the
`openai` answer backend.

Answers are streamed (`"stream": true`), so the first words reach the reader as the server writes
them. The embeddings client's rules hold (encoders/http.py): connection errors, timeouts, 429 and 5xx
before the first word are retried with backoff within one deadline (PRISM_ANSWER_TIMEOUT_S), then the
caller gets GeneratorUnavailable (503) naming the server; a refusal (4xx) or an answer that is not a
chat completion stream is GeneratorError (502). Once words have been sent on, nothing is retried: a
server that stops sending for the deadline ends the answer with GeneratorUnavailable.

The server's tokenizer is out of reach, so prompt sizes are counted with encoders/tokens.py's
approximation, which errs towards more tokens. The context window is PRISM_ANSWER_CONTEXT_TOKENS, or
what the server reports in /v1/models (vLLM and SGLang: max_model_len; llama.cpp: n_ctx_train).
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Sequence

import httpx

from encoders.base import EncoderError, EncoderUnavailable
from encoders.cancel import check_cancelled
from encoders.generate import GeneratorConfig, GeneratorError, GeneratorInfo, GeneratorUnavailable, Message
from encoders.http import PING_TIMEOUT_S, attempt_timeout, call_with_retries, http_client, server_message
from encoders.tokens import regex_token_spans

TIMEOUT_SETTING = "PRISM_ANSWER_TIMEOUT_S"
DEFAULT_CONTEXT_TOKENS = 8192
TOKENS_PER_MESSAGE = 8  # role markers and separators of a chat template, counted generously


class OpenAIChatGenerator:
    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.server = f"answer server at {self.base_url}"
        self._client = http_client(config.api_key, config.timeout_s)
        context = config.context_tokens or self._served_context() or DEFAULT_CONTEXT_TOKENS
        self.info = GeneratorInfo(name=config.model, backend="openai", context_tokens=context)

    def _served_context(self) -> int | None:
        """The context window the server reports for the model, if it reports one (asked once, within
        a readiness ping's time). A server that is down is no reason to fail here: the answer reports it."""
        try:
            response = self._client.get(f"{self.base_url}/models", timeout=attempt_timeout(min(PING_TIMEOUT_S, self.config.timeout_s)))
            models = response.json().get("data", []) if response.is_success else []
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        for card in models if isinstance(models, list) else []:
            if not isinstance(card, dict):
                continue
            for value in (card.get("max_model_len"), (card.get("meta") or {}).get("n_ctx_train") if isinstance(card.get("meta"), dict) else None):
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
        return None

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        return sum(self.text_tokens(message["content"]) + TOKENS_PER_MESSAGE for message in messages) + TOKENS_PER_MESSAGE

    def text_tokens(self, text: str) -> int:
        return len(regex_token_spans(text))

    def stream(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> Iterator[str]:
        body = {"model": self.config.model, "messages": list(messages), "max_tokens": max_tokens, "temperature": temperature, "stream": True}
        try:
            response = call_with_retries(lambda timeout: self._open(body, timeout), self.server, self.config.max_retries, self.config.timeout_s, TIMEOUT_SETTING)
        except (GeneratorError, GeneratorUnavailable):
            raise
        except EncoderUnavailable as error:
            raise GeneratorUnavailable(str(error)) from error
        except EncoderError as error:
            raise GeneratorError(str(error)) from error
        try:
            yield from self._pieces(response)
        except httpx.TimeoutException as error:
            raise GeneratorUnavailable(f"{self.server} stopped sending for {self.config.timeout_s:g} s in the middle of an answer (raise {TIMEOUT_SETTING})") from error
        except httpx.TransportError as error:
            raise GeneratorUnavailable(f"{self.server} broke off the answer: {type(error).__name__}: {error}") from error
        finally:
            response.close()

    def _open(self, body: dict[str, Any], timeout: httpx.Timeout) -> httpx.Response:
        """Send the request and wait for the answer's head (the server has started); raises
        httpx.HTTPStatusError for an error status, as call_with_retries expects."""
        request = self._client.build_request("POST", self.url, json=body, timeout=timeout)
        response = self._client.send(request, stream=True)
        if response.status_code >= 400:
            response.read()
            response.close()
            response.raise_for_status()
        return response

    def _pieces(self, response: httpx.Response) -> Iterator[str]:
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            # Some servers ignore `stream` and send one completion: take its text.
            response.read()
            yield self._whole_answer(response)
            return
        for line in response.iter_lines():
            check_cancelled()  # the client left: stop reading (closing the response ends the server's work)
            if not line.startswith("data:"):
                continue  # comments, event names, keep-alives
            data = line[5:].strip()
            if data == "[DONE]":
                return
            piece = self._delta(data)
            if piece:
                yield piece

    def _delta(self, data: str) -> str:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise GeneratorError(f"{self.server} sent a stream event that is not JSON: {data[:200]}") from None
        if isinstance(chunk, dict) and "error" in chunk:
            raise GeneratorError(f"{self.server} failed in the middle of the answer: {str(chunk['error'])[:300]}")
        try:
            choices = chunk["choices"]
            if not choices:
                return ""  # e.g. a final usage chunk
            content = choices[0].get("delta", {}).get("content")
        except (KeyError, TypeError, AttributeError, IndexError):
            raise GeneratorError(f"{self.server} sent a stream event that is not a chat completion chunk: {data[:200]}") from None
        if content is not None and not isinstance(content, str):
            raise GeneratorError(f"{self.server} sent a chunk whose content is not text: {data[:200]}")
        return content or ""

    def _whole_answer(self, response: httpx.Response) -> str:
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, TypeError, IndexError):
            raise GeneratorError(f"{self.server} sent something that is not a chat completion: {server_message(response)[:300]}") from None
        if not isinstance(content, str):
            raise GeneratorError(f"{self.server} sent a chat completion without text content")
        return content

    def close(self) -> None:
        self._client.close()
