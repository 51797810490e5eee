"""The inputs of the OpenAI-compatible embeddings endpoint, made into texts the model reads whole.

OpenAI's API takes texts or token ids (a list of ids, or a list of such lists); token ids are read in
the served model's own vocabulary: an in-process backend decodes them with its tokenizer, the openai
backend passes them to its embeddings server as they are (vLLM and OpenAI read them; a server that
does not answers an error, reported as 502 naming it). An input longer than the model reads is
refused, naming the limit, unless the request asked for truncation: then it is cut at the last token
the model reads. Either way the token count is what was embedded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from encoders import TextEncoder
from retrieval.errors import InvalidInput

if TYPE_CHECKING:
    from retrieval.library import Library

TokenIds = Sequence[int]


@dataclass(frozen=True)
class EmbeddingInputs:
    texts: list[str]
    tokens: int  # tokens embedded, all inputs together (without the model's special tokens)


def input_token_limit(encoder: TextEncoder) -> int:
    """Tokens of text one input may have: the model's maximum less the special tokens it adds."""
    return max(1, encoder.info.max_tokens - encoder.info.special_tokens)


def embed_inputs(
    library: Library, inputs: Sequence[Any], labels: Sequence[str], *, truncate: bool, dimensions: int | None, as_query: bool,
    check_texts: Callable[[list[tuple[str, str]]], None],
) -> tuple[np.ndarray, int]:  # fmt: skip
    """The vectors of texts or token-id inputs, and the tokens embedded. `check_texts`: the request's text limits."""
    encoder = library.encoder
    if isinstance(inputs[0], str) or hasattr(encoder, "decode_tokens"):
        texts = list(inputs) if isinstance(inputs[0], str) else decode_inputs(encoder, inputs, labels)
        check_texts(list(zip(labels, texts)))
        fitted = fit_inputs(encoder, texts, labels, truncate)
        return library.embed(fitted.texts, dimensions=dimensions, as_query=as_query), fitted.tokens
    if not hasattr(encoder, "embed_token_ids"):
        raise InvalidInput(f"token ids need the model's tokenizer, which {encoder.info.name} ({encoder.info.backend} backend) does not offer: send text")
    if as_query and getattr(encoder, "instructs_queries", False):
        raise InvalidInput('input_type "query" puts an instruction in front of the text, which token ids cannot take: send the query as text')
    limit, id_lists, tokens = input_token_limit(encoder), [], 0
    for label, ids in zip(labels, inputs):
        if len(ids) > limit and not truncate:
            raise InvalidInput(too_long(label, len(ids), encoder, limit))
        id_lists.append(list(ids[:limit]))
        tokens += len(id_lists[-1])
    return library.embed_token_ids(id_lists, dimensions=dimensions), tokens


def too_long(label: str, tokens: int, encoder: TextEncoder, limit: int) -> str:
    return (
        f"{label} has {tokens} tokens, and {encoder.info.name} reads at most {limit} per input: "
        f'send shorter inputs, or set "truncate": true to embed the first {limit} tokens of each'
    )


def decode_inputs(encoder: TextEncoder, inputs: Sequence[TokenIds], labels: Sequence[str]) -> list[str]:
    """The texts of token-id inputs, in the served model's vocabulary (decode_tokens)."""
    decode = encoder.decode_tokens  # type: ignore[attr-defined]
    texts = []
    for label, ids in zip(labels, inputs):
        try:
            texts.append(decode(ids))
        except ValueError as error:
            raise InvalidInput(f"{label}: {error}") from None
    return texts


def fit_inputs(encoder: TextEncoder, texts: Sequence[str], labels: Sequence[str], truncate: bool) -> EmbeddingInputs:
    """The texts as the model reads them whole (cut when `truncate`, else 400 naming the limit), and the tokens embedded."""
    limit = input_token_limit(encoder)
    fitted, tokens = [], 0
    for label, text in zip(labels, texts):
        if not text.strip():
            raise InvalidInput(f"{label} is empty: every input must have some text")
        spans = encoder.token_spans(text)
        if len(spans) > limit:
            if not truncate:
                raise InvalidInput(too_long(label, len(spans), encoder, limit))
            text, spans = text[: spans[limit - 1][1]], spans[:limit]
        fitted.append(text)
        tokens += len(spans)
    return EmbeddingInputs(fitted, tokens)
