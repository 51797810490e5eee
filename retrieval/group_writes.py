"""Small writes that arrive together, stored as one: group commit in front of the Writer.

Every write costs the store about the same whatever its size: journal records with their fsyncs, a
Milvus upsert and (on Lite) a flush per vector space, the query and delete of what it replaces. With
many clients each sending one picture, that cost per write, not CLIP, set the pace (docs/BENCHMARKS.md,
"Image ingest"). A GroupWriter hands replace() calls to one worker (a MicroBatcher: first come, first
served, never waiting for company): while it stores one write, the next ones queue, and it stores
those as one write of the Writer, one version for all their documents, committed (and acknowledged)
together. So under load the cost is paid once per group, and a lone request pays nothing extra.

Each caller still hears of its own request only. A request is never split: its documents are stored
all or nothing, as before. Requests that touch the same document never share a write (the later one
goes in a later write, so they are stored in the order they came). A shared write that fails was
rolled back whole, so nothing of it is stored: when the fault may be one request's (a row the schema
cannot hold, ValueError), its requests are written again one by one, so that each gets its own answer;
any other failure (Milvus down) is every member's answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from retrieval.batching import MicroBatcher
from retrieval.types import Item
from retrieval.writes import BlobWrite, Writer


@dataclass(frozen=True)
class Replace:
    """One request's write: Writer.replace's arguments."""

    collection: str
    doc_ids: tuple[str, ...]
    rows: Mapping[str, Sequence[Item]]
    blobs: tuple[BlobWrite, ...] = ()


class GroupWriter:
    def __init__(self, writer: Writer, max_group: int = 32, max_queue: int = 1024, name: str = "writes") -> None:
        self.writer = writer
        self.batcher: MicroBatcher[Replace, BaseException | None] = MicroBatcher(
            self._store, max_batch=max_group, max_wait_ms=0.0, max_queue=max_queue, name=name
        )

    def replace(self, collection: str, doc_ids: Sequence[str], rows: Mapping[str, Sequence[Item]], blobs: Sequence[BlobWrite] = ()) -> None:
        """Writer.replace, stored alone or with other requests queued at the same time; raises what
        storing this request raised (QueueFull at once when too many writes wait)."""
        outcome = self.batcher.submit([Replace(collection, tuple(doc_ids), rows, tuple(blobs))])[0]
        if outcome is not None:
            raise outcome

    def close(self) -> None:
        self.batcher.close()

    def _store(self, requests: list[Replace]) -> list[BaseException | None]:
        """The batcher's function: every request stored, in groups; each one's outcome (None: stored)."""
        outcomes: list[BaseException | None] = [None] * len(requests)
        for group in groups(requests):
            try:
                self._write([requests[index] for index in group])
            except ValueError as error:
                if len(group) == 1:
                    outcomes[group[0]] = error
                    continue
                for index in group:  # whose row was it? each request alone, each with its own answer
                    try:
                        self._write([requests[index]])
                    except Exception as alone:  # noqa: BLE001 - the caller's answer
                        outcomes[index] = alone
            except Exception as error:  # noqa: BLE001 - the store's failure is every member's answer
                for index in group:
                    outcomes[index] = error
        return outcomes

    def _write(self, requests: list[Replace]) -> None:
        rows: dict[str, list[Item]] = {}
        for request in requests:
            for space, items in request.rows.items():
                rows.setdefault(space, []).extend(items)
        doc_ids = [doc_id for request in requests for doc_id in request.doc_ids]
        blobs = [blob for request in requests for blob in request.blobs]
        self.writer.replace(requests[0].collection, doc_ids, rows, blobs)


def groups(requests: Sequence[Replace]) -> list[list[int]]:
    """The requests (by index) in the writes that store them, in order: one collection per write, and
    no document in two requests of one write (a request that shares a document with the collection's
    current write starts the next one, so the two are stored in the order they came)."""
    planned: list[list[int]] = []
    current: dict[str, tuple[list[int], set[str]]] = {}  # collection -> its latest write and its documents
    for index, request in enumerate(requests):
        latest = current.get(request.collection)
        if latest is not None and latest[1].isdisjoint(request.doc_ids):
            latest[0].append(index)
            latest[1].update(request.doc_ids)
            continue
        planned.append([index])
        current[request.collection] = (planned[-1], set(request.doc_ids))
    return planned
