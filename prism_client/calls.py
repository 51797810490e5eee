"""What each call sends, written once for the sync and the async client (sans-I/O).

A call is a `Call` (one request whose JSON answer is the result) or an operation: a generator that
yields `Call`s and `Wait`s, receives each answer (an httpx.Response) and returns the result. The two
clients only send what is yielded, and sleep for `Wait`s, each in its own way; an error answer is
thrown into the generator as a PrismError, so an operation can catch it (see uploads.py).
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generator, Sequence, TypedDict, TypeVar, Union
from urllib.parse import quote

from prism_client.errors import JobFailedError
from prism_client.types import IngestResult, Job, Modality

T = TypeVar("T")
FileInput = Union[str, os.PathLike, bytes, tuple[str, bytes], IO[bytes]]
"""A path, raw bytes, (name, bytes), or an open binary file."""
JOB_POLL_S = 1.0


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, Any] | None = None
    files: list[tuple[str, tuple[str, bytes]]] | None = None
    accept: tuple[int, ...] = ()  # statuses >= 400 that are answers, not errors (GET /readyz's 503)
    timeout: float | None = None  # this call's deadline; None: the client's


@dataclass(frozen=True)
class Wait:
    seconds: float


Step = Union[Call, Wait]
Operation = Generator[Step, Any, T]


class SearchOptions(TypedDict, total=False):
    """Options of every search (see POST /v1/search in /openapi.json)."""

    collection: str
    top_k: int
    modalities: Sequence[Modality] | None
    filters: dict[str, Any] | None  # {"source": ..., "doc_id": [...], "created_at": {"gte": ...}, "metadata": {...}}
    min_score: float | None
    rerank: bool
    rerank_top_n: int
    per_modality_limit: int | None
    language: str | None  # of a spoken query
    fusion: dict[str, Any] | None  # {"method": "rrf" | "weighted", "k": 60, "weights": {...}} (POST /v1/search only)


def segment(value: str) -> str:
    """An id as one URL path segment, whatever it holds ('/', '?', '#', '%', spaces)."""
    return quote(value, safe="")


def read_file(file: FileInput, default_name: str) -> tuple[str, bytes]:
    """(name, bytes) of any file input; a path's name is its file name."""
    if isinstance(file, tuple):
        name, data = file
        return name, bytes(data)
    if isinstance(file, (bytes, bytearray)):
        return default_name, bytes(file)
    if isinstance(file, (str, os.PathLike)):
        path = Path(file)
        return path.name, path.read_bytes()
    return Path(getattr(file, "name", default_name)).name, file.read()


def multipart(field: str, files: Sequence[FileInput], default_name: str) -> list[tuple[str, tuple[str, bytes]]]:
    return [(field, read_file(file, f"{default_name}-{index}" if len(files) > 1 else default_name)) for index, file in enumerate(files)]


def search_call(query: dict[str, str], options: SearchOptions) -> Call:
    body: dict[str, Any] = {"query": query, **{key: value for key, value in options.items() if value is not None}}
    if "modalities" in body:
        body["modalities"] = list(body["modalities"])
    return Call("POST", "/v1/search", json=body)


def search_text(text: str, options: SearchOptions) -> Call:
    return search_call({"text": text}, options)


def search_image(image: FileInput, options: SearchOptions) -> Call:
    return search_call({"image": base64.b64encode(read_file(image, "query")[1]).decode()}, options)


def search_audio(clip: FileInput, options: SearchOptions) -> Call:
    return search_call({"audio": base64.b64encode(read_file(clip, "query")[1]).decode()}, options)


def search_file(file: FileInput, options: SearchOptions) -> Call:
    """POST /v1/search/upload: the server tells a picture from an audio clip by its bytes."""
    if options.get("fusion"):
        raise ValueError("fusion applies to POST /v1/search only: use search_image() or search_audio()")
    form: dict[str, str] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key == "modalities":
            value = ",".join(value)
        elif key == "filters":
            value = json.dumps(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        form[key] = str(value)
    return Call("POST", "/v1/search/upload", data=form, files=multipart("file", [file], "query"))


def add_documents(documents: Sequence[dict[str, Any] | str], collection: str) -> Call:
    """Documents as dicts ({"id"?, "text", "title"?, "source"?, "metadata"?}) or plain texts."""
    body = [{"text": document} if isinstance(document, str) else document for document in documents]
    return Call("POST", "/v1/documents", json={"collection": collection, "documents": body})


def upload_documents(files: Sequence[FileInput], collection: str) -> Call:
    """Each file's name is its document id (raw bytes need a name: pass (name, bytes))."""
    if any(isinstance(file, (bytes, bytearray)) for file in files):
        raise ValueError("a document file's name is its id: pass (name, bytes) or a path, not bare bytes")
    return Call("POST", "/v1/documents/upload", data={"collection": collection}, files=multipart("files", files, "upload"))


def add_images(
    files: Sequence[FileInput], collection: str, captions: Sequence[str] | None, metadata: dict[str, Any] | Sequence[dict[str, Any]] | None
) -> Call:
    """Captions: one per file, or none. Metadata: one object for all files, or one per file."""
    data: dict[str, Any] = {"collection": collection}
    if captions is not None:
        data["caption"] = list(captions)
    if metadata is not None:
        data["metadata"] = json.dumps(metadata) if isinstance(metadata, dict) else [json.dumps(m) for m in metadata]
    return Call("POST", "/v1/images", data=data, files=multipart("files", files, "picture"))


def submit_audio(files: Sequence[FileInput], collection: str, language: str | None, metadata: dict[str, Any] | None) -> Call:
    data = {"collection": collection, **({"language": language} if language else {}), **({"metadata": json.dumps(metadata)} if metadata else {})}
    return Call("POST", "/v1/audio", data=data, files=multipart("files", files, "recording"))


def add_audio(call: Call, poll_s: float, timeout: float | None) -> Operation[IngestResult]:
    """Recordings longer than the server's threshold become a background job (202): wait for it."""
    response = yield call
    body = response.json()
    if response.status_code != 202:
        return body
    return (yield from wait_for_job(body["job_id"], poll_s, timeout))


def wait_for_job(job_id: str, poll_s: float = JOB_POLL_S, timeout: float | None = None) -> Operation[IngestResult]:
    """Poll a job until it ends: its result, or JobFailedError with its error; TimeoutError after `timeout` s."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job: Job = (yield Call("GET", f"/v1/jobs/{segment(job_id)}")).json()
        if job["state"] == "succeeded":
            assert job["result"] is not None
            return job["result"]
        if job["state"] == "failed":
            raise JobFailedError(job["error"] or "the job failed", job)
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s ({job['message']})")
        yield Wait(poll_s)


def embed(input: str | Sequence[str], model: str, dimensions: int | None, input_type: str | None, encoding_format: str | None) -> Call:
    body: dict[str, Any] = {"input": input if isinstance(input, str) else list(input), "model": model}
    body.update({k: v for k, v in (("dimensions", dimensions), ("input_type", input_type), ("encoding_format", encoding_format)) if v is not None})
    return Call("POST", "/v1/embeddings", json=body)
