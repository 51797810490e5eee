"""The embedding cache: bounded, least recently used out first."""

import numpy as np

from retrieval.cache import EmbeddingCache


def test_least_recently_used_entry_is_evicted():
    cache = EmbeddingCache(capacity=2)
    cache.put("a", np.array([1.0]))
    cache.put("b", np.array([2.0]))
    assert cache.get("a")[0] == 1.0  # "a" is now the most recently used
    cache.put("c", np.array([3.0]))
    assert cache.get("b") is None
    assert cache.get("a")[0] == 1.0 and cache.get("c")[0] == 3.0
    assert len(cache) == 2


def test_zero_capacity_disables_the_cache():
    cache = EmbeddingCache(capacity=0)
    cache.put("a", np.array([1.0]))
    assert cache.get("a") is None and len(cache) == 0
