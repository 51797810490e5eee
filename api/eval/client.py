"""Talking to the server for `prism eval`: calls that turn errors into one-line EvalErrors, a throwaway
collection, and the small helpers the evaluations share."""

from __future__ import annotations

import re
import secrets
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import httpx

from retrieval.timing import StageTimer

DOCUMENT_BATCH = 64  # documents per ingest request
MAX_TOP_K = 1000  # the API's limit


class EvalError(Exception):
    """A problem with the dataset, the options or the server, reported as a one-line error."""


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.TransportError as error:
        raise EvalError(f"{method} {path}: {error}") from None
    if not response.is_success:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        raise EvalError(f"{method} {path} -> {response.status_code}: {message}")
    return response.json()


def collection_name(dataset_name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset_name).strip("-.")[:64] or "dataset"
    return f"eval-{slug}-{secrets.token_hex(3)}"


@contextmanager
def eval_collection(client: httpx.Client, dataset_name: str) -> Iterator[str]:
    """A fresh collection name; the collection is dropped afterwards, whatever happened."""
    name = collection_name(dataset_name)
    try:
        yield name
    finally:
        try:
            response = client.delete(f"/v1/collections/{name}")
            if not (response.is_success or response.status_code == 404):  # 404: nothing was ingested
                print(f"warning: could not drop the eval collection {name!r} ({response.status_code}); delete it with DELETE /v1/collections/{name}", file=sys.stderr)
        except Exception as error:  # the cleanup must not hide the original error
            print(f"warning: could not drop the eval collection {name!r}: {error}", file=sys.stderr)


def server_info(client: httpx.Client) -> dict[str, Any]:
    info = call(client, "GET", "/v1/info")
    if not info.get("ready") or "text" not in info.get("models", {}):
        raise EvalError(f"the server is not ready: {info.get('error') or 'models are still loading'}")
    return info


def progress(iterable: Any, **kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(iterable, file=sys.stderr, disable=None, **kwargs)


def unique(values: Any) -> list[Any]:
    return list(dict.fromkeys(values))


def seconds(timer: StageTimer) -> dict[str, float]:
    return {stage: round(ms / 1000, 3) for stage, ms in timer.ms.items()}
