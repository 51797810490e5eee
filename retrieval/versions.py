"""Versions and the write journal: how a document always reads as one whole version.

Every write (an ingest, a delete) gets a version number, and the rows it stores carry it. Rows of a new
version are written beside the old ones (their primary key includes the version), never over them.
A write is announced in the journal before its first row is stored, committed in the journal once all
its rows are in, and removed from the journal after the rows it replaced are deleted:

    writing    its rows are being stored: readers do not see them; a crash rolls them back
    committed  all its rows are in: readers see only them, not the older versions of its documents;
               a crash finishes the clean-up
    rolledback its rows were removed after a failure (kept a while, so a reader that fetched such a
               row before its removal still drops it)

The journal is a folder of small JSON files on the data volume, each written atomically and fsync'd
before the write goes on, so it survives `kill -9` and power loss; the sweep at start (retrieval/
writes.py) finishes or rolls back what a crash interrupted. Readers filter what Milvus returns through
`Snapshot.visible`, taken after the rows were fetched, so a write that moves on meanwhile can only
hide rows, never mix two versions of a document in one answer.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

from retrieval.durable import fsync_folder, write_atomically

TxnState = Literal["writing", "committed", "rolledback"]
ROLLED_BACK_GRACE_S = 300.0  # how long a rolled-back write stays hidden after its rows were removed
SUFFIX = ".json"


class Versioned(Protocol):
    collection: str
    doc_id: str
    id: str
    version: int


@dataclass(frozen=True)
class Txn:
    """One write. It replaces (or, without rows, deletes) the documents `doc_ids`, the items `item_ids`,
    or, with neither, the whole collection."""

    version: int
    collection: str
    state: TxnState = "writing"
    doc_ids: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()
    whole_collection: bool = False
    new_blobs: tuple[str, ...] = ()  # blob keys this write created: removed if it rolls back
    old_blobs: tuple[str, ...] = ()  # blob keys to remove once it is committed
    created_collection: bool = False  # registered by this write: unregistered if it rolls back
    drop_collection: bool = False  # unregister the collection once committed
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None

    def replaces(self, row: Versioned) -> bool:
        """Whether this committed write makes `row` (an older version) invisible."""
        if row.collection != self.collection or row.version >= self.version:
            return False
        return self.whole_collection or row.doc_id in self.doc_ids or row.id in self.item_ids


class VersionClock:
    """Version numbers: microseconds since the epoch with 10 random low bits (so that two replicas
    writing in the same microsecond differ), strictly increasing within a process."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            candidate = (time.time_ns() // 1000) << 10 | random.getrandbits(10)
            self._last = max(candidate, self._last + 1)
            return self._last


@dataclass(frozen=True)
class Snapshot:
    """The writes in progress at one moment, and the rule that hides what readers must not see."""

    txns: tuple[Txn, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.txns)

    def visible(self, rows: Iterable[Versioned]) -> list[Versioned]:
        """`rows` without those of unfinished or rolled-back writes, without older versions of what a
        committed write replaced, and with one version per document (the newest) among the rest."""
        hidden = {txn.version for txn in self.txns if txn.state != "committed"}
        committed = [txn for txn in self.txns if txn.state == "committed"]
        kept = [row for row in rows if row.version not in hidden and not any(txn.replaces(row) for txn in committed)]
        newest: dict[tuple[str, str], int] = {}
        for row in kept:
            key = (row.collection, row.doc_id)
            newest[key] = max(newest.get(key, row.version), row.version)
        return [row for row in kept if row.version == newest[(row.collection, row.doc_id)]]


class Journal:
    """The write journal in a folder: one file per write, written atomically and fsync'd.

    The writes of this process are also kept in memory; on a Milvus server shared by several replicas
    (`shared=True`) readers also read the folder, to see the writes of the others."""

    def __init__(self, folder: Path, shared: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shared = shared
        self._own: dict[int, Txn] = {}
        self._lock = threading.Lock()

    def record(self, txn: Txn) -> None:
        """Write (or overwrite) the entry of `txn`; returns once it is on disk."""
        write_atomically(self._path(txn.version), json.dumps(asdict(txn)).encode())
        with self._lock:
            self._own[txn.version] = txn

    def set_state(self, txn: Txn, state: TxnState) -> Txn:
        updated = replace(txn, state=state, ended_at=time.time() if state == "rolledback" else None)
        self.record(updated)
        return updated

    def end(self, txn: Txn) -> None:
        """Forget a finished write."""
        try:
            self._path(txn.version).unlink()
        except FileNotFoundError:
            pass
        fsync_folder(self.folder)
        with self._lock:
            self._own.pop(txn.version, None)

    def own(self) -> list[Txn]:
        """The writes of this process still in the journal (which a sweep must leave alone)."""
        with self._lock:
            return list(self._own.values())

    def entries(self) -> list[Txn]:
        """Every write in the journal folder, oldest first (for the sweep and the doctor)."""
        found = []
        for path in sorted(self.folder.glob("*" + SUFFIX)):
            try:
                found.append(_txn_from_json(path.read_bytes()))
            except (OSError, ValueError, TypeError, KeyError):
                continue  # removed meanwhile, or torn: a journal file is only ever replaced whole
        return found

    def snapshot(self) -> Snapshot:
        """The writes readers must take into account now. Expired rolled-back entries are dropped."""
        with self._lock:
            txns = dict(self._own)
        if self.shared:
            txns.update({txn.version: txn for txn in self.entries()})
        now = time.time()
        live = [txn for txn in txns.values() if txn.ended_at is None or now - txn.ended_at < ROLLED_BACK_GRACE_S]
        return Snapshot(tuple(sorted(live, key=lambda txn: txn.version)))

    def expire_rolled_back(self) -> None:
        for txn in self.entries():
            if txn.state == "rolledback" and txn.ended_at is not None and time.time() - txn.ended_at >= ROLLED_BACK_GRACE_S:
                self.end(txn)

    def _path(self, version: int) -> Path:
        return self.folder / f"{version:020d}{SUFFIX}"


class KeyedLocks:
    """One lock per key, taken in sorted order (so two writers never deadlock), and forgotten when free."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._users: defaultdict[str, int] = defaultdict(int)

    @contextmanager
    def hold(self, keys: Iterable[str]) -> Iterator[None]:
        ordered = sorted(set(keys))
        with self._guard:
            for key in ordered:
                self._locks.setdefault(key, threading.Lock())
                self._users[key] += 1
        taken: list[str] = []
        try:
            for key in ordered:
                self._locks[key].acquire()  # never removed while it has users
                taken.append(key)
            yield
        finally:
            for key in reversed(taken):
                self._locks[key].release()
            with self._guard:
                for key in ordered:
                    self._users[key] -= 1
                    if not self._users[key]:
                        del self._users[key], self._locks[key]


def document_keys(collection: str, doc_ids: Iterable[str]) -> list[str]:
    return [f"{collection}\0{doc_id}" for doc_id in doc_ids]


def _txn_from_json(data: bytes) -> Txn:
    raw = json.loads(data)
    for name in ("doc_ids", "item_ids", "new_blobs", "old_blobs"):
        raw[name] = tuple(raw.get(name, ()))
    return Txn(**raw)
