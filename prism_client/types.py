"""The shapes of Prism's answers, as TypedDicts: the client returns the JSON the server sent (so
`--json` and logs show exactly that), typed for editors and type checkers. /openapi.json is the
reference; these follow it."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

Modality = Literal["text", "image", "audio"]


class IngestResult(TypedDict):
    ids: list[str]  # document ids (of pictures and recordings: their ids), in request order
    chunks: int  # items written: chunks, transcript windows or pictures
    embedded: int
    reused: int
    timings_ms: dict[str, float]


class JobAccepted(TypedDict):
    job_id: str
    status_url: str


class Job(TypedDict):
    id: str
    kind: str
    state: Literal["queued", "running", "succeeded", "failed"]
    progress: float
    message: str
    result: IngestResult | None
    error: str | None
    created_at: int
    finished_at: int | None


class Item(TypedDict):
    id: str
    collection: str
    modality: Modality
    doc_id: str
    text: str  # the chunk, the transcript window, or the picture's caption
    title: str
    source: str
    position: int
    char_start: int
    char_end: int
    created_at: int
    metadata: dict[str, Any]
    caption: NotRequired[str | None]
    width: NotRequired[int | None]
    height: NotRequired[int | None]
    thumbnail_url: NotRequired[str | None]  # a path on the server: PrismClient.url() makes it absolute
    recording_id: NotRequired[str | None]
    start: NotRequired[float | None]  # seconds into the recording
    end: NotRequired[float | None]
    content_url: NotRequired[str | None]


class RouteScore(TypedDict):
    rank: int
    score: float


class SearchHit(Item):
    score: float
    routes: dict[str, RouteScore]
    rerank_score: NotRequired[float | None]


class Routes(TypedDict):
    ran: list[str]
    skipped: dict[str, str]  # route -> why it could not run


class Rerank(TypedDict):
    applied: bool
    model: NotRequired[str | None]
    skipped: NotRequired[str | None]


class Transcript(TypedDict):
    text: str
    language: str


class SearchResult(TypedDict):
    results: list[SearchHit]
    routes: Routes
    rerank: Rerank
    transcript: NotRequired[Transcript | None]  # what a spoken query was heard as
    timings_ms: dict[str, float]


class Deleted(TypedDict):
    deleted: int


class Collection(TypedDict):
    name: str
    items: int
    created_at: int


class ItemsPage(TypedDict):
    items: list[Item]
    total: int


class Info(TypedDict):
    version: str
    ready: bool
    error: str | None
    models: dict[str, dict[str, Any]]
    store: dict[str, str]
    checks: dict[str, str]
    configuration: NotRequired[dict[str, Any]]  # the server's effective settings, secrets masked


class Problem(TypedDict):
    kind: str
    collection: str
    id: str
    message: str
    fixable: bool


class DoctorReport(TypedDict):
    summary: str
    problems: list[Problem]
    fixed: list[Problem]
    notes: list[str]
    checked: dict[str, int]


class Embedding(TypedDict):
    object: str
    index: int
    embedding: list[float] | str  # a base64 string with encoding_format="base64"


class Embeddings(TypedDict):
    object: str
    data: list[Embedding]
    model: str
    usage: dict[str, int]


class Citation(TypedDict):
    n: int  # the source's number: the answer cites it as [n]
    id: str
    doc_id: str
    collection: str
    modality: Modality
    label: str
    title: str
    source: str
    text: str  # what the model was given
    start: float | None  # audio: the cited moment, in seconds
    end: float | None
    content_url: str | None
    thumbnail_url: str | None
    score: float


class Answer(TypedDict):
    answer: str  # cites its sources as [n]
    nothing_found: bool  # no source reached the relevance threshold: the model was not called
    citations: list[Citation]  # the sources the answer cites, in order of first mention
    used_context: list[Citation]  # every source given to the model
    model: str | None
    backend: str | None
    transcript: Transcript | None  # of a spoken question
    timings_ms: dict[str, float]
