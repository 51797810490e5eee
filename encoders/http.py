"""What the HTTP model clients share (embeddings, rerank): a client with short connect timeouts, and
bounded retries that turn failures into EncoderUnavailable (the server is down, overloaded or silent:
HTTP 503) or EncoderError (it refused or garbled the request: HTTP 502).

A call never hangs and never retries forever: one deadline (the client's timeout) covers every attempt
of a request and the waits between them, so a server that accepts connections and never answers costs
a request that timeout once, not once per retry. Work cancelled by the client or a shutdown
(encoders.cancel) stops before the next attempt.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_before_delay, wait_exponential

from encoders.base import EncoderError, EncoderUnavailable
from encoders.cancel import check_cancelled

# Connecting to a live server on the same network takes milliseconds; waiting longer only delays the
# error when the server is down. Reading the answer gets what is left of the deadline (long batches).
CONNECT_TIMEOUT_S = 3.0
# Backoff between retries: 0.2 s, 0.4 s, 0.8 s, ... at most 2 s, so three retries cost under 1.5 s.
FIRST_RETRY_WAIT_S = 0.2
MAX_RETRY_WAIT_S = 2.0
PING_TIMEOUT_S = 2.0  # a readiness probe must answer quickly, whatever the server

T = TypeVar("T")


class EncoderTimeout(EncoderUnavailable):
    """The server took the request (or the connection) and did not answer in time (HTTP 503)."""


def http_client(api_key: str | None, timeout_s: float) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(headers=headers, timeout=attempt_timeout(timeout_s))


def attempt_timeout(seconds: float) -> httpx.Timeout:
    """httpx's timeouts for one attempt with `seconds` left: connecting gets at most CONNECT_TIMEOUT_S."""
    return httpx.Timeout(seconds, connect=min(CONNECT_TIMEOUT_S, seconds))


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


def call_with_retries(call: Callable[[httpx.Timeout], T], server: str, max_retries: int, timeout_s: float, timeout_setting: str) -> T:
    """call(timeout), retried on transient failures, all within one deadline of `timeout_s` seconds:
    each attempt gets what is left of it, and no retry starts that could not finish in time. `server`
    names the server in errors (e.g. "text encoder server at http://..."), `timeout_setting` the
    setting that raises the deadline."""
    deadline = time.monotonic() + timeout_s

    def attempt() -> T:
        check_cancelled()  # the client left or the server stops: do not start another attempt
        left = deadline - time.monotonic()
        if left <= 0:
            raise httpx.TimeoutException("no time left for another attempt")
        return call(attempt_timeout(left))

    retrying = Retrying(
        stop=stop_after_attempt(max_retries + 1) | stop_before_delay(timeout_s),
        wait=wait_exponential(multiplier=FIRST_RETRY_WAIT_S, max=MAX_RETRY_WAIT_S),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )
    try:
        return retrying(attempt)
    except httpx.HTTPStatusError as error:
        status, message = error.response.status_code, server_message(error.response)
        if is_transient(error):
            attempts = retrying.statistics.get("attempt_number", 1)
            raise EncoderUnavailable(f"{server} answered {status} after {attempts} attempts: {message}") from error
        raise EncoderError(f"{server} refused the request ({status}): {message}") from error
    except httpx.TimeoutException as error:
        raise EncoderTimeout(
            f"{server} did not answer within {timeout_s:g} s, retries included ({type(error).__name__}; raise {timeout_setting} for slow batches)"
        ) from error
    except httpx.TransportError as error:
        raise EncoderUnavailable(f"{server} is unreachable: {type(error).__name__}: {error}") from error


def ping(client: httpx.Client, base_url: str, server: str) -> None:
    """One quick GET of {base_url}/models (SGLang, vLLM and OpenAI serve it) for readiness checks:
    the server is there if it answers below 500, whatever it answers. Raises EncoderTimeout when it
    does not answer within PING_TIMEOUT_S, EncoderUnavailable when it cannot be reached or fails."""
    try:
        response = client.get(f"{base_url}/models", timeout=attempt_timeout(PING_TIMEOUT_S))
    except httpx.TimeoutException as error:
        raise EncoderTimeout(f"{server} did not answer a readiness ping within {PING_TIMEOUT_S:g} s ({type(error).__name__})") from error
    except httpx.TransportError as error:
        raise EncoderUnavailable(f"{server} is unreachable: {type(error).__name__}: {error}") from error
    if response.status_code >= 500:
        raise EncoderUnavailable(f"{server} answered {response.status_code}: {server_message(response)}")
