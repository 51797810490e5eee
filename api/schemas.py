"""Typed request and response bodies; their descriptions are what /docs shows.

Every limit that does not depend on settings is in these models, so the published schema says it:
a request the schema allows is never refused with 422. Settings-dependent limits
(PRISM_MAX_DOCUMENT_CHARS and the like) are checked by the routes (413) and described here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from retrieval import CollectionInfo, Hit, Item
from retrieval.validation import COLLECTION_NAME_PATTERN, MAX_ID_BYTES, MAX_METADATA_KEYS, MAX_SOURCE_BYTES, MAX_TITLE_BYTES, json_problem

COLLECTION_PATTERN = f"^{COLLECTION_NAME_PATTERN}$"  # anchored: JSON Schema and pydantic patterns search
COLLECTION_DESCRIPTION = "1-128 letters, digits, '_', '-' or '.', starting with a letter or digit."
MAX_QUERY_CHARS = 65536  # a query is a question, not a document
MAX_CAPTION_CHARS = 4096
METADATA_DESCRIPTION = (
    "Free JSON metadata, returned with results and filterable: at most 8 levels deep, 256 keys in all and "
    "64 KiB as JSON; integers within 64 bits."
)


class Checked(BaseModel):
    """Every request body: numbers are finite (Python's JSON parser reads NaN and Infinity), and no
    string, key or value anywhere in it is a lone UTF-16 surrogate (JSON "\\ud800"), which no store
    or encoder can take."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def plain_json(cls, data: Any) -> Any:
        problem = json_problem(data, "")
        if problem:
            raise PydanticCustomError("invalid_json_value", "{problem}", {"problem": problem})
        return data


class Strict(Checked):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a misspelt field is an error, not silently ignored


def collection_field(description: str) -> Any:
    return Field("default", pattern=COLLECTION_PATTERN, max_length=128, description=f"{description} {COLLECTION_DESCRIPTION}")


# Documents


class DocumentIn(Strict):
    id: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_ID_BYTES,
        description="Stable document id; re-ingesting the same id replaces its chunks. Default: a hash of the text. "
        "At most 512 bytes in UTF-8; not blank, no leading or trailing whitespace, no control characters, "
        "and no empty, '.' or '..' segments between slashes (e.g. `notes/2024/owls.md` is fine).",
    )
    text: str = Field(description="The document's text; at most PRISM_MAX_DOCUMENT_CHARS characters (413 above).")
    title: str | None = Field(None, max_length=MAX_TITLE_BYTES, description="At most 1024 bytes in UTF-8.")
    source: str | None = Field(None, max_length=MAX_SOURCE_BYTES, description="Where the text came from, e.g. a file name. Filterable. At most 1024 bytes in UTF-8.")
    metadata: dict[str, Any] = Field(default_factory=dict, description=METADATA_DESCRIPTION, json_schema_extra={"maxProperties": MAX_METADATA_KEYS})


class DocumentsIn(Strict):
    collection: str = collection_field("Collection to add to; created on first use.")
    documents: list[DocumentIn] = Field(
        min_length=1,
        description="At most PRISM_MAX_DOCUMENTS_PER_REQUEST documents, and PRISM_MAX_REQUEST_TEXT_CHARS characters of text in all (413 above).",
    )


class IngestOut(BaseModel):
    ids: list[str] = Field(description="Document ids (of pictures: their item ids), in request order.")
    chunks: int = Field(description="Items written: chunks, transcript windows or pictures.")
    embedded: int = Field(description="Distinct texts and pictures the encoders embedded.")
    reused: int = Field(description="Items whose vector was already known from identical content.")
    timings_ms: dict[str, float]


# Images


class ImageIn(Strict):
    data: str = Field(min_length=1, description="The picture's bytes, base64-encoded: JPEG, PNG, WebP, GIF, BMP or TIFF.")
    filename: str | None = Field(None, max_length=MAX_SOURCE_BYTES, description="Its file name, kept as `source`.")
    caption: str | None = Field(None, max_length=MAX_CAPTION_CHARS, description="A caption or alt text, searchable as text.")
    metadata: dict[str, Any] = Field(default_factory=dict, description=METADATA_DESCRIPTION, json_schema_extra={"maxProperties": MAX_METADATA_KEYS})


class ImagesIn(Strict):
    collection: str = collection_field("Collection to add to; created on first use.")
    images: list[ImageIn] = Field(min_length=1)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its nested models written out, for a request body that FastAPI
    cannot declare itself (a route taking JSON or multipart)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


class DeletedOut(BaseModel):
    deleted: int = Field(description="Items removed.")


# Search


def _exactly_one_query(schema: dict[str, Any]) -> None:
    """Say in the schema what the validator enforces: exactly one of the three is a string, the
    others are absent or null."""
    names = ("text", "image", "audio")
    schema["oneOf"] = [
        {"required": [name], "properties": {other: ({"type": "string"} if other == name else {"type": "null"}) for other in names}}
        for name in names
    ]


class QueryIn(Strict):
    """Exactly one of `text`, `image` or `audio`."""

    model_config = ConfigDict(json_schema_extra=_exactly_one_query)

    text: str | None = Field(None, max_length=MAX_QUERY_CHARS, description="Text to search for; finds pictures too (CLIP's text tower, and captions).")
    image: str | None = Field(None, min_length=1, description="A base64-encoded picture: finds pictures that look like it.")
    audio: str | None = Field(None, min_length=1, description="A base64-encoded audio clip; its transcript is the query.")

    @model_validator(mode="after")
    def exactly_one(self) -> "QueryIn":
        given = [name for name in ("text", "image", "audio") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of text, image or audio (got {', '.join(given) or 'none'})")
        return self


Modality = Literal["text", "image", "audio"]


class FusionIn(Strict):
    method: Literal["rrf", "weighted"] = Field("rrf", description="rrf: reciprocal rank fusion (sum of weight / (k + rank)); weighted: sum of weight * cosine.")
    k: int = Field(60, ge=1, le=1_000_000, description="The RRF constant.")
    weights: dict[str, float] = Field(default_factory=dict, description='Per-route weights (finite numbers), e.g. {"text->caption": 0.5}; a route not named weighs 1.')


class SearchIn(Strict):
    query: QueryIn
    modalities: list[Modality] | None = Field(None, description="Which kinds of items to return; default all.")
    fusion: FusionIn = Field(default_factory=FusionIn, description="How the lists of several routes are merged.")
    per_modality_limit: int | None = Field(None, ge=1, le=1000, description="At most this many results of one modality.")
    rerank: bool = Field(False, description="Rerank the best fused candidates on their text with the configured reranker.")
    rerank_top_n: int = Field(50, ge=1, le=1000, description="How many fused candidates the reranker reads.")
    language: str | None = Field(None, max_length=16, description="Language of an audio query (e.g. en); default: detected.")
    collection: str = collection_field("Collection to search.")
    top_k: int = Field(10, ge=1, le=1000)
    filters: dict[str, Any] = Field(
        default_factory=dict,
        description='Structured filters, e.g. {"source": "a.pdf", "doc_id": ["d1", "d2"], '
        '"created_at": {"gte": 1700000000000}, "metadata": {"lang": "en"}}. Lists mean "any of".',
    )
    min_score: float | None = Field(None, description="Drop what each route finds with a cosine similarity below this (before fusion). A finite number.")


class ItemOut(BaseModel):
    id: str
    collection: str
    modality: str = Field(description="text, image or audio.")
    doc_id: str = Field(description="The document, recording or picture the item belongs to.")
    text: str = Field(description="The chunk, the transcript window, or the picture's caption.")
    title: str
    source: str = Field(description="Where it came from, e.g. the uploaded file's name.")
    position: int = Field(description="Index of the item within its document or recording.")
    char_start: int = Field(description="Offset of the chunk in the document text as submitted.")
    char_end: int
    created_at: int = Field(description="Milliseconds since the epoch.")
    metadata: dict[str, Any]
    caption: str | None = Field(None, description="Image: the caption given at upload ('' if none).")
    width: int | None = Field(None, description="Image: width in pixels, upright.")
    height: int | None = Field(None, description="Image: height in pixels.")
    thumbnail_url: str | None = Field(None, description="Image: a small JPEG of the picture.")
    recording_id: str | None = Field(None, description="Audio: the recording this transcript window belongs to.")
    start: float | None = Field(None, description="Audio: where the window starts in the recording, in seconds.")
    end: float | None = Field(None, description="Audio: where the window ends, in seconds.")
    content_url: str | None = Field(None, description="The original: the picture, or the recording seeking to the window's start.")

    @classmethod
    def of(cls, item: Item) -> "ItemOut":
        content = f"/v1/items/{item.id}/content"
        extra: dict[str, Any] = {}
        if item.modality == "image":
            extra = dict(
                caption=item.text,
                width=item.width,
                height=item.height,
                thumbnail_url=f"/v1/items/{item.id}/thumbnail",
                content_url=content,
            )
        elif item.modality == "audio":
            extra = dict(recording_id=item.doc_id, start=item.start_s, end=item.end_s, content_url=f"{content}#t={item.start_s:.2f}")
        return cls(
            id=item.id,
            collection=item.collection,
            modality=item.modality,
            doc_id=item.doc_id,
            text=item.text,
            title=item.title,
            source=item.source,
            position=item.position,
            char_start=item.char_start,
            char_end=item.char_end,
            created_at=item.created_at,
            metadata=item.metadata,
            **extra,
        )


class RouteScoreOut(BaseModel):
    rank: int = Field(description="1-based rank in that route's list.")
    score: float = Field(description="That route's cosine similarity.")


class ResultOut(ItemOut):
    score: float = Field(
        description="The fused score: cosine similarity when only the text encoder's routes (or one CLIP route) found "
        "results, else the fusion score (see `fusion`)."
    )
    routes: dict[str, RouteScoreOut] = Field(description="Provenance: each route that found the item, with its rank and cosine score there.")
    rerank_score: float | None = Field(None, description="The reranker's relevance (0 to 1 for Qwen3-Reranker), when the item was reranked.")

    @classmethod
    def of_hit(cls, hit: Hit) -> "ResultOut":
        routes = {name: RouteScoreOut(rank=route.rank, score=route.score) for name, route in hit.routes.items()}
        return cls(**ItemOut.of(hit.item).model_dump(), score=hit.score, routes=routes, rerank_score=hit.rerank_score)


class RoutesOut(BaseModel):
    ran: list[str] = Field(
        description="Routes searched, as query->target: text->text, text->audio (text encoder), text->image (CLIP text tower), "
        "text->caption (text encoder over captions), image->image, image->text, image->audio (CLIP image tower); "
        "a spoken query's routes start with audio->."
    )
    skipped: dict[str, str] = Field(description="Routes the query would have used but could not, and why.")


class RerankOut(BaseModel):
    applied: bool
    model: str | None = Field(None, description="The reranker that reordered the results.")
    skipped: str | None = Field(None, description="Why reranking was asked for and did not run.")


class TranscriptOut(BaseModel):
    text: str
    language: str


class SearchOut(BaseModel):
    results: list[ResultOut]
    routes: RoutesOut
    rerank: RerankOut
    transcript: TranscriptOut | None = Field(None, description="For an audio query: the transcript that was searched for.")
    timings_ms: dict[str, float] = Field(
        description="Milliseconds per stage: transcribe (audio queries), encode.<encoder> (text, clip-text, clip-image), "
        "search.<route> (search.text-space: one search serving several text-encoder routes), fusion, rerank, total."
    )


# Audio and jobs


class JobAcceptedOut(BaseModel):
    job_id: str
    status_url: str = Field(description="Poll this for progress and the result.")


class JobOut(BaseModel):
    id: str
    kind: str
    state: Literal["queued", "running", "succeeded", "failed"]
    progress: float = Field(description="0 to 1.")
    message: str
    result: IngestOut | None = None
    error: str | None = None
    created_at: int
    finished_at: int | None = None


# Collections and info


class CollectionOut(BaseModel):
    name: str
    items: int
    created_at: int

    @classmethod
    def of(cls, info: CollectionInfo) -> "CollectionOut":
        return cls(name=info.name, items=info.items, created_at=info.created_at)


class ItemsOut(BaseModel):
    items: list[ItemOut] = Field(description="Newest first.")
    total: int = Field(description="Items in the collection.")


class CollectionsOut(BaseModel):
    collections: list[CollectionOut]


class ModelOut(BaseModel):
    name: str
    backend: str
    dimension: int
    max_tokens: int
    fallback_used: bool
    requested: str | None = Field(None, description="The configured model, when a fallback replaced it.")
    fallback_reason: str | None = None


class AudioModelOut(BaseModel):
    available: bool
    name: str | None = None
    backend: str | None = None
    fallback_used: bool = False
    requested: str | None = None
    fallback_reason: str | None = None
    error: str | None = Field(None, description="Why audio is unavailable, if it is.")


class ImageModelOut(BaseModel):
    available: bool
    name: str | None = None
    pretrained: str | None = None
    dimension: int | None = None
    error: str | None = Field(None, description="Why images are unavailable, if they are: which weights are missing and how to provide them.")


class RerankModelOut(BaseModel):
    available: bool
    name: str | None = None
    backend: str | None = Field(None, description="qwen3 (in-process), qwen3-http (an SGLang server) or cross-encoder.")
    error: str | None = Field(None, description="Why reranking is unavailable, if it is.")


class InfoOut(BaseModel):
    version: str
    ready: bool
    error: str | None = Field(None, description="Why the server is not ready, if it is not.")
    models: dict[str, ModelOut | ImageModelOut | AudioModelOut | RerankModelOut] = Field(description="Models per modality (text, image, audio) and the reranker (rerank).")
    store: dict[str, str] = Field(description="kind (milvus-lite or milvus) and uri; on Milvus Lite, search_text and search_image: how each vector space is searched (in memory with its row count and memory, or why not).")
    checks: dict[str, str] = Field(default_factory=dict, description="Each dependency's check in detail (/readyz says one word per dependency): store, text_encoder, image_encoder, audio_transcriber, reranker.")
    configuration: dict[str, Any] = Field(
        default_factory=dict,
        description="The server's effective settings (PRISM_* names, lowercase, without the prefix); keys and tokens are '***', "
        "and so is a password in a URL.",
    )
