"""Retrieval and transcription metrics, on cases computed by hand."""

import pytest

from retrieval.metrics import mean, mrr_at_k, ndcg_at_k, normalize_words, recall_at_k, word_error_rate

GRADES = {"a": 2, "b": 1, "c": 0}  # c is judged, but not relevant


def test_ndcg_of_a_known_ranking_with_grades():
    # Ranking c, b, x, a (ranks 1-4); gain = grade, discount = 1 / log2(rank + 1):
    #   DCG@10  = 0/log2(2) + 1/log2(3) + 0/log2(4) + 2/log2(5) = 0.63093 + 0.86135 = 1.49228
    #   IDCG@10 = 2/log2(2) + 1/log2(3)                          = 2 + 0.63093       = 2.63093
    #   nDCG@10 = 1.49228 / 2.63093 = 0.56721
    ranking = ["c", "b", "x", "a"]
    assert ndcg_at_k(ranking, GRADES, 10) == pytest.approx(0.5672074, abs=1e-6)
    # At k=2 only c and b count: DCG = 0.63093; IDCG@2 is still 2.63093 (a and b): 0.23981.
    assert ndcg_at_k(ranking, GRADES, 2) == pytest.approx(0.2398125, abs=1e-6)
    # Cut at k=1: c has grade 0, so nothing gained.
    assert ndcg_at_k(ranking, GRADES, 1) == 0.0


def test_ndcg_is_one_for_the_ideal_order_and_zero_without_relevant_results():
    assert ndcg_at_k(["a", "b", "c"], GRADES, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(1.0)
    # Swapping two equally relevant results changes nothing; swapping grades 2 and 1 does.
    assert ndcg_at_k(["b", "a"], {"a": 1, "b": 1}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["b", "a"], GRADES, 10) < 1.0
    assert ndcg_at_k(["x", "y", "c"], GRADES, 10) == 0.0
    assert ndcg_at_k([], GRADES, 10) == 0.0
    assert ndcg_at_k(["a"], {}, 10) == 0.0  # no judgements: nothing to find


def test_ndcg_counts_a_repeated_id_once():
    # A document found through two chunks scores once, at its best rank.
    assert ndcg_at_k(["a", "a", "b"], GRADES, 10) == pytest.approx(1.0)


def test_recall():
    relevant = {"a": 1, "b": 1, "c": 1, "d": 0}
    assert recall_at_k(["x", "y", "z"], relevant, 3) == 0.0  # none retrieved
    assert recall_at_k(["c", "x", "a", "b"], relevant, 10) == 1.0  # all retrieved
    assert recall_at_k(["c", "x", "a", "b"], relevant, 3) == pytest.approx(2 / 3)  # b beyond k
    assert recall_at_k(["d", "x"], relevant, 10) == 0.0  # grade 0 is not relevant
    assert recall_at_k(["a", "a", "a"], relevant, 10) == pytest.approx(1 / 3)  # repeats count once
    assert recall_at_k(["a"], {}, 10) == 0.0


def test_mrr():
    relevant = {"a": 1, "b": 2}
    assert mrr_at_k(["a", "b"], relevant, 10) == 1.0
    assert mrr_at_k(["x", "y", "b", "a"], relevant, 10) == pytest.approx(1 / 3)  # first relevant at rank 3
    assert mrr_at_k(["x", "y", "b"], relevant, 2) == 0.0  # relevant only beyond k
    assert mrr_at_k(["x", "y"], relevant, 10) == 0.0
    assert mrr_at_k(["x", "x", "a"], relevant, 2) == 0.5  # the repeat does not push a beyond k


def test_k_must_be_positive():
    for metric in (ndcg_at_k, recall_at_k, mrr_at_k):
        with pytest.raises(ValueError):
            metric(["a"], {"a": 1}, 0)


def test_mean():
    assert mean([1.0, 0.0, 0.5]) == 0.5
    assert mean([]) == 0.0


def test_word_error_rate():
    assert word_error_rate("the cat sat on the mat", "the cat sat on the mat") == (0, 6)
    # Case and punctuation do not count; apostrophes vanish ("it's" == "its").
    assert word_error_rate("The library opens at nine.", "the Library opens, at nine!") == (0, 5)
    assert word_error_rate("It's late", "its late") == (0, 2)
    # One substitution (sat -> sit).
    assert word_error_rate("the cat sat on the mat", "the cat sit on the mat") == (1, 6)
    # One deletion (on) and one insertion (big).
    assert word_error_rate("the cat sat on the mat", "the big cat sat the mat") == (2, 6)
    # Substitution of 9 for nine, insertion of "oclock": 2 edits of 5 reference words.
    assert word_error_rate("The library opens at nine.", "The library opens at 9 o'clock.") == (2, 5)
    # Everything deleted / everything inserted.
    assert word_error_rate("one two three", "") == (3, 3)
    assert word_error_rate("", "one two") == (2, 0)


def test_normalize_words():
    assert normalize_words("Hello, World! Don't-stop_now") == ["hello", "world", "dont", "stop", "now"]
