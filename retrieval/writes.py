"""Every change to what is stored goes through the Writer: versioned, journaled, locked per document.

    replace  a new version of some documents (their rows in every vector space, and their originals)
    delete   documents, single items, or a whole collection

Each is one write in the journal (retrieval/versions.py): announced before anything is stored,
committed once all of it is stored (the moment it is acknowledged), and finished by removing what it
replaced. A failure before the commit rolls it back, so an error answer means nothing changed; a crash
is finished or rolled back by `recover` at the next start. Writes to the same documents take turns
(a lock per document in this process); everything else runs side by side.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from retrieval.blobs import BlobOwner, BlobStore
from retrieval.store import MilvusStore
from retrieval.types import Item
from retrieval.versions import Journal, KeyedLocks, Txn, VersionClock, document_keys

log = logging.getLogger("prism")


@dataclass(frozen=True)
class BlobWrite:
    """An original to store with a write: it belongs to the item `owner.id` of `owner.collection`."""

    key: str
    data: bytes
    content_type: str
    filename: str
    owner: BlobOwner


class Writer:
    def __init__(self, spaces: Mapping[str, MilvusStore], blobs: BlobStore, journal: Journal) -> None:
        """`spaces`: the vector spaces by name ("text" first: it holds the collection registry).
        Without `journal.shared` this process is the only one using the store (Milvus Lite)."""
        self.spaces = dict(spaces)
        self.registry = next(iter(self.spaces.values()))
        self.blobs = blobs
        self.journal = journal
        self.clock = VersionClock()
        self.locks = KeyedLocks()
        for store in self.spaces.values():
            store.use_journal(journal)

    def replace(self, collection: str, doc_ids: Sequence[str], rows: Mapping[str, Sequence[Item]], blobs: Sequence[BlobWrite] = ()) -> int:
        """Make `rows` (by space name) the new version of the documents `doc_ids`, with `blobs` their
        originals; a document without rows is deleted. Every row is checked before anything is stored
        (a ValueError names the item). Returns the version."""
        version = self.clock.next()
        prepared = {space: self.spaces[space].prepare_rows([dataclasses.replace(item, version=version) for item in items]) for space, items in rows.items() if items}
        with self.locks.hold(document_keys(collection, doc_ids)):
            txn = Txn(
                version=version,
                collection=collection,
                doc_ids=tuple(dict.fromkeys(doc_ids)),
                new_blobs=tuple(blob.key for blob in blobs if not self.blobs.exists(blob.key)),
                created_collection=not self.registry.has_collection(collection),
            )
            self.journal.record(txn)
            try:
                for blob in blobs:
                    self.blobs.put(blob.key, blob.data, blob.content_type, blob.filename, blob.owner)
                for space, batches in prepared.items():
                    self.spaces[space].upsert_rows(batches)
                self.registry.create_collection(collection)  # last: a failed write leaves no new collection
            except BaseException:
                self._roll_back(txn)
                raise
            self._finish(self.journal.set_state(txn, "committed"))
        return version

    def delete_documents(self, collection: str, doc_ids: Sequence[str], blob_keys: Sequence[str] = ()) -> None:
        """Remove documents (every version, in every space) and then their originals."""
        with self.locks.hold(document_keys(collection, doc_ids)):
            self._commit_deletion(Txn(version=self.clock.next(), collection=collection, doc_ids=tuple(doc_ids), old_blobs=tuple(blob_keys)))

    def delete_items(self, collection: str, doc_id: str, item_ids: Sequence[str], blob_keys: Sequence[str] = ()) -> None:
        """Remove single items of a document (every version, in every space)."""
        with self.locks.hold(document_keys(collection, [doc_id])):
            self._commit_deletion(Txn(version=self.clock.next(), collection=collection, item_ids=tuple(item_ids), old_blobs=tuple(blob_keys)))

    def drop_collection(self, collection: str, blob_keys: Sequence[str]) -> None:
        """Remove a collection: its rows in every space, its originals, its registration."""
        txn = Txn(version=self.clock.next(), collection=collection, whole_collection=True, drop_collection=True, old_blobs=tuple(blob_keys))
        self._commit_deletion(txn)

    def recover(self, stale_after_s: float = 0.0) -> list[str]:
        """Finish or roll back the writes a crash interrupted; returns what was done, for the log.
        `stale_after_s`: leave younger writes alone (another replica may still be at them)."""
        own = {txn.version for txn in self.journal.own()}
        done = []
        for txn in self.journal.entries():
            if txn.version in own or time.time() - txn.started_at < stale_after_s:
                continue
            if txn.state == "writing":
                self._roll_back(txn, keep_marker=self.journal.shared)
                done.append(f"rolled back an unfinished write to {txn.collection!r} ({len(txn.doc_ids)} documents)")
            elif txn.state == "committed":
                self._finish(txn)
                done.append(f"finished a committed write to {txn.collection!r} ({len(txn.doc_ids) or len(txn.item_ids)} documents or items)")
            elif not self.journal.shared:
                self.journal.end(txn)  # a rolled-back write: no other process can be reading its rows
        self.journal.expire_rolled_back()
        return done

    def _commit_deletion(self, txn: Txn) -> None:
        """A deletion has nothing to store: it is committed at once, and readers stop seeing its rows."""
        self._finish(self.journal.set_state(txn, "committed"))

    def _finish(self, txn: Txn) -> None:
        """Remove what a committed write replaced. If that fails (Milvus down), the journal keeps the
        write: readers go on hiding the old rows, and the next start finishes it."""
        try:
            self._drop_if_superseded(txn)
            for store in self.spaces.values():
                store.delete_replaced(txn)
            for key in txn.old_blobs:
                self.blobs.delete(key)
            if txn.drop_collection:
                self.registry.unregister_collection(txn.collection)
            self.journal.end(txn)
        except Exception as error:  # noqa: BLE001 - the write itself stands: it is committed
            log.warning("could not yet remove what version %d replaced in %r (done at the next start): %s", txn.version, txn.collection, error)

    def _drop_if_superseded(self, txn: Txn) -> None:
        """With several replicas, a newer write of the same document may have committed while this one
        was still storing its rows: its clean-up removed only the rows this one had stored by then.
        The newer version is the document, so this write's rows of it go. (Within one process, writes
        to a document take turns and this cannot happen.)"""
        if not self.journal.shared or not txn.doc_ids:
            return
        newer: dict[str, set[int]] = {}
        for store in self.spaces.values():
            for doc_id, versions in store.newer_versions(txn.collection, txn.doc_ids, txn.version).items():
                newer.setdefault(doc_id, set()).update(versions)
        unfinished = {other.version for other in self.journal.snapshot().txns if other.state != "committed"}
        superseded = [doc_id for doc_id, versions in newer.items() if versions - unfinished]
        if superseded:
            for store in self.spaces.values():
                store.delete_version(txn.collection, txn.version, superseded)

    def _roll_back(self, txn: Txn, keep_marker: bool = True) -> None:
        """Remove what an uncommitted write stored, every part that can be. If a part fails, the write
        stays in the journal as unfinished: readers go on ignoring its rows, and the next start removes
        them. The caller's error is the one that counts; this only logs what may be left."""
        steps = [lambda store=store: store.delete_version(txn.collection, txn.version) for store in self.spaces.values()]
        steps += [lambda key=key: self.blobs.delete(key) for key in txn.new_blobs]
        failures = []
        for step in steps:
            try:
                step()
            except Exception as error:  # noqa: BLE001 - go on with the other parts
                failures.append(error)
        try:
            if failures:
                log.error("could not roll back all of version %d in %r (done at the next start): %s", txn.version, txn.collection, failures[0])
                return
            if txn.created_collection and not any(store.has_rows(txn.collection) for store in self.spaces.values()):
                self.registry.unregister_collection(txn.collection)
            if keep_marker:  # a reader may have fetched a row before it was removed: it must still drop it
                self.journal.set_state(txn, "rolledback")
            else:
                self.journal.end(txn)
        except Exception as error:  # noqa: BLE001
            log.error("could not finish rolling back version %d in %r (done at the next start): %s", txn.version, txn.collection, error)
