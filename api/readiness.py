"""Readiness: a status word per dependency for the public /readyz, and the details behind the key.

The public probe says `ok`, `disabled`, `unavailable` or `not answering` per dependency and nothing
else: no URLs, model names or error texts, which GET /v1/info (behind the API key) reports instead.

Probing never blocks the event loop nor waits for the thread pool that runs the routes (requests
stuck on a dependency that hangs can fill it). Each ping runs in a daemon thread of its own, bounded by
PROBE_TIMEOUT_S, and at most one ping per dependency runs at a time: a probe arriving while the last
ping still hangs waits for that one instead of starting another, so a hanging dependency costs one
thread, not one per probe.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

from api.settings import Settings
from encoders.http import EncoderTimeout
from retrieval import Library

PROBE_TIMEOUT_S = 3.0  # a probe answers within this, whatever the dependencies do

OK = "ok"
DISABLED = "disabled"  # turned off in the settings
UNAVAILABLE = "unavailable"  # not loaded, unreachable, or failing
NOT_ANSWERING = "not answering"  # reachable, but no answer within the probe's timeout

REQUIRED = ("store", "text_encoder")  # without these the server is not ready; the rest are optional


@dataclass(frozen=True)
class Check:
    status: str  # one of the words above: all the public probe shows
    detail: str  # what /v1/info shows: backend, model, and why when not ok


def public_view(checks: dict[str, Check]) -> dict[str, str]:
    return {name: check.status for name, check in checks.items()}


def detailed_view(checks: dict[str, Check]) -> dict[str, str]:
    return {name: check.detail for name, check in checks.items()}


def failing(checks: dict[str, Check]) -> list[str]:
    """The required dependencies that are not ok, in the order of REQUIRED."""
    return [name for name in REQUIRED if checks[name].status != OK]


async def probe(library: Library, settings: Settings) -> dict[str, Check]:
    """Every dependency's check; the pings run side by side, so a probe takes at most PROBE_TIMEOUT_S."""
    text = library.text_model
    store, text_encoder, reranker = await asyncio.gather(
        _pinged(library.store, library.store.ping, library.store.kind),
        _pinged(library.encoder, getattr(library.encoder, "ping", None), f"{text.backend} {text.name}"),
        _reranker(library, settings),
    )
    image, audio = library.image_model, library.audio_model
    return {
        "store": store,
        "text_encoder": text_encoder,
        "image_encoder": _loaded(f"{image.name}" if image else None, not settings.image_model, library.image_error),
        "audio_transcriber": _loaded(f"{audio.backend} {audio.name}" if audio else None, not settings.whisper_model, library.audio_error),
        "reranker": reranker,
    }


def _loaded(label: str | None, disabled: bool, error: str | None) -> Check:
    """An optional in-process model: there if it loaded."""
    if label is not None:
        return Check(OK, f"{label} ok")
    status = DISABLED if disabled else UNAVAILABLE
    return Check(status, f"{status}: {error}")


async def _reranker(library: Library, settings: Settings) -> Check:
    reranker = library.reranker
    if reranker is None:
        status = DISABLED if settings.rerank_backend == "none" else UNAVAILABLE
        return Check(status, f"{status}: {library.rerank_error}")
    return await _pinged(reranker, getattr(reranker, "ping", None), f"{reranker.info.backend} {reranker.info.name}")


async def _pinged(owner: object, ping: Callable[[], None] | None, label: str) -> Check:
    """`owner`'s check: ok if it has no ping (an in-process model is there once loaded) or its ping
    returns within PROBE_TIMEOUT_S."""
    if ping is None:
        return Check(OK, f"{label} ok")
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(_ping_once(owner, ping))), PROBE_TIMEOUT_S)
    except (asyncio.TimeoutError, EncoderTimeout) as error:
        reason = str(error) or f"no answer within {PROBE_TIMEOUT_S:g} s"
        return Check(NOT_ANSWERING, f"{label}: {NOT_ANSWERING}: {reason}")
    except Exception as error:  # noqa: BLE001 - any failure of a ping means the dependency is not usable
        return Check(UNAVAILABLE, f"{label}: {UNAVAILABLE}: {error}")
    return Check(OK, f"{label} ok")


_running: dict[int, Future] = {}  # id(owner) -> its ping in progress
_running_lock = threading.Lock()


def _ping_once(owner: object, ping: Callable[[], None]) -> Future:
    """The ping of `owner` in progress, or a new one in a daemon thread of its own."""
    with _running_lock:
        future = _running.get(id(owner))
        if future is not None and not future.done():
            return future
        future = Future()
        _running[id(owner)] = future

    def run() -> None:
        try:
            ping()
        except BaseException as error:  # noqa: BLE001 - handed to whoever awaits the probe
            future.set_exception(error)
        else:
            future.set_result(None)

    threading.Thread(target=run, name="prism-probe", daemon=True).start()
    return future
