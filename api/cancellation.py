"""Cancelling a request's work when its client disconnects.

Each HTTP request runs under a CancelToken of its own (encoders.cancel), held in a context variable
that Starlette copies into the worker thread of a synchronous route. Once the app has read the whole
request body, this middleware listens on the connection; when the client goes away before the
response is complete, the token is cancelled, and the encoders stop at their next check (between
batches) with Cancelled: the route answers 499, to nobody.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from encoders.cancel import CancelToken, cancellation

DISCONNECTED = "the client disconnected"


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
        responded = False

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
            nonlocal responded
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                responded = True  # what happens to the connection now is no reason to cancel
            await send(message)

        # A plain task, not a task group: exceptions of the app must leave as they are (a task group
        # would wrap them in an ExceptionGroup, which the error handlers and BodySizeLimit do not expect).
        try:
            with cancellation(token):
                await self.app(scope, receive_body, send_and_note)
        finally:
            if watcher is not None:
                watcher.cancel()
