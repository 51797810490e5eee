"""A search result as the framework integrations hand it on: its text, and Prism's fields as metadata."""

from __future__ import annotations

from typing import Any, Callable

from prism_client.types import SearchHit

# Prism's fields, kept when present: what the item is, how it scored, and where it came from.
FIELDS = (
    "id", "collection", "modality", "doc_id", "score", "rerank_score", "title", "source", "position",
    "char_start", "char_end", "created_at", "caption", "width", "height", "recording_id", "start", "end",
)  # fmt: skip


def result_metadata(hit: SearchHit, absolute: Callable[[str], str]) -> dict[str, Any]:
    """Prism's fields of a result, its URLs made absolute with `absolute` (the client's url()), the
    routes that found it with their cosine scores, and the item's own metadata under "metadata"."""
    metadata: dict[str, Any] = {name: hit[name] for name in FIELDS if hit.get(name) is not None}  # type: ignore[literal-required]
    for name in ("content_url", "thumbnail_url"):
        if hit.get(name):
            metadata[name] = absolute(hit[name])  # type: ignore[literal-required]
    metadata["routes"] = {route: found["score"] for route, found in hit["routes"].items()}
    metadata["metadata"] = hit["metadata"]
    return metadata
