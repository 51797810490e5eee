"""One registry of text encoder backends, and the one function that builds an encoder from a config.

When the requested model cannot be had (no local copy, not cached, hub unreachable) and the config names
a fallback model, the fallback is loaded instead, loudly: a WARNING is logged, and the encoder's info
says which model was requested and why it was replaced, so `GET /v1/info` shows it too.
"""

from __future__ import annotations

import dataclasses
import logging

from encoders.base import ModelNotFound, TextEncoder, import_class
from encoders.config import TextEncoderConfig

logger = logging.getLogger(__name__)

# Backends by name, imported only when chosen: the in-process ones pull in torch and transformers
# (seconds of start-up), which neither `prism --help` nor an SGLang-backed deployment needs.
TEXT_ENCODERS = {
    "local": "encoders.local:LocalQwen3Encoder",
    "openai": "encoders.openai_http:OpenAIEmbeddingsEncoder",
    "sentence-transformers": "encoders.sentence_tf:SentenceTransformerEncoder",
}


def backend_class(backend: str) -> type:
    return import_class(TEXT_ENCODERS[backend])

# Backends that run the model in this process (the others call a server that batches for itself).
IN_PROCESS_BACKENDS = frozenset({"local", "sentence-transformers"})

# A remote server that is down raises EncoderUnavailable, not ModelNotFound: swapping in a small local
# model there would silently change the vector space of a production index. Only in-process backends,
# whose weights may simply be missing, fall back.
BACKENDS_WITH_FALLBACK = IN_PROCESS_BACKENDS


def create_text_encoder(config: TextEncoderConfig) -> TextEncoder:
    if config.backend not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder backend {config.backend!r}; choose one of {sorted(TEXT_ENCODERS)}")
    try:
        return backend_class(config.backend)(config)
    except ModelNotFound as error:
        if config.fallback_model is None or config.backend not in BACKENDS_WITH_FALLBACK:
            raise
        return _load_fallback(config, reason=str(error))


def _load_fallback(config: TextEncoderConfig, reason: str) -> TextEncoder:
    logger.warning(
        "text model %r cannot be loaded (%s); using the fallback model %r instead. Its vectors are not "
        "comparable with those of %r: re-index after installing the requested model.",
        config.model,
        reason,
        config.fallback_model,
        config.model,
    )
    fallback_config = dataclasses.replace(
        config,
        backend="sentence-transformers",
        model=config.fallback_model,
        dimensions=None,  # sized for the requested model; the fallback keeps its own (info says which)
        fallback_model=None,  # a missing fallback is an error, not a reason to look further
    )
    encoder = backend_class("sentence-transformers")(fallback_config)
    encoder.info = dataclasses.replace(encoder.info, requested=config.model, fallback_reason=reason)
    return encoder
