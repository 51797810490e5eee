"""Stopping work nobody waits for any more: the client went away, or the server is shutting down.

The API gives every request a CancelToken, held in a context variable (api/cancellation.py sets it;
Starlette copies the context into the thread that runs a synchronous route), and cancels it when the
client disconnects. A shutdown cancels all work at once, background jobs included (they run without a
request's context). Encoders call check_cancelled() between batches (texts, Whisper segments, CLIP
batches, audio frames), so cancelled work stops within one batch. Ingest embeds everything before it
writes anything, so work cancelled while embedding stores nothing.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator


class Cancelled(Exception):
    """The work was cancelled because the client went away (the API answers 499, which nobody reads)."""


class ShuttingDown(Cancelled):
    """The work was cancelled because the server is shutting down (HTTP 503: try again elsewhere)."""


class CancelToken:
    """Set once, from any thread; read by the thread doing the work."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


_current: ContextVar[CancelToken | None] = ContextVar("prism_cancel_token", default=None)
_shutdown = CancelToken()  # one for the process: a shutdown stops every piece of work


def check_cancelled() -> None:
    """Raise ShuttingDown or Cancelled if the work in this context should stop; cheap enough to call
    between any two batches."""
    if _shutdown.cancelled:
        raise ShuttingDown(_shutdown.reason)
    token = _current.get()
    if token is not None and token.cancelled:
        raise Cancelled(token.reason)


def cancel_all(reason: str) -> None:
    """Cancel all work in this process, now and from now on (the server is shutting down)."""
    _shutdown.cancel(reason)


def shutting_down() -> bool:
    return _shutdown.cancelled


@contextmanager
def cancellation(token: CancelToken) -> Iterator[CancelToken]:
    """Run the block (and whatever copies its context, such as Starlette's thread pool) under `token`."""
    reset = _current.set(token)
    try:
        yield token
    finally:
        _current.reset(reset)
