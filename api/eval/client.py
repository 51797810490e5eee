"""Talking to the server for `prism eval` (through prism_client, as the rest of the CLI): calls that
turn errors into one-line EvalErrors, a throwaway collection, and the small helpers the evaluations share."""

from __future__ import annotations

import re
import secrets
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from prism_client import NotFoundError, PrismClient, PrismError

if TYPE_CHECKING:
    from retrieval.timing import StageTimer

T = TypeVar("T")

DOCUMENT_BATCH = 64  # documents per ingest request
MAX_TOP_K = 1000  # the API's limit


class EvalError(Exception):
    """A problem with the dataset, the options or the server, reported as a one-line error."""


def call(method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One of the client's calls, e.g. call(client.search, text, collection=name); a failure is an EvalError."""
    try:
        return method(*args, **kwargs)
    except PrismError as error:
        raise EvalError(str(error)) from None


def collection_name(dataset_name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset_name).strip("-.")[:64] or "dataset"
    return f"eval-{slug}-{secrets.token_hex(3)}"


@contextmanager
def eval_collection(client: PrismClient, dataset_name: str) -> Iterator[str]:
    """A fresh collection name; the collection is dropped afterwards, whatever happened."""
    name = collection_name(dataset_name)
    try:
        yield name
    finally:
        try:
            client.drop_collection(name)
        except NotFoundError:
            pass  # nothing was ingested
        except Exception as error:  # the cleanup must not hide the original error
            print(f"warning: could not drop the eval collection {name!r} ({error}); delete it with DELETE /v1/collections/{name}", file=sys.stderr)


def server_info(client: PrismClient) -> dict[str, Any]:
    info: dict[str, Any] = dict(call(client.info))
    if not info.get("ready") or "text" not in info.get("models", {}):
        raise EvalError(f"the server is not ready: {info.get('error') or 'models are still loading'}")
    return info


def progress(iterable: Any, **kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(iterable, file=sys.stderr, disable=None, **kwargs)


def unique(values: Any) -> list[Any]:
    return list(dict.fromkeys(values))


def seconds(timer: "StageTimer") -> dict[str, float]:
    return {stage: round(ms / 1000, 3) for stage, ms in timer.ms.items()}
