"""Cancelling a request's work when its client disconnects.

Each HTTP request runs under a CancelToken of its own (encoders.cancel), held in a context variable
that Starlette copies into the worker thread of a synchronous route. Once the app has read the whole
request body, this middleware listens on the connection; when the client goes away before the
response is complete, the token is cancelled, and the encoders stop at their next check (between
batches) with Cancelled: the route answers 499, to nobody. When a shutdown runs past its bound and
the server abandons a request still at work, the client gets 503 shutting_down, not a 500.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from encoders.cancel import CancelToken, cancellation, shutting_down

DISCONNECTED = "the client disconnected"
SHUTTING_DOWN = "the server is shutting down: retry on another instance or once it is back"


class CancelOnDisconnect:
    """ASGI middleware: a CancelToken per request, cancelled when the client disconnects."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = CancelToken()
        gone = asyncio.Event()  # set when the client has disconnected
        watcher: asyncio.Task | None = None
        body_read = False
        started = responded = False

        async def watch() -> None:
            # After the body, the server has nothing more to deliver but http.disconnect.
            while (await receive())["type"] != "http.disconnect":
                pass
            if not responded:
                token.cancel(DISCONNECTED)
            gone.set()

        async def receive_body() -> Message:
            nonlocal body_read, watcher
            if body_read:  # the watcher owns the connection now; pass on what it hears
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                token.cancel(DISCONNECTED)
                body_read = True
                gone.set()
            elif not message.get("more_body", False):
                body_read = True
                watcher = asyncio.create_task(watch())
            return message

        async def send_and_note(message: Message) -> None:
            nonlocal responded, started
            started = started or message["type"] == "http.response.start"
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                responded = True  # what happens to the connection now is no reason to cancel
            await send(message)

        # A plain task, not a task group: exceptions of the app must leave as they are (a task group
        # would wrap them in an ExceptionGroup, which the error handlers and BodySizeLimit do not expect).
        try:
            with cancellation(token):
                await self.app(scope, receive_body, send_and_note)
        except asyncio.CancelledError:
            if started or not shutting_down():
                raise
            await send_shutting_down(send)  # the server gave up waiting for this request: say why
        finally:
            if watcher is not None:
                watcher.cancel()


async def send_shutting_down(send: Send) -> None:
    body = json.dumps({"error": {"code": "shutting_down", "message": SHUTTING_DOWN}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
