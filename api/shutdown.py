"""A shutdown that ends within PRISM_SHUTDOWN_TIMEOUT_S, whatever is running.

On SIGTERM or Ctrl-C uvicorn stops accepting connections and waits for the requests in flight. Those
get the first half of the timeout to finish; then all work in the process is cancelled (encoders.cancel:
encoders stop at their next check, between batches, and the requests answer 503 shutting_down; a
background job fails saying so), uvicorn stops waiting at nine tenths, the store is closed, and if
anything still holds the process at the full timeout (a call that never checks, such as one stuck in a
driver), it exits there, saying so in the log.
"""

from __future__ import annotations

import logging
import os
import threading
from types import FrameType

import uvicorn

from api.cancellation import SHUTTING_DOWN
from encoders.cancel import cancel_all

log = logging.getLogger("prism")



class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, timeout_s: float) -> None:
        super().__init__(config)
        self.timeout_s = timeout_s

    @classmethod
    def for_app(cls, app, host: str, port: int, log_level: str, timeout_s: float) -> GracefulServer:
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=0.9 * timeout_s)
        return cls(config, timeout_s)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.should_exit
        super().handle_exit(sig, frame)
        if first:
            log.info("shutting down: requests in flight have %g s to finish, then their work is cancelled", self.timeout_s / 2)
            _after(self.timeout_s / 2, cancel_all, SHUTTING_DOWN)
            _after(self.timeout_s, _exit_now, self.timeout_s)


def _after(seconds: float, function, *args) -> None:
    timer = threading.Timer(seconds, function, args)
    timer.daemon = True  # never the reason the process stays
    timer.start()


def _exit_now(timeout_s: float) -> None:
    log.error("still running %g s after the signal to stop (PRISM_SHUTDOWN_TIMEOUT_S): exiting now", timeout_s)
    logging.shutdown()
    os._exit(1)
