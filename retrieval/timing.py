"""Per-stage wall-clock timings, reported in every response and fed to /metrics."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class StageTimer:
    def __init__(self) -> None:
        self._started = time.perf_counter()
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - started) * 1000

    def finish(self) -> dict[str, float]:
        """The stages so far plus `total`, in milliseconds rounded to microseconds."""
        timings = {**self.ms, "total": (time.perf_counter() - self._started) * 1000}
        return {name: round(ms, 3) for name, ms in timings.items()}
