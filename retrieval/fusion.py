"""Merging the ranked lists of several routes into one.

Cosine similarities from different vector spaces (the text encoder's, CLIP's) are not on one scale:
CLIP's best text-to-image matches score around 0.3, a good text match 0.7. So by default lists are
merged by rank with reciprocal rank fusion (Cormack et al., 2009): an item scores the sum of
w / (k + rank) over the lists that found it (w = the route's weight, 1 unless set), and an item found
by two routes (a picture and its caption) rises. Weighted score fusion sums w * cosine instead, for
callers who have calibrated weights for their routes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Literal, Mapping, Sequence

from retrieval.types import Hit, RouteScore

RRF_K = 60  # the constant of the original paper; it damps the weight of the very first ranks


@dataclass(frozen=True)
class FusionConfig:
    method: Literal["rrf", "weighted"] = "rrf"
    k: int = RRF_K
    weights: Mapping[str, float] = field(default_factory=dict)  # route name -> weight; missing: 1
    per_modality_limit: int | None = None  # at most this many results of one modality


def with_provenance(route: str, hits: Sequence[Hit]) -> list[Hit]:
    """A route's hits, each recording its rank and score in that route."""
    return [replace(hit, routes={route: RouteScore(rank=rank, score=hit.score)}) for rank, hit in enumerate(hits, 1)]


def fuse(
    ranked: Mapping[str, Sequence[Hit]],
    limit: int,
    config: FusionConfig = FusionConfig(),
    groups: Mapping[str, str] | None = None,
) -> list[Hit]:
    """One list, best first, at most `limit` long.

    `groups` maps a route to a group of routes whose scores are comparable (one encoder reading the
    same kind of content: text->text and text->audio both compare texts with the text encoder).
    Within a group, lists merge by score; across groups, by fusion. When a single group found
    anything, hits keep their cosine scores; otherwise scores are fusion scores. Hits of one item
    (the same id) found by several routes become one hit that lists every route."""
    groups = groups or {}
    lists: dict[str, list[Hit]] = {}
    for route, hits in ranked.items():
        lists.setdefault(groups.get(route, route), []).extend(with_provenance(route, hits))
    found = [sorted(hits, key=lambda hit: -hit.score) for hits in lists.values() if hits]  # stable
    if len(found) <= 1:
        return _limit_per_modality(found[0] if found else [], limit, config.per_modality_limit)
    merged: dict[str, Hit] = {}
    fused: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    for hits in found:
        for rank, hit in enumerate(hits, 1):
            (route,) = hit.routes
            contribution = hit.score if config.method == "weighted" else 1.0 / (config.k + rank)
            item_id = hit.item.id
            fused[item_id] = fused.get(item_id, 0.0) + config.weights.get(route, 1.0) * contribution
            best_rank[item_id] = min(rank, best_rank.get(item_id, rank))
            earlier = merged.get(item_id)
            merged[item_id] = hit if earlier is None else replace(earlier, routes={**earlier.routes, **hit.routes})
    # Ties (e.g. two items each first in one group) go to the better single rank, then the earlier group.
    order = sorted(merged, key=lambda item_id: (-fused[item_id], best_rank[item_id]))
    hits = [replace(merged[item_id], score=fused[item_id]) for item_id in order]
    return _limit_per_modality(hits, limit, config.per_modality_limit)


def _limit_per_modality(hits: Sequence[Hit], limit: int, per_modality: int | None) -> list[Hit]:
    if per_modality is None:
        return list(hits[:limit])
    kept: list[Hit] = []
    counts: Counter[str] = Counter()
    for hit in hits:
        if counts[hit.item.modality] < per_modality:
            counts[hit.item.modality] += 1
            kept.append(hit)
            if len(kept) == limit:
                break
    return kept
