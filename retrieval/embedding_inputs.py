"""The inputs of the OpenAI-compatible embeddings endpoint, made into texts the model reads whole.

OpenAI's API takes texts or token ids (a list of ids, or a list of such lists); token ids are read in
the served model's own vocabulary, which only an in-process backend has at hand. An input longer than
the model reads is refused, naming the limit, unless the request asked for truncation: then it is cut
at the last token the model reads. Either way the token count is what was embedded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from encoders import TextEncoder
from retrieval.errors import InvalidInput

TokenIds = Sequence[int]


@dataclass(frozen=True)
class EmbeddingInputs:
    texts: list[str]
    tokens: int  # tokens embedded, all inputs together (without the model's special tokens)


def input_token_limit(encoder: TextEncoder) -> int:
    """Tokens of text one input may have: the model's maximum less the special tokens it adds."""
    return max(1, encoder.info.max_tokens - encoder.info.special_tokens)


def decode_inputs(encoder: TextEncoder, inputs: Sequence[TokenIds], labels: Sequence[str]) -> list[str]:
    """The texts of token-id inputs, in the served model's vocabulary."""
    decode = getattr(encoder, "decode_tokens", None)
    if decode is None:
        raise InvalidInput(
            f"token ids need the model's tokenizer, and {encoder.info.name} runs on an embeddings server ({encoder.info.backend} backend) "
            "whose tokenizer Prism does not have: send the input as text"
        )
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
                raise InvalidInput(
                    f"{label} has {len(spans)} tokens, and {encoder.info.name} reads at most {limit} per input: "
                    f'send shorter inputs, or set "truncate": true to embed the first {limit} tokens of each'
                )
            text, spans = text[: spans[limit - 1][1]], spans[:limit]
        fitted.append(text)
        tokens += len(spans)
    return EmbeddingInputs(fitted, tokens)
