"""A half-precision scan that finds the candidates of an exact search in half the memory traffic.

Scoring every stored vector is bound by memory bandwidth: 100k float32 vectors of 384 dimensions are
154 MB to read per query. faiss's IndexScalarQuantizer keeps a float16 copy (half of that) and scans it
with SIMD on one thread (8.5 ms at 100k here, against 8.8 ms for numpy's float32 product on two BLAS
threads and 14-25 ms on one). Float16 scores are not exact, but their error is bounded (error_bound):
for unit vectors, rounding each component to float16 (relative error 2^-11, by Cauchy-Schwarz at most
2^-11 on the score), float16's subnormals (2^-25 per component) and float32 rounding in the sum. If tau
is the k-th best float16 score, every row of the exact top k has a float16 score of at least tau - 2 *
bound, so those rows are the candidates: the caller scores them exactly in float32 and keeps the best
k. The answer is the exact one; the float16 copy only decides which rows are read exactly.

faiss is not safe for a search during an add, so adds take a writer's turn (SharedLock); searches
share. Without faiss (its import failing), LiteIndex scores every row in float32 with numpy.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

try:
    import faiss
except ImportError:  # pragma: no cover - faiss-cpu is a dependency; LiteIndex works without it
    faiss = None

BAND_EXTRA = 64  # candidates asked for beyond k at first
MAX_CANDIDATES = 4096  # past this many rows within the band (many near-equal scores), score all rows exactly



class SharedLock:
    """Any number of readers, or one writer; a waiting writer goes before readers that come later."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._changed:
            while self._writer or self._writers_waiting:
                self._changed.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._changed:
                self._readers -= 1
                self._changed.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._changed:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._changed.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._changed:
                self._writer = False
                self._changed.notify_all()


def error_bound(dimension: int) -> float:
    """The most a float16 score of unit vectors can differ from the float32 one, with a margin of 25%."""
    return 1.25 * (2.0**-11 + (dimension + 8) * 2.0**-24 + dimension**0.5 * 2.0**-25)


class HalfScan:
    """float16 copies of unit vectors, one per slot of a LiteIndex storage, in slot order."""

    def __init__(self, dimension: int) -> None:
        # No faiss.omp_set_num_threads here: OpenMP's thread count belongs to the calling thread and
        # the OpenMP runtime is PyTorch's too, so it would narrow that thread's PyTorch operations as
        # well. Scans follow PRISM_CPU_THREADS (encoders/base.py set_cpu_threads), with passive waits.
        self._index = faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        self._lock = SharedLock()
        self._band = 2 * error_bound(dimension)

    @staticmethod
    def available() -> bool:
        return faiss is not None

    @property
    def rows(self) -> int:
        return int(self._index.ntotal)

    def add(self, unit_vectors: np.ndarray) -> None:
        with self._lock.writing():
            self._index.add(np.ascontiguousarray(unit_vectors, dtype=np.float32))

    def candidates(self, query: np.ndarray, mask: np.ndarray, count: int, allowed: int) -> np.ndarray | None:
        """Slots (below len(mask), where mask is True) that hold the exact top `count` by cosine with the
        unit `query`; None if too many rows score alike for the band to pay (score them all instead)."""
        bitmap = np.packbits(mask, bitorder="little")
        params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)))
        wanted = min(allowed, count + BAND_EXTRA)
        query = np.ascontiguousarray(query[None, :], dtype=np.float32)
        while True:
            with self._lock.reading():
                scores, slots = self._index.search(query, wanted, params=params)
            scores, slots = scores[0], slots[0]
            found = slots >= 0
            scores, slots = scores[found], slots[found]
            if len(slots) < count:  # rows the index has not been given yet: cannot happen, but be exact
                return None
            floor = scores[count - 1] - self._band
            if wanted >= allowed or scores[-1] < floor:
                return slots[scores >= floor]
            if wanted >= MAX_CANDIDATES:
                return None
            wanted = min(allowed, wanted * 4, MAX_CANDIDATES)

    @property
    def nbytes(self) -> int:
        return self.rows * self._index.code_size
