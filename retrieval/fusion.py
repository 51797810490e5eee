"""Merging the ranked lists of several routes into one.

Cosine similarities from different vector spaces (the text encoder's, CLIP's) are not on one scale:
CLIP's best text-to-image matches score around 0.3, a good text match 0.7. So lists are merged by rank
with reciprocal rank fusion (Cormack et al., 2009): an item scores the sum of 1 / (k + rank) over the
routes that found it, and an item found by two routes (a picture and its caption) rises.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

from retrieval.types import Hit, RouteScore

RRF_K = 60  # the constant of the original paper; it damps the weight of the very first ranks


def with_provenance(route: str, hits: Sequence[Hit]) -> list[Hit]:
    """A route's hits, each recording its rank and score in that route."""
    return [replace(hit, routes={route: RouteScore(rank=rank, score=hit.score)}) for rank, hit in enumerate(hits, 1)]


def fuse(ranked: Mapping[str, Sequence[Hit]], top_k: int, k: int = RRF_K) -> list[Hit]:
    """One list, best first, at most top_k long. When a single route found anything its hits keep
    their cosine scores; otherwise scores are reciprocal-rank-fusion scores. Hits of one item (the
    same id) found by several routes become one hit that lists every route."""
    found = {route: with_provenance(route, hits) for route, hits in ranked.items() if hits}
    if len(found) <= 1:
        return next(iter(found.values()), [])[:top_k]
    merged: dict[str, Hit] = {}
    fused: dict[str, float] = {}
    for route, hits in found.items():
        for hit in hits:
            item_id = hit.item.id
            fused[item_id] = fused.get(item_id, 0.0) + 1.0 / (k + hit.routes[route].rank)
            earlier = merged.get(item_id)
            merged[item_id] = hit if earlier is None else replace(earlier, routes={**earlier.routes, **hit.routes})
    # Ties (e.g. two items each first in one route) go to the better single rank, then the older route.
    order = sorted(merged, key=lambda item_id: (-fused[item_id], min(s.rank for s in merged[item_id].routes.values())))
    return [replace(merged[item_id], score=fused[item_id]) for item_id in order[:top_k]]
