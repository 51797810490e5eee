"""Reciprocal rank fusion on hand-built route results with known outcomes."""

from __future__ import annotations

import pytest

from retrieval.fusion import RRF_K, fuse
from retrieval.types import Hit, Item, RouteScore


def hit(item_id: str, score: float) -> Hit:
    item = Item(id=item_id, collection="c", modality="image", doc_id=item_id, text="", content_hash="h", created_at=0)
    return Hit(item=item, score=score)


def test_one_route_keeps_its_cosine_scores_and_records_ranks():
    fused = fuse({"text": [hit("a", 0.9), hit("b", 0.5)], "clip-text": []}, top_k=10)
    assert [(h.item.id, h.score) for h in fused] == [("a", 0.9), ("b", 0.5)]
    assert fused[1].routes == {"text": RouteScore(rank=2, score=0.5)}


def test_items_found_by_both_routes_rise_and_list_both():
    ranked = {
        "text": [hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)],
        "clip-text": [hit("c", 0.31), hit("d", 0.30), hit("a", 0.29)],
    }
    fused = fuse(ranked, top_k=10)
    # a: 1/61 + 1/63, c: 1/63 + 1/61 (a tie, broken by the better single rank: both have a first
    # place, so the order of routes decides), then b: 1/62 and d: 1/62 (tie, same rank: route order).
    assert [h.item.id for h in fused] == ["a", "c", "b", "d"]
    assert fused[0].score == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 3))
    assert fused[2].score == pytest.approx(1 / (RRF_K + 2))
    assert fused[1].routes == {"text": RouteScore(3, 0.7), "clip-text": RouteScore(1, 0.31)}


def test_fusion_is_by_rank_not_by_raw_score():
    # CLIP's cosines are small next to the text encoder's; its first place still counts as much.
    fused = fuse({"text": [hit("t", 0.95), hit("u", 0.94)], "clip-text": [hit("p", 0.2)]}, top_k=10)
    assert [h.item.id for h in fused] == ["t", "p", "u"]


def test_top_k_cuts_the_fused_list():
    ranked = {"text": [hit(f"t{i}", 1 - i / 10) for i in range(5)], "clip-text": [hit(f"p{i}", 0.3) for i in range(5)]}
    assert len(fuse(ranked, top_k=3)) == 3
    assert fuse({"text": [], "clip-text": []}, top_k=3) == []
