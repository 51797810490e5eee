"""What the HTTP model clients share (embeddings, rerank): a client with short connect timeouts, and
bounded retries that turn failures into EncoderUnavailable (the server is down or overloaded: HTTP 503)
or EncoderError (it refused or garbled the request). A call never hangs and never retries forever.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from encoders.base import EncoderError, EncoderUnavailable

# Connecting to a live server on the same network takes milliseconds; waiting longer only delays the
# error when the server is down. Reading the answer gets the full timeout (long batches).
CONNECT_TIMEOUT_S = 3.0
# Backoff between retries: 0.2 s, 0.4 s, 0.8 s, ... at most 2 s, so three retries cost under 1.5 s.
FIRST_RETRY_WAIT_S = 0.2
MAX_RETRY_WAIT_S = 2.0
PING_TIMEOUT_S = 2.0  # a readiness probe must answer quickly, whatever the server

T = TypeVar("T")


def http_client(api_key: str | None, timeout_s: float) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)))


def is_transient(error: BaseException) -> bool:
    """Failures worth retrying: the server may be starting, overloaded, or briefly unreachable."""
    if isinstance(error, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)):
        return True
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status == 429 or status >= 500
    return False


def server_message(response: httpx.Response) -> str:
    """The error text of a failed response, from the usual error bodies (OpenAI, SGLang, FastAPI)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if key in body:
                return str(body[key])
    return str(body)[:500]


def call_with_retries(call: Callable[[], T], server: str, max_retries: int) -> T:
    """call(), retried on transient failures; `server` names the server in errors (e.g.
    "text encoder server at http://...")."""
    retrying = Retrying(
        stop=stop_after_attempt(max_retries + 1),
        wait=wait_exponential(multiplier=FIRST_RETRY_WAIT_S, max=MAX_RETRY_WAIT_S),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )
    try:
        return retrying(call)
    except httpx.HTTPStatusError as error:
        status, message = error.response.status_code, server_message(error.response)
        if is_transient(error):
            raise EncoderUnavailable(f"{server} answered {status} after {max_retries} retries: {message}") from error
        raise EncoderError(f"{server} refused the request ({status}): {message}") from error
    except httpx.TransportError as error:
        raise EncoderUnavailable(f"{server} is unreachable: {type(error).__name__}: {error}") from error


def ping(client: httpx.Client, base_url: str, server: str) -> None:
    """One quick GET of {base_url}/models (SGLang, vLLM and OpenAI serve it) for readiness checks:
    the server is there if it answers below 500, whatever it answers. Raises EncoderUnavailable."""
    try:
        response = client.get(f"{base_url}/models", timeout=PING_TIMEOUT_S)
    except httpx.TransportError as error:
        raise EncoderUnavailable(f"{server} is unreachable: {type(error).__name__}: {error}") from error
    if response.status_code >= 500:
        raise EncoderUnavailable(f"{server} answered {response.status_code}: {server_message(response)}")
