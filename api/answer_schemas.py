"""Request and response bodies of POST /v1/answer and the OpenAI-compatible POST /v1/chat/completions.

Limits live here, so the published schema says them: a question is at most MAX_QUERY_CHARS
characters, an answer at most MAX_ANSWER_TOKENS tokens, the temperature finite and between 0 and 2.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from api.schemas import Checked, Modality, QueryIn, Strict, TranscriptOut, collection_field
from retrieval.answer_prompt import Source, label

MAX_ANSWER_TOKENS = 4096
MAX_SOURCES = 50
MAX_TEMPERATURE = 2.0
MAX_CHAT_MESSAGES = 256
MAX_MESSAGE_CHARS = 65536
SSE = "text/event-stream"


class AnswerIn(Strict):
    query: QueryIn = Field(description="The question: a text, or a picture or audio clip (base64) as in /v1/search; a clip's transcript is the question.")
    collection: str = collection_field("Collection to answer from.")
    modalities: list[Modality] | None = Field(None, description="Which kinds of sources may be used; default all.")
    filters: dict[str, Any] = Field(default_factory=dict, description="Structured filters, as in /v1/search.")
    top_k: int | None = Field(None, ge=1, le=MAX_SOURCES, description="Sources retrieved (before the relevance threshold); default PRISM_ANSWER_TOP_K.")
    rerank: bool = Field(False, description="Rerank the candidates with the configured reranker before choosing the sources.")
    min_score: float | None = Field(
        None,
        description="Relevance threshold (the reranker's score when reranked, else the best cosine similarity); default PRISM_ANSWER_MIN_SCORE, "
        "the web UI's threshold. When no source reaches it, the answer says that the library has nothing on it, without calling the model.",
    )
    max_tokens: int | None = Field(None, ge=1, le=MAX_ANSWER_TOKENS, description="Longest answer in tokens; default and at most PRISM_ANSWER_MAX_TOKENS.")
    temperature: float = Field(0.0, ge=0.0, le=MAX_TEMPERATURE, description="0 writes the most likely answer; higher values sample.")
    stream: bool = Field(False, description="Stream the answer as server-sent events: `token` events, then one `answer` event with the citations.")
    language: str | None = Field(None, max_length=16, description="Language of an audio question (e.g. en); default: detected.")


class CitationOut(BaseModel):
    n: int = Field(description="The source's number in the prompt: the answer cites it as [n].")
    id: str = Field(description="The item: a document chunk, a transcript window or a picture.")
    doc_id: str = Field(description="Its document, recording or picture.")
    collection: str
    modality: str = Field(description="text, image or audio.")
    label: str = Field(description="What it is, as the model was told: a document chunk, a transcript window with its time span, a picture's caption.")
    title: str
    source: str = Field(description="Where it came from, e.g. the uploaded file's name.")
    text: str = Field(description="The chunk, the transcript window or the caption, as given to the model.")
    start: float | None = Field(None, description="Audio: where the cited moment starts in the recording, in seconds.")
    end: float | None = Field(None, description="Audio: where it ends, in seconds.")
    content_url: str | None = Field(None, description="The original: the picture, or the recording from the cited second (#t=start).")
    thumbnail_url: str | None = Field(None, description="A picture's thumbnail.")
    score: float = Field(description="Its relevance: the reranker's score, else the best cosine similarity.")

    @classmethod
    def of(cls, source: Source) -> "CitationOut":
        item = source.hit.item
        links: dict[str, Any] = {}
        if item.modality == "image":
            links = dict(content_url=f"/v1/items/{item.id}/content", thumbnail_url=f"/v1/items/{item.id}/thumbnail")
        elif item.modality == "audio":
            links = dict(start=item.start_s, end=item.end_s, content_url=f"/v1/items/{item.id}/content#t={item.start_s:.2f}")
        return cls(
            n=source.n,
            id=item.id,
            doc_id=item.doc_id,
            collection=item.collection,
            modality=item.modality,
            label=label(source),
            title=item.title,
            source=item.source,
            text=source.text,
            score=source.relevance,
            **links,
        )


class AnswerOut(BaseModel):
    answer: str = Field(description="The answer, citing its sources as [n]; or, when nothing relevant was found, a sentence saying so.")
    nothing_found: bool = Field(description="True when no source reached the relevance threshold: the model was not called.")
    citations: list[CitationOut] = Field(description="The sources the answer cites, in order of first mention, resolved to items.")
    used_context: list[CitationOut] = Field(description="Every source given to the model, best first (those that fitted its context window).")
    model: str | None = Field(None, description="The model that wrote the answer; null when nothing was found.")
    backend: str | None = Field(None, description="local or openai; null when nothing was found.")
    transcript: TranscriptOut | None = Field(None, description="For an audio question: its transcript.")
    timings_ms: dict[str, float] = Field(
        description="Milliseconds: transcribe (audio questions), retrieve, rerank (when reranked), first_token (from the start of the request), generate, total."
    )


class TokenEvent(BaseModel):
    """The data of a `token` event of a streamed answer."""

    text: str


# OpenAI-compatible chat


class ContentPartIn(Checked):
    type: str = Field(max_length=64, description="Only `text` parts are read.")
    text: str | None = Field(None, max_length=MAX_MESSAGE_CHARS)


class ChatMessageIn(Checked):  # not Strict: chat clients send fields Prism does not use
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)] | Annotated[list[ContentPartIn], Field(max_length=MAX_CHAT_MESSAGES)] | None = Field(
        None, description="Text, or a list of content parts whose `text` parts are read."
    )
    name: str | None = Field(None, max_length=256)


class ChatCompletionIn(Checked):
    model: str = Field(max_length=512, description="A Prism answer model from GET /v1/models: `prism` (the default collection) or `prism:COLLECTION`.")
    messages: list[ChatMessageIn] = Field(
        min_length=1, max_length=MAX_CHAT_MESSAGES, description="The conversation: the last user message is the question, earlier turns its history."
    )
    max_tokens: int | None = Field(None, ge=1, le=MAX_ANSWER_TOKENS, description="Longest answer in tokens; default and at most PRISM_ANSWER_MAX_TOKENS.")
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_ANSWER_TOKENS, description="The same as max_tokens (newer clients send this).")
    temperature: float | None = Field(None, ge=0.0, le=MAX_TEMPERATURE)
    stream: bool = False
    user: str | None = Field(None, max_length=512)


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoiceOut(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: Literal["stop", "length"] = "stop"


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionOut(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoiceOut]
    usage: UsageOut
    citations: list[CitationOut] = Field(description="Prism extension: the cited sources, as in /v1/answer (the message lists them too).")
    nothing_found: bool = Field(description="Prism extension: no source reached the relevance threshold.")

