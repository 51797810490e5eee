"""What the sync and the async client share: where the server is, the key, and sending a Call."""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import urljoin

import httpx

from prism_client.calls import Call, Operation, Wait
from prism_client.errors import PrismConnectionError, error_from_response

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)  # ingesting a large batch takes minutes on a CPU


def resolve(base_url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    """The server's URL (argument, else PRISM_URL, else the default) and the headers with the key
    (argument, else PRISM_API_KEY)."""
    url = (base_url or os.environ.get("PRISM_URL") or DEFAULT_URL).rstrip("/")
    key = api_key if api_key is not None else os.environ.get("PRISM_API_KEY")
    return url, ({"Authorization": f"Bearer {key}"} if key else {})


def request_arguments(call: Call) -> dict[str, Any]:
    arguments: dict[str, Any] = {"params": call.params, "json": call.json, "data": call.data, "files": call.files}
    if call.timeout is not None:
        arguments["timeout"] = call.timeout
    return {name: value for name, value in arguments.items() if value is not None}


def connection_error(http: httpx.Client | httpx.AsyncClient, call: Call, error: httpx.TransportError) -> PrismConnectionError:
    url = urljoin(str(http.base_url), call.path.lstrip("/"))
    message = f"no answer from Prism at {url}: {error or type(error).__name__}"
    return PrismConnectionError(message, method=call.method, path=call.path)


def checked(response: httpx.Response, call: Call) -> httpx.Response:
    if response.status_code >= 400 and response.status_code not in call.accept:
        raise error_from_response(response, call.method, call.path)
    return response


def json_of(call: Call) -> Operation[Any]:
    return (yield call).json()


def bytes_of(call: Call) -> Operation[bytes]:
    return (yield call).content


def wait_ready(timeout: float, poll_s: float) -> Operation[dict[str, Any]]:
    """GET /readyz until it says ready (a server still starting may not answer at all yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = yield Call("GET", "/readyz", accept=(503,), timeout=min(10.0, timeout))
            body = response.json()
            if response.status_code == 200:
                return body
            why = (body.get("error") or {}).get("message", "not ready")
        except PrismConnectionError as error:
            why = error.message
        if time.monotonic() >= deadline:
            raise TimeoutError(f"Prism was not ready after {timeout} s: {why}")
        yield Wait(poll_s)
