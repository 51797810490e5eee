"""Run a real Prism server on a loopback port inside the test process."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import httpx
import uvicorn

from api.app import create_app
from api.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def poll(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    """Wait for a condition with a deadline; a timeout fails loudly with what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def serve_app(app, port: int | None = None) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a background thread; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        poll(lambda: server.started or not thread.is_alive(), 60, f"uvicorn on port {port}")
        if not server.started:
            raise RuntimeError("uvicorn failed to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def prism_server(settings: Settings, wait_ready: bool = True) -> Iterator[str]:
    """A real Prism server on loopback; waits until /readyz says the models are loaded."""
    app = create_app(settings)
    with serve_app(app) as url:
        if wait_ready:
            app.state.prism.wait_loaded(timeout=300)
            if app.state.prism.library is None:
                raise RuntimeError(f"Prism did not become ready: {app.state.prism.error}")
            assert httpx.get(f"{url}/readyz").status_code == 200
        yield url
