"""Reciprocal rank fusion on hand-built route results with known outcomes."""

from __future__ import annotations

import dataclasses

import pytest

from retrieval.fusion import RRF_K, FusionConfig, fuse
from retrieval.types import Hit, Item, RouteScore


def hit(item_id: str, score: float) -> Hit:
    item = Item(id=item_id, collection="c", modality="image", doc_id=item_id, text="", content_hash="h", created_at=0)
    return Hit(item=item, score=score)


def test_one_route_keeps_its_cosine_scores_and_records_ranks():
    fused = fuse({"text": [hit("a", 0.9), hit("b", 0.5)], "clip-text": []}, 10)
    assert [(h.item.id, h.score) for h in fused] == [("a", 0.9), ("b", 0.5)]
    assert fused[1].routes == {"text": RouteScore(rank=2, score=0.5)}


def test_items_found_by_both_routes_rise_and_list_both():
    ranked = {
        "text": [hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)],
        "clip-text": [hit("c", 0.31), hit("d", 0.30), hit("a", 0.29)],
    }
    fused = fuse(ranked, 10)
    # a: 1/61 + 1/63, c: 1/63 + 1/61 (a tie, broken by the better single rank: both have a first
    # place, so the order of routes decides), then b: 1/62 and d: 1/62 (tie, same rank: route order).
    assert [h.item.id for h in fused] == ["a", "c", "b", "d"]
    assert fused[0].score == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 3))
    assert fused[2].score == pytest.approx(1 / (RRF_K + 2))
    assert fused[1].routes == {"text": RouteScore(3, 0.7), "clip-text": RouteScore(1, 0.31)}


def test_fusion_is_by_rank_not_by_raw_score():
    # CLIP's cosines are small next to the text encoder's; its first place still counts as much.
    fused = fuse({"text": [hit("t", 0.95), hit("u", 0.94)], "clip-text": [hit("p", 0.2)]}, 10)
    assert [h.item.id for h in fused] == ["t", "p", "u"]


def test_top_k_cuts_the_fused_list():
    ranked = {"text": [hit(f"t{i}", 1 - i / 10) for i in range(5)], "clip-text": [hit(f"p{i}", 0.3) for i in range(5)]}
    assert len(fuse(ranked, 3)) == 3
    assert fuse({"text": [], "clip-text": []}, 3) == []


def test_routes_of_one_group_merge_by_score_before_fusion():
    # text->text and text->audio compare texts with one encoder: their cosines order them together.
    ranked = {
        "text->text": [hit("doc", 0.6)],
        "text->audio": [hit("window", 0.8)],
        "text->image": [hit("pic", 0.3), hit("pic2", 0.2)],
    }
    groups = {"text->text": "text-encoder", "text->audio": "text-encoder"}
    fused = fuse(ranked, 10, groups=groups)
    # Group lists: [window, doc] and [pic, pic2]; RRF: window 1/61, pic 1/61, doc 1/62, pic2 1/62.
    assert [h.item.id for h in fused] == ["window", "pic", "doc", "pic2"]
    assert fused[2].routes == {"text->text": RouteScore(1, 0.6)}  # provenance keeps the route's own rank
    # One group alone keeps cosine scores, merged by score.
    alone = fuse({"text->text": [hit("doc", 0.6)], "text->audio": [hit("window", 0.8)]}, 10, groups=groups)
    assert [(h.item.id, h.score) for h in alone] == [("window", 0.8), ("doc", 0.6)]


def test_weights_and_weighted_score_fusion():
    ranked = {"a": [hit("x", 0.9), hit("y", 0.1)], "b": [hit("y", 0.5), hit("x", 0.2)]}
    # RRF alone ties x and y; a weight on route b tips it to y.
    assert [h.item.id for h in fuse(ranked, 10, FusionConfig(weights={"b": 2.0}))] == ["y", "x"]
    weighted = fuse(ranked, 10, FusionConfig(method="weighted", weights={"a": 1.0, "b": 0.5}))
    assert [(h.item.id, round(h.score, 6)) for h in weighted] == [("x", 1.0), ("y", 0.35)]


def test_per_modality_limit_keeps_one_modality_from_crowding_out():
    def typed(item_id, modality, score):
        h = hit(item_id, score)
        return Hit(item=dataclasses.replace(h.item, modality=modality), score=score)

    ranked = {"t": [typed(f"t{i}", "text", 0.9 - i / 100) for i in range(5)], "i": [typed("p", "image", 0.3)]}
    fused = fuse(ranked, 4, FusionConfig(per_modality_limit=2))
    assert [h.item.id for h in fused] == ["t0", "p", "t1"]
