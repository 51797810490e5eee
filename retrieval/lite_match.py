"""Which rows of a vector space an operation of the store touches, in structured form.

The store's own reads and deletes (a document's rows, one write's version, the versions a committed
write replaced, the rows a write in progress hides from counts) are each one RowMatch. It renders the
Milvus expression, and the in-memory index on Milvus Lite (retrieval/lite_index.py) evaluates the same
RowMatch on its columns, so both always select the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from retrieval.filters import string_in, string_literal
from retrieval.versions import Snapshot

VERSION_OPERATORS = ("==", "<", ">")


@dataclass(frozen=True)
class RowMatch:
    """Rows of `collection` (any when None), of `modalities`, whose version compares with `version`
    (operator, number), whose `field_in` field ("id", "doc_id" or "content_hash") is one of its values,
    and that no match in `excluded` selects."""

    collection: str | None = None
    modalities: tuple[str, ...] | None = None
    version: tuple[str, int] | None = None
    field_in: tuple[str, tuple[str, ...]] | None = None
    excluded: tuple[RowMatch, ...] = ()

    def __post_init__(self) -> None:
        if self.version is not None and self.version[0] not in VERSION_OPERATORS:
            raise ValueError(f"version operator must be one of {VERSION_OPERATORS}")

    def expression(self) -> str:
        parts = []
        if self.collection is not None:
            parts.append(f"collection == {string_literal(self.collection)}")
        if self.modalities is not None:
            parts.append(string_in("modality", self.modalities))
        if self.version is not None:
            parts.append(f"version {self.version[0]} {int(self.version[1])}")
        if self.field_in is not None:
            parts.append(string_in(*self.field_in))
        parts.extend(f"not ({excluded.expression()})" for excluded in self.excluded)
        return " and ".join(parts) or 'row_id != ""'

    def strings(self) -> Iterator[tuple[str, tuple[str, ...]]]:
        """(column, allowed values) conditions, for the in-memory index."""
        if self.collection is not None:
            yield "collection", (self.collection,)
        if self.modalities is not None:
            yield "modality", self.modalities
        if self.field_in is not None:
            yield self.field_in

    def ranges(self) -> Iterator[tuple[str, str, int]]:
        if self.version is not None:
            yield "version", self.version[0], int(self.version[1])


def hidden_by(snapshot: Snapshot, collection: str) -> tuple[RowMatch, ...]:
    """The rows of `collection` that writes in progress hide: those of unfinished or rolled-back writes,
    and the older versions of what committed writes replaced (versions.Txn.replaces), for counts, which
    cannot be filtered row by row."""
    hidden: list[RowMatch] = []
    for txn in snapshot.txns:
        if txn.collection != collection:
            continue
        if txn.state != "committed":
            hidden.append(RowMatch(collection, version=("==", txn.version)))
        elif txn.whole_collection:
            hidden.append(RowMatch(collection, version=("<", txn.version)))
        else:
            hidden += [RowMatch(collection, version=("<", txn.version), field_in=(name, values)) for name, values in (("doc_id", txn.doc_ids), ("id", txn.item_ids)) if values]
    return tuple(hidden)
