"""Retrieval and transcription quality metrics: pure functions, no I/O.

The ranking metrics take one query's ranked list of ids (best first) and its relevance judgements, a map
of id to grade (BEIR qrels: a grade above 0 is relevant, higher is better). They follow the definitions
BEIR reports (trec_eval's): gains are the grades themselves, not 2^grade - 1. An id that occurs twice
in a ranking counts once, at its first (best) place. Averages over queries are plain means (`mean`).
"""

from __future__ import annotations

import math
import re
from typing import Hashable, Iterable, Mapping, Sequence


def _unique(ranked_ids: Iterable[Hashable]) -> list[Hashable]:
    return list(dict.fromkeys(ranked_ids))


def _relevant(relevance: Mapping[Hashable, float]) -> dict[Hashable, float]:
    return {doc: grade for doc, grade in relevance.items() if grade > 0}


def ndcg_at_k(ranked_ids: Sequence[Hashable], relevance: Mapping[Hashable, float], k: int) -> float:
    """Normalised discounted cumulative gain of the first k results.

    DCG@k = sum over ranks r = 1..k of grade(result at r) / log2(r + 1); the ideal DCG is the same sum
    over all judged relevant ids sorted by grade, best first (cut at k). 0 when nothing is relevant.
    """
    _check_k(k)
    relevant = _relevant(relevance)
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal, 1))
    if idcg == 0:
        return 0.0
    top = _unique(ranked_ids)[:k]
    dcg = sum(relevant.get(doc, 0.0) / math.log2(rank + 1) for rank, doc in enumerate(top, 1))
    return dcg / idcg


def recall_at_k(ranked_ids: Sequence[Hashable], relevance: Mapping[Hashable, float], k: int) -> float:
    """Share of the relevant ids that are among the first k results; 0 when nothing is relevant."""
    _check_k(k)
    relevant = _relevant(relevance)
    if not relevant:
        return 0.0
    found = sum(1 for doc in _unique(ranked_ids)[:k] if doc in relevant)
    return found / len(relevant)


def mrr_at_k(ranked_ids: Sequence[Hashable], relevance: Mapping[Hashable, float], k: int) -> float:
    """Reciprocal rank of the first relevant result within the first k; 0 when there is none."""
    _check_k(k)
    relevant = _relevant(relevance)
    for rank, doc in enumerate(_unique(ranked_ids)[:k], 1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def hit_at_k(ranked_ids: Sequence[Hashable], relevant: Iterable[Hashable], k: int) -> float:
    """1 when any of the relevant ids is among the first k results, else 0: the "Recall@k" of image-text
    retrieval (a caption finds its picture; a picture finds any of its captions)."""
    _check_k(k)
    wanted = set(relevant)
    return 1.0 if any(doc in wanted for doc in list(ranked_ids)[:k]) else 0.0


def mean(values: Iterable[float]) -> float:
    """The plain mean; 0 for no values."""
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation: "Don't stop, it's 9." -> ["dont", "stop", "its", "9"].

    Apostrophes are dropped (so "don't" and "dont" agree); other punctuation separates words.
    """
    text = re.sub(r"['\u2019]", "", text.lower())
    return re.sub(r"[^\w]|_", " ", text).split()


def word_error_rate(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference words): the word-level edit distance (substitutions + insertions + deletions)
    between the reference and the hypothesis after `normalize_words`, and the reference's word count.

    The rate of one pair is edits / words; over many pairs, sum the edits and divide by the summed
    words (the usual corpus WER), rather than averaging per-pair rates.
    """
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    previous = list(range(len(hyp) + 1))  # distance from ref[:0] to every prefix of hyp
    for i, ref_word in enumerate(ref, 1):
        current = [i]
        for j, hyp_word in enumerate(hyp, 1):
            current.append(
                min(
                    previous[j] + 1,  # ref_word deleted
                    current[j - 1] + 1,  # hyp_word inserted
                    previous[j - 1] + (ref_word != hyp_word),  # match or substitution
                )
            )
        previous = current
    return previous[-1], len(ref)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
