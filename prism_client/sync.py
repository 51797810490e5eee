"""PrismClient: the whole REST API, blocking (AsyncPrismClient in aio.py is the same, awaited)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar, Unpack, cast

import httpx

from prism_client import calls
from prism_client.answers import AnswerEvents, AnswerOptions, answer_call
from prism_client.base import DEFAULT_TIMEOUT, bytes_of, checked, connection_error, json_of, request_arguments, resolve, wait_ready
from prism_client.calls import Call, FileInput, Operation, SearchOptions, Wait
from prism_client.errors import PrismError
from prism_client.types import (
    Answer, Collection, Deleted, DoctorReport, Embeddings, Info, IngestResult, Item, ItemsPage, Job, JobAccepted, SearchResult,
)  # fmt: skip
from prism_client.uploads import MAX_BATCH_BYTES, MAX_BATCH_FILES, UploadProgress, UploadReport, upload

T = TypeVar("T")


class PrismClient:
    """A client for a Prism server.

    `base_url` defaults to PRISM_URL, else http://127.0.0.1:8000; `api_key` to PRISM_API_KEY. Pass
    `http` to send through an httpx.Client of your own (e.g. an in-process TestClient). Every failed
    call raises a PrismError subclass with the server's status, code and message."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, http: httpx.Client | None = None) -> None:
        url, headers = resolve(base_url, api_key)
        self.http = http if http is not None else httpx.Client(base_url=url, timeout=timeout)
        self.http.headers.update(headers)
        self.base_url = str(self.http.base_url).rstrip("/")

    def __enter__(self) -> "PrismClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def url(self, path: str) -> str:
        """An absolute URL for a path the server gave (a result's content_url or thumbnail_url)."""
        return path if "://" in path else self.base_url + path

    def _run(self, work: Call | Operation[T]) -> T:
        """Send what the operation yields; sleep for its Waits; throw error answers into it."""
        operation = json_of(work) if isinstance(work, Call) else work
        throw, value = False, None
        while True:
            try:
                step = operation.throw(value) if throw else operation.send(value)
            except StopIteration as finished:
                return cast(T, finished.value)
            throw, value = False, None
            if isinstance(step, Wait):
                time.sleep(step.seconds)
                continue
            try:
                value = self._send(step)
            except PrismError as error:
                throw, value = True, error

    def _send(self, call: Call) -> httpx.Response:
        try:
            response = self.http.request(call.method, call.path, **request_arguments(call))
        except httpx.TransportError as error:
            raise connection_error(self.http, call, error) from error
        return checked(response, call)

    def request(self, method: str, path: str, **arguments: Any) -> Any:
        """Any route, for what has no method yet: `params`, `json`, `data`, `files` as in httpx. Its JSON answer."""
        return self._run(Call(method, path, **arguments))

    # System
    def health(self, timeout: float | None = None) -> dict[str, str]:
        return self._run(Call("GET", "/healthz", timeout=timeout))

    def ready(self) -> dict[str, Any]:
        """GET /readyz: `status` is `ready` or `not_ready` (then `error` says why), with a word per dependency."""
        return self._run(Call("GET", "/readyz", accept=(503,)))

    def wait_ready(self, timeout: float = 300.0, poll_s: float = 0.2) -> dict[str, Any]:
        return self._run(wait_ready(timeout, poll_s))

    def info(self) -> Info:
        return self._run(Call("GET", "/v1/info"))

    def models(self) -> dict[str, Any]:
        return self._run(Call("GET", "/v1/models"))

    def metrics(self) -> str:
        return self._run(bytes_of(Call("GET", "/metrics"))).decode()

    def doctor(self, fix: bool = False) -> DoctorReport:
        return self._run(Call("POST", "/v1/doctor/fix") if fix else Call("GET", "/v1/doctor"))

    # Documents, pictures, recordings
    def add_documents(self, documents: Sequence[dict[str, Any] | str], *, collection: str = "default") -> IngestResult:
        return self._run(calls.add_documents(documents, collection))

    def upload_documents(self, files: Sequence[FileInput], *, collection: str = "default") -> IngestResult:
        return self._run(calls.upload_documents(files, collection))

    def add_images(self, files: Sequence[FileInput], *, collection: str = "default", captions: Sequence[str] | None = None, metadata: dict[str, Any] | Sequence[dict[str, Any]] | None = None) -> IngestResult:
        return self._run(calls.add_images(files, collection, captions, metadata))

    def add_audio(self, files: Sequence[FileInput], *, collection: str = "default", language: str | None = None, metadata: dict[str, Any] | None = None, poll_s: float = calls.JOB_POLL_S, timeout: float | None = None) -> IngestResult:
        """Ingest recordings; a long upload becomes a background job, which this waits for."""
        return self._run(calls.add_audio(calls.submit_audio(files, collection, language, metadata), poll_s, timeout))

    def submit_audio(self, files: Sequence[FileInput], *, collection: str = "default", language: str | None = None, metadata: dict[str, Any] | None = None) -> IngestResult | JobAccepted:
        """Ingest recordings without waiting: a long upload answers a JobAccepted to poll with job()."""
        return self._run(calls.submit_audio(files, collection, language, metadata))

    def job(self, job_id: str) -> Job:
        return self._run(Call("GET", f"/v1/jobs/{calls.segment(job_id)}"))

    def wait_for_job(self, job_id: str, *, poll_s: float = calls.JOB_POLL_S, timeout: float | None = None) -> IngestResult:
        return self._run(calls.wait_for_job(job_id, poll_s, timeout))

    def upload(self, paths: Sequence[str | Path], *, collection: str = "default", language: str | None = None, progress: Callable[[UploadProgress], None] | None = None, max_files: int = MAX_BATCH_FILES, max_bytes: int = MAX_BATCH_BYTES) -> UploadReport:
        """Files and folders (recursively), in batches; see prism_client.uploads."""
        return self._run(upload(paths, collection, language, progress, max_files, max_bytes))

    def delete_document(self, doc_id: str, *, collection: str = "default") -> Deleted:
        """A document and all its chunks (or a picture or recording by its id); any id works."""
        return self._run(Call("DELETE", "/v1/documents", params={"doc_id": doc_id, "collection": collection}))

    # Search
    def search(self, text: str, **options: Unpack[SearchOptions]) -> SearchResult:
        return self._run(calls.search_text(text, options))

    def search_image(self, image: FileInput, **options: Unpack[SearchOptions]) -> SearchResult:
        return self._run(calls.search_image(image, options))

    def search_audio(self, clip: FileInput, **options: Unpack[SearchOptions]) -> SearchResult:
        """A spoken query: the answer's `transcript` is what it was heard as."""
        return self._run(calls.search_audio(clip, options))

    def search_file(self, file: FileInput, **options: Unpack[SearchOptions]) -> SearchResult:
        """A picture or an audio clip, uploaded as a file (the server tells which from its bytes)."""
        return self._run(calls.search_file(file, options))

    # Answers
    def answer(self, question: str | None = None, *, image: FileInput | None = None, audio: FileInput | None = None, **options: Unpack[AnswerOptions]) -> Answer:
        """A grounded answer citing its sources; ask with a text, a picture or an audio clip (its transcript is the question)."""
        return self._run(answer_call(question, image, audio, options, stream=False))

    def answer_stream(self, question: str | None = None, *, image: FileInput | None = None, audio: FileInput | None = None, **options: Unpack[AnswerOptions]) -> Iterator[str | Answer]:
        """The answer as the model writes it: pieces of text (str), then the whole Answer, with its citations, last."""
        call, events = answer_call(question, image, audio, options, stream=True), AnswerEvents()
        try:
            with self.http.stream(call.method, call.path, json=call.json) as response:
                if response.status_code >= 400:
                    response.read()
                    checked(response, call)
                for line in response.iter_lines():
                    if (event := events.feed(line)) is not None:
                        yield event
        except httpx.TransportError as error:
            raise connection_error(self.http, call, error) from error
        events.finished()

    # Items and collections
    def item(self, item_id: str) -> Item:
        return self._run(Call("GET", f"/v1/items/{calls.segment(item_id)}"))

    def content(self, item_id: str) -> bytes:
        """The stored original: the picture, or the recording behind an audio item."""
        return self._run(bytes_of(Call("GET", f"/v1/items/{calls.segment(item_id)}/content")))

    def thumbnail(self, item_id: str) -> bytes:
        return self._run(bytes_of(Call("GET", f"/v1/items/{calls.segment(item_id)}/thumbnail")))

    def delete_item(self, item_id: str) -> Deleted:
        return self._run(Call("DELETE", f"/v1/items/{calls.segment(item_id)}"))

    def items(self, collection: str = "default", *, limit: int = 50, offset: int = 0) -> ItemsPage:
        return self._run(Call("GET", f"/v1/collections/{calls.segment(collection)}/items", params={"limit": limit, "offset": offset}))

    def collections(self) -> list[Collection]:
        return self._run(Call("GET", "/v1/collections"))["collections"]

    def drop_collection(self, name: str) -> Deleted:
        return self._run(Call("DELETE", f"/v1/collections/{calls.segment(name)}"))

    # OpenAI-compatible embeddings
    def embed(self, input: str | Sequence[str], *, model: str = "default", dimensions: int | None = None, input_type: str | None = None, encoding_format: str | None = None) -> Embeddings:
        """`input_type="query"` adds the model's query instruction (Prism's extension of the OpenAI API)."""
        return self._run(calls.embed(input, model, dimensions, input_type, encoding_format))
