"""Bookkeeping for Milvus Lite's in-process servers: how many stores have each data directory
open, releasing a directory's server when the last one closes, and hiding the one log record
that Lite's server makes noise with. Importing this module installs that log filter."""

from __future__ import annotations

import logging
import threading
from collections import Counter

# Milvus Lite runs an in-process gRPC server per data directory and keeps it, and the
# directory's lock, until the interpreter exits. The last store closing a path releases it, so
# another process can open the directory afterwards and test runs do not pile up servers.
_lite_open_counts: Counter[str] = Counter()
_lite_open_counts_lock = threading.Lock()


class _HideLiteUnimplemented(logging.Filter):
    """pymilvus asks for AllocTimestamp when it creates a collection; Milvus Lite's in-process
    gRPC server does not implement it, pymilvus carries on without it, and grpc logs the refusal
    as an ERROR with a traceback. Hide exactly that record, so real errors stay visible."""

    def filter(self, record: logging.LogRecord) -> bool:
        unimplemented = record.exc_info is not None and isinstance(record.exc_info[1], NotImplementedError)
        return not (unimplemented and record.getMessage().startswith("Exception calling application"))


logging.getLogger("grpc._server").addFilter(_HideLiteUnimplemented())


def lite_acquired(path: str) -> None:
    """A store opened the Milvus Lite directory `path`."""
    with _lite_open_counts_lock:
        _lite_open_counts[path] += 1


def lite_released(path: str) -> None:
    """A store closed the Milvus Lite directory `path`; the last one releases its server."""
    with _lite_open_counts_lock:
        _lite_open_counts[path] -= 1
        if _lite_open_counts[path] > 0:
            return
        del _lite_open_counts[path]
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(path)
