"""OpenAI-compatible request and response bodies for /v1/embeddings and /v1/models."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from api.schemas import Checked

MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit per request
MAX_TOKEN_IDS = 65536  # per input given as token ids (far above any model's limit; bounds the request)

TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]
TokenIds = Annotated[list[TokenId], Field(min_length=1, max_length=MAX_TOKEN_IDS)]


class EmbeddingsIn(Checked):  # not Strict: OpenAI clients may send fields Prism does not use
    input: (
        str
        | Annotated[list[str], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
        | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    ) = Field(
        description="Text, a list of texts, token ids, or a list of token-id lists, as in OpenAI's API: at most 2048 inputs, each text at most "
        "PRISM_MAX_DOCUMENT_CHARS characters (413 above). Token ids are read in the served model's vocabulary (decoded in-process, or "
        "passed to the embeddings server as they are). An input longer than the model reads is refused (400) unless `truncate` is true.",
    )
    model: str = Field("default", max_length=512, description="A model id from GET /v1/models; `default` always works.")
    dimensions: int | None = Field(
        None, ge=1, le=65536, description="Matryoshka: return only this many dimensions, re-normalised; 400 for a model not trained for it."
    )
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["document", "query"] = Field(
        "document", description="Prism extension: `query` adds the query instruction (Qwen3-Embedding)."
    )
    truncate: bool = Field(
        False, description="Prism extension (as TEI's): embed the first tokens of an input longer than the model reads instead of refusing it."
    )
    user: str | None = Field(None, max_length=512)


class EmbeddingOut(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingOut]
    model: str
    usage: dict[str, int]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "prism"


class ModelsOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
