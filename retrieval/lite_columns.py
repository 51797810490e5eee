"""The columns of the in-memory index (retrieval/lite_index.py): one generation of its arrays (Storage),
a reader's consistent view of them (View), string values stored once each (Interner), and what the
index knows of one row (KeyRow)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrieval.lite_scan import HalfScan
from retrieval.store_schema import row_key

STRING_COLUMNS = ("id", "collection", "modality", "doc_id", "source", "title", "content_hash", "metadata")
INT_COLUMNS = ("created_at", "version")


def canonical_json(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Interner:
    """Each distinct value once: value -> int32 code and back. Only ever grows (codes stay valid for
    readers holding older arrays); compaction builds a new one."""

    def __init__(self) -> None:
        self.code_of: dict[Any, int] = {}
        self.values: list[Any] = []

    def code(self, value: Any) -> int:
        found = self.code_of.get(value)
        if found is None:
            found = self.code_of[value] = len(self.values)
            self.values.append(value)
        return found

    def encode(self, values: Sequence[Any] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Codes of many values; an Arrow array is dictionary-encoded first (each distinct value looked up once)."""
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            encoded = pc.dictionary_encode(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values)
            distinct = encoded.dictionary.to_pylist()
            if not self.values:  # the first fill: every distinct value is new, in order
                self.code_of = dict(zip(distinct, range(len(distinct))))
                self.values = distinct
                mapping = np.arange(len(distinct), dtype=np.int32)
            else:
                mapping = np.fromiter((self.code(value) for value in distinct), dtype=np.int32, count=len(distinct))
            return mapping[encoded.indices.to_numpy(zero_copy_only=False)] if len(mapping) else np.zeros(0, np.int32)
        return np.fromiter((self.code(value) for value in values), dtype=np.int32, count=len(values))

    def known(self, values: Iterable[Any]) -> np.ndarray:
        """Codes of those of `values` that were ever seen (a value never seen matches no row)."""
        codes = [self.code_of[value] for value in values if value in self.code_of]
        return np.asarray(sorted(set(codes)), dtype=np.int32)


@dataclass
class Storage:
    """One generation of arrays (replaced whole when it grows or is compacted)."""

    vectors: np.ndarray
    inverse_norms: np.ndarray
    alive: np.ndarray
    codes: dict[str, np.ndarray]
    ints: dict[str, np.ndarray]
    interners: dict[str, Interner]
    metadata: list[dict[str, Any]]  # parsed metadata object per metadata code
    scan: HalfScan | None  # float16 copies of the unit vectors, slot by slot (None without faiss)
    metadata_matches: dict[tuple[str, tuple[Any, ...]], np.ndarray] = field(default_factory=dict)

    @property
    def capacity(self) -> int:
        return len(self.alive)


@dataclass(frozen=True)
class View:
    storage: Storage
    size: int


class KeyRow:
    """What the index knows of one row: enough for visibility (versions.Snapshot), listings and the
    row's primary key."""

    __slots__ = ("slot", "id", "collection", "modality", "doc_id", "content_hash", "created_at", "version")

    def __init__(self, storage: Storage, slot: int) -> None:
        self.slot = slot
        values = {name: storage.interners[name].values[storage.codes[name][slot]] for name in ("id", "collection", "modality", "doc_id", "content_hash")}
        self.id, self.collection, self.modality = values["id"], values["collection"], values["modality"]
        self.doc_id, self.content_hash = values["doc_id"], values["content_hash"]
        self.created_at = int(storage.ints["created_at"][slot])
        self.version = int(storage.ints["version"][slot])

    @property
    def row_id(self) -> str:
        return row_key(self.id, self.version)
