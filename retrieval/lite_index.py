"""Exact search in memory for Milvus Lite: each space's unit vectors in one numpy matrix, beside the
fields that filters, visibility and the write path read.

Milvus Lite is a pure-Python engine: a search loops in Python over every stored row and copies and
re-normalises the whole matrix (176 ms at 100k rows, 3 s at 1M, docs/BENCHMARKS.md), and every query
by a field other than the primary key scans the collection. Lite is one process by design, so the
process that owns it can keep what those need in memory, in step with every write and delete
(retrieval/store_index.py changes it together with Milvus; retrieval/lite_columns.py holds the arrays):

    vectors       float32, the vectors as stored, and the inverse of each one's length (cosine
                  similarity is then a dot product times that)
    codes         int32 per row for the string fields (id, collection, modality, doc_id, source, title,
                  content_hash and the metadata object), each value stored once (Interner)
    created_at, version   int64 per row
    alive         False once the row is deleted (slots are appended, never reused; compacted when most
                  are dead)
    scan          a float16 copy of the unit vectors (retrieval/lite_scan.py)

A search evaluates the filter on the columns, scans the float16 copy of the rows it allows for the
candidates of the exact top k, and scores those exactly in float32 (a filter that allows few rows has
them all scored at once); the store applies the write journal's visibility and fetches the top rows'
fields from Milvus by primary key. Readers never wait for writers: a write appends beyond what readers see and then publishes the
new size, and growing or compacting builds new arrays, so a reader keeps a consistent view
(`View`) for as long as it needs it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from retrieval.filters import Condition
from retrieval.lite_columns import INT_COLUMNS, STRING_COLUMNS, Interner, KeyRow, Storage, View, canonical_json
from retrieval.lite_match import RowMatch
from retrieval.lite_scan import HalfScan

FILTERABLE = ("collection", "modality", "doc_id", "source", "title")  # typed string fields a filter may name
RANGES = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less}
COMPACT_MIN_DEAD = 4096  # compact once this many slots are dead and they outnumber the live ones
GATHER_AT_MOST = 4096  # a filter allowing at most this many rows: score them exactly at once (a gather of the matrix)


class Unsupported(ValueError):
    """A filter the index cannot evaluate: the caller searches Milvus instead."""


class LiteIndex:
    """The rows of one Milvus Lite space, in memory. Writers hold `writing` across their Milvus call and
    the index update, so the two change together; readers take no lock beyond a moment's."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.writing = threading.RLock()
        self._publish = threading.Lock()
        self._view = View(self._empty_storage(0), 0)
        self.live = 0
        self.disabled: str | None = None  # why the stores sharing it must stop using it

    def disable(self, reason: str) -> None:
        """Stop serving (every store sharing the index falls back to Milvus) and free the arrays."""
        with self.writing:
            self.disabled = reason
            self._published(self._empty_storage(0), 0)
            self.live = 0

    # ----------------------------------------------------------------- writing

    def add_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Rows as the store upserts them (store_schema.upsert_batches). A row whose (id, version) is
        already here replaces it."""
        if not rows:
            return
        columns: dict[str, Any] = {name: [row[name] for row in rows] for name in STRING_COLUMNS if name != "metadata"}
        columns["metadata"] = [canonical_json(row["metadata"]) for row in rows]
        for name in INT_COLUMNS:
            columns[name] = np.asarray([row[name] for row in rows], dtype=np.int64)
        self.add_columns(np.asarray([row["vector"] for row in rows], dtype=np.float32), columns)

    def add_columns(self, vectors: np.ndarray, columns: dict[str, Any]) -> None:
        """Append rows given column-wise: `vectors` (n, dimension), a sequence or Arrow array per string
        column (metadata as canonical JSON text), an int64 array per int column."""
        with self.writing:
            count = len(vectors)
            if count == 0:
                return
            storage, size = self._view.storage, self._view.size
            codes = {name: storage.interners[name].encode(columns[name]) for name in STRING_COLUMNS}
            self._parse_new_metadata(storage)
            replaced = self._same_keys(codes["id"], columns["version"])
            if size + count > storage.capacity:
                storage = self._grown(storage, size, size + count)
            end = size + count
            storage.vectors[size:end] = vectors
            storage.inverse_norms[size:end] = _inverse_norms(storage.vectors[size:end])
            if storage.scan is not None:
                storage.scan.add(storage.vectors[size:end] * storage.inverse_norms[size:end, None])
            storage.alive[size:end] = True
            for name in STRING_COLUMNS:
                storage.codes[name][size:end] = codes[name]
            for name in INT_COLUMNS:
                storage.ints[name][size:end] = columns[name]
            self.live += count - self._kill(storage, replaced)
            self._published(storage, end)

    def remove(self, slots: np.ndarray) -> int:
        """Mark rows deleted; returns how many were alive."""
        with self.writing:
            removed = self._kill(self._view.storage, slots)
            self.live -= removed
            view = self._view
            dead = view.size - self.live
            if dead >= COMPACT_MIN_DEAD and dead > self.live:
                self._published(*self._compacted(view.storage, view.size))
            return removed

    def _kill(self, storage: Storage, slots: np.ndarray) -> int:
        slots = np.asarray(slots, dtype=np.int64)
        if not len(slots):
            return 0
        alive = slots[storage.alive[slots]]
        storage.alive[alive] = False
        return len(alive)

    def slots_of_keys(self, row_ids: Iterable[str]) -> np.ndarray:
        """Slots of the live rows with these primary keys (item id "@" version in hex)."""
        pairs = [row_id.rpartition("@") for row_id in row_ids]
        ids = [item_id for item_id, _, _ in pairs]
        versions = np.asarray([int(version, 16) for _, _, version in pairs], dtype=np.int64)
        interner = self._view.storage.interners["id"]
        known = [index for index, item_id in enumerate(ids) if item_id in interner.code_of]
        codes = np.asarray([interner.code_of[ids[index]] for index in known], dtype=np.int32)
        return self._same_keys(codes, versions[known])

    def _same_keys(self, id_codes: np.ndarray, versions: np.ndarray) -> np.ndarray:
        """Slots of live rows with the same (id, version) as a row being added."""
        storage, size = self._view.storage, self._view.size
        if not len(id_codes):
            return np.zeros(0, dtype=np.int64)
        candidates = np.flatnonzero(np.isin(storage.codes["id"][:size], id_codes) & storage.alive[:size])
        if not len(candidates):
            return candidates
        wanted = set(zip(id_codes.tolist(), np.asarray(versions).tolist()))
        stored = zip(storage.codes["id"][candidates].tolist(), storage.ints["version"][candidates].tolist())
        return np.asarray([slot for slot, key in zip(candidates.tolist(), stored) if key in wanted], dtype=np.int64)

    def _parse_new_metadata(self, storage: Storage) -> None:
        values = storage.interners["metadata"].values
        storage.metadata.extend(json.loads(text) for text in values[len(storage.metadata) :])

    def _grown(self, storage: Storage, size: int, needed: int) -> Storage:
        grown = self._empty_storage(max(needed, int(storage.capacity * 1.25) + 1024), storage.interners, storage.metadata, storage.scan)
        grown.vectors[:size] = storage.vectors[:size]
        grown.inverse_norms[:size] = storage.inverse_norms[:size]
        grown.alive[:size] = storage.alive[:size]
        for name in STRING_COLUMNS:
            grown.codes[name][:size] = storage.codes[name][:size]
        for name in INT_COLUMNS:
            grown.ints[name][:size] = storage.ints[name][:size]
        grown.metadata_matches = storage.metadata_matches
        return grown

    def _compacted(self, storage: Storage, size: int) -> tuple[Storage, int]:
        """The live rows only, with interners that hold only their values."""
        keep = np.flatnonzero(storage.alive[:size])
        fresh = self._empty_storage(len(keep) + len(keep) // 8 + 1024)
        fresh.vectors[: len(keep)] = storage.vectors[keep]
        fresh.inverse_norms[: len(keep)] = storage.inverse_norms[keep]
        fresh.alive[: len(keep)] = True
        for name in STRING_COLUMNS:
            used, remapped = np.unique(storage.codes[name][keep], return_inverse=True)
            fresh.codes[name][: len(keep)] = remapped
            fresh.interners[name].encode([storage.interners[name].values[code] for code in used.tolist()])
        fresh.metadata.extend(json.loads(text) for text in fresh.interners["metadata"].values)
        for name in INT_COLUMNS:
            fresh.ints[name][: len(keep)] = storage.ints[name][keep]
        if fresh.scan is not None:
            fresh.scan.add(fresh.vectors[: len(keep)] * fresh.inverse_norms[: len(keep), None])
        return fresh, len(keep)

    def _empty_storage(self, capacity: int, interners: dict[str, Interner] | None = None, metadata: list | None = None, scan: HalfScan | None = None) -> Storage:
        return Storage(
            vectors=np.zeros((capacity, self.dimension), dtype=np.float32),
            inverse_norms=np.zeros(capacity, dtype=np.float32),
            alive=np.zeros(capacity, dtype=bool),
            codes={name: np.zeros(capacity, dtype=np.int32) for name in STRING_COLUMNS},
            ints={name: np.zeros(capacity, dtype=np.int64) for name in INT_COLUMNS},
            interners=interners if interners is not None else {name: Interner() for name in STRING_COLUMNS},
            metadata=metadata if metadata is not None else [],
            scan=scan if scan is not None else (HalfScan(self.dimension) if HalfScan.available() else None),
        )

    def _published(self, storage: Storage, size: int) -> None:
        with self._publish:
            self._view = View(storage, size)

    # ----------------------------------------------------------------- reading

    def view(self) -> View:
        with self._publish:
            return self._view

    def search(self, vector: Sequence[float], limit: int, conditions: Sequence[Condition]) -> list[tuple[KeyRow, float]]:
        """The `limit` live rows most similar to `vector` (cosine) among those meeting every condition,
        best first. Raises Unsupported for a condition it cannot evaluate."""
        view = self.view()
        storage, size = view.storage, view.size
        mask = self._mask(view, conditions)
        allowed_count = int(np.count_nonzero(mask))
        if not allowed_count:
            return []
        query = np.asarray(vector, dtype=np.float32)
        query = query * _inverse_norms(query[None, :])[0]
        count = min(limit, allowed_count)
        slots = None
        if allowed_count <= GATHER_AT_MOST:  # a selective filter: score only the rows it allows
            slots = np.flatnonzero(mask)
        elif storage.scan is not None and storage.scan.rows >= size:
            slots = storage.scan.candidates(query, mask, count, allowed_count)
        if slots is not None:
            scores = (storage.vectors[slots] @ query) * storage.inverse_norms[slots]
        else:  # score every row in float32, and rule out those the filter does not allow
            scores = (storage.vectors[:size] @ query) * storage.inverse_norms[:size]
            scores[~mask] = -np.inf
        top = np.argpartition(-scores, count - 1)[:count] if count < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")][:count]
        return [(KeyRow(storage, int(position if slots is None else slots[position])), float(scores[position])) for position in top]

    def rows(self, match: RowMatch) -> list[KeyRow]:
        """Every live row `match` selects."""
        view = self.view()
        return [KeyRow(view.storage, int(slot)) for slot in np.flatnonzero(self.match_mask(view, match))]

    def slots(self, match: RowMatch) -> np.ndarray:
        view = self.view()
        return np.flatnonzero(self.match_mask(view, match))

    def row_ids(self, slots: np.ndarray) -> list[str]:
        storage = self.view().storage
        return [KeyRow(storage, int(slot)).row_id for slot in slots]

    def vectors_of(self, match: RowMatch, by: str) -> dict[str, np.ndarray]:
        """value of column `by` -> the vector of the first live row with it, among the rows `match` selects."""
        view = self.view()
        found: dict[str, np.ndarray] = {}
        for slot in np.flatnonzero(self.match_mask(view, match)).tolist():
            value = view.storage.interners[by].values[view.storage.codes[by][slot]]
            if value not in found:
                found[value] = view.storage.vectors[slot].copy()
        return found

    def count(self, match: RowMatch) -> int:
        view = self.view()
        return int(np.count_nonzero(self.match_mask(view, match)))

    def match_mask(self, view: View, match: RowMatch) -> np.ndarray:
        """Live rows that `match` selects (RowMatch: the structured form of the store's own expressions)."""
        mask = view.storage.alive[: view.size].copy()
        for column, values in match.strings():
            mask &= self._in(view, column, values)
        for column, op, bound in match.ranges():
            mask &= RANGES[op](view.storage.ints[column][: view.size], bound) if op in RANGES else view.storage.ints[column][: view.size] == bound
        for excluded in match.excluded:
            mask &= ~self.match_mask(view, excluded)
        return mask

    def _mask(self, view: View, conditions: Sequence[Condition]) -> np.ndarray:
        mask = view.storage.alive[: view.size].copy()
        for condition in conditions:
            if condition.field in FILTERABLE and condition.op == "in":
                mask &= self._in(view, condition.field, condition.values)
            elif condition.field == "created_at" and condition.op == "in":
                mask &= np.isin(view.storage.ints["created_at"][: view.size], np.asarray(condition.values, dtype=np.int64))
            elif condition.field == "created_at" and condition.op in RANGES:
                mask &= RANGES[condition.op](view.storage.ints["created_at"][: view.size], int(condition.values[0]))
            elif condition.field.startswith("metadata.") and condition.op == "in":
                mask &= np.isin(view.storage.codes["metadata"][: view.size], self._metadata_codes(view.storage, condition))
            else:
                raise Unsupported(f"the in-memory index cannot evaluate {condition}")
        return mask

    def _in(self, view: View, column: str, values: Iterable[str]) -> np.ndarray:
        codes = view.storage.interners[column].known(values)
        stored = view.storage.codes[column][: view.size]
        if len(codes) == 1:
            return stored == codes[0]
        return np.isin(stored, codes)

    def _metadata_codes(self, storage: Storage, condition: Condition) -> np.ndarray:
        """Codes of the metadata objects whose value under the key equals one of the wanted values, as
        Milvus Lite compares them (Python's ==: 1 matches 1.0 and true; a missing key, a list or an
        object matches nothing). Each distinct object is evaluated once, and the answer kept."""
        key = condition.field.removeprefix("metadata.")
        cache_key = (key, condition.values)
        known = storage.metadata_matches.get(cache_key, np.zeros(0, dtype=bool))
        total = len(storage.metadata)
        if len(known) < total:
            fresh = [_json_equals(storage.metadata[code].get(key), condition.values) for code in range(len(known), total)]
            known = np.concatenate([known, np.asarray(fresh, dtype=bool)])
            storage.metadata_matches[cache_key] = known
        return np.flatnonzero(known).astype(np.int32)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (not counting the interned values)."""
        storage = self.view().storage
        arrays = (storage.vectors, storage.inverse_norms, storage.alive, *storage.codes.values(), *storage.ints.values())
        return sum(array.nbytes for array in arrays) + (storage.scan.nbytes if storage.scan is not None else 0)


def _json_equals(value: Any, wanted: tuple[Any, ...]) -> bool:
    if value is None or isinstance(value, (list, dict)):
        return False
    return any(value == candidate for candidate in wanted)


def _inverse_norms(vectors: np.ndarray) -> np.ndarray:
    """1 / the length of each row, as Milvus' COSINE metric scales them (0 for a zero row)."""
    norms = np.linalg.norm(vectors, axis=1)
    return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
