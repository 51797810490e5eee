"""OpenAI-compatible embeddings, so existing OpenAI clients can use Prism's text model directly."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Depends, Request

from api.errors import error_responses
from api.routes.chat import answer_model_ids
from api.routes.deps import get_library, get_text_limits
from api.openai_schemas import EmbeddingOut, EmbeddingsIn, EmbeddingsOut, ModelCard, ModelsOut
from retrieval import Library, NotFound
from retrieval.embedding_inputs import embed_inputs
from retrieval.validation import TextLimits

router = APIRouter(prefix="/v1", tags=["openai"])

DEFAULT_MODEL_ID = "default"


def model_ids(library: Library) -> list[str]:
    return [DEFAULT_MODEL_ID, library.text_model.name]


@router.get("/models", response_model=ModelsOut, summary="Models accepted by /v1/embeddings, and the answer models of /v1/chat/completions")
def list_models(request: Request, library: Library = Depends(get_library)) -> ModelsOut:
    answer_models = answer_model_ids(library) if request.app.state.generators.enabled else []
    return ModelsOut(data=[ModelCard(id=model_id) for model_id in model_ids(library) + answer_models])


@router.post(
    "/embeddings",
    response_model=EmbeddingsOut,
    summary="Create embeddings (OpenAI-compatible)",
    responses=error_responses(400, 404, 413, 502),
)
def create_embeddings(
    body: EmbeddingsIn, library: Library = Depends(get_library), limits: TextLimits = Depends(get_text_limits)
) -> EmbeddingsOut:
    """Documents get no instruction; `input_type: "query"` adds the query instruction. At most 2048
    inputs, texts or token ids; texts at most PRISM_MAX_DOCUMENT_CHARS characters each and
    PRISM_MAX_REQUEST_TEXT_CHARS together. An input longer than the model reads is refused unless
    `truncate` is true; `usage` counts the tokens embedded."""
    if body.model not in model_ids(library):
        raise NotFound(f"model {body.model!r} is not served here; GET /v1/models lists {model_ids(library)}")
    single = isinstance(body.input, str) or (bool(body.input) and isinstance(body.input[0], int))
    inputs = [body.input] if single else list(body.input)
    labels = ["input"] if single else [f"input[{index}]" for index in range(len(inputs))]
    vectors, tokens = embed_inputs(
        library, inputs, labels, truncate=body.truncate, dimensions=body.dimensions, as_query=body.input_type == "query", check_texts=limits.check_texts
    )
    data = [EmbeddingOut(index=i, embedding=encode(vector, body.encoding_format)) for i, vector in enumerate(vectors)]
    return EmbeddingsOut(data=data, model=library.text_model.name, usage={"prompt_tokens": tokens, "total_tokens": tokens})


def encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # little-endian float32, as OpenAI's clients decode it
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.tolist()
