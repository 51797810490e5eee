"""Token-aware chunking with overlap, keeping character offsets into the text as submitted."""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import Callable

from retrieval.types import Chunk

# Characters that render as nothing but change what a tokenizer sees: a zero-width space inside a
# word splits it into two unknown pieces, and a BOM at the start of a file becomes a token of its own.
# ZWJ and ZWNJ (U+200D, U+200C) are kept: they carry meaning in emoji sequences and Indic/Persian text.
INVISIBLE = frozenset("\ufeff\u200b\u2060\u180e\u00ad")

TokenSpans = Callable[[str], list[tuple[int, int]]]

_combining: re.Pattern[str] | None = None


def _combining_runs() -> re.Pattern[str]:
    """Runs of combining characters (canonical combining class > 0), compiled on first use."""
    global _combining
    if _combining is None:
        marks = [code for code in range(sys.maxunicode + 1) if unicodedata.combining(chr(code))]
        ranges, first = [], marks[0]
        for previous, code in zip(marks, marks[1:] + [-1]):
            if code != previous + 1:
                ranges.append(f"{re.escape(chr(first))}-{re.escape(chr(previous))}")
                first = code
        _combining = re.compile(f"[{''.join(ranges)}]+")
    return _combining


def clean_text(text: str) -> tuple[str, list[int]]:
    """Normalise to NFC and drop invisible characters.

    Returns the cleaned text and, for every cleaned character, its index in the original, plus one
    last entry equal to len(text); chunk offsets then point into the text the client sent (a
    highlighter needs those, not ours).
    """
    if unicodedata.is_normalized("NFC", text) and not INVISIBLE.intersection(text):
        # Nothing to change (most text): the same answer as the loop below, without a loop in Python
        # per character (a third of the non-model time of ingesting short documents). Combining marks
        # point where their cluster starts, as below.
        origin = list(range(len(text) + 1))
        if not text.isascii():
            for run in _combining_runs().finditer(text):
                origin[run.start() : run.end()] = [max(run.start() - 1, 0)] * (run.end() - run.start())
        return text, origin
    cleaned: list[str] = []
    origin: list[int] = []
    # NFC composes a base character with the combining marks that follow it ("e" + U+0301 -> "é"), so
    # normalise one such cluster at a time and map its output to where the cluster started.
    cluster, cluster_start = "", 0
    for index, char in enumerate(text + "\0"):  # the sentinel flushes the last cluster
        if char in INVISIBLE:
            continue
        if cluster and not unicodedata.combining(char):
            composed = unicodedata.normalize("NFC", cluster)
            cleaned.extend(composed)
            origin.extend([cluster_start] * len(composed))
            cluster = ""
        if not cluster:
            cluster_start = index
        cluster += char
    origin.append(len(text))
    return "".join(cleaned), origin


def chunk_text(text: str, token_spans: TokenSpans, max_tokens: int, overlap: int) -> list[Chunk]:
    """Split `text` into windows of at most `max_tokens` tokens, each sharing `overlap` with the previous.

    Windows are cut on token boundaries, so a script written without spaces (Chinese, Japanese) is cut
    between characters and never inside one. Returns no chunk for text that is empty once cleaned.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap < max_tokens:
        raise ValueError("overlap must be at least 0 and smaller than max_tokens")
    cleaned, origin = clean_text(text)
    spans = [(start, end) for start, end in token_spans(cleaned) if cleaned[start:end].strip()]
    if not spans:
        return []
    chunks: list[Chunk] = []
    step = max_tokens - overlap
    for first in range(0, len(spans), step):
        window = spans[first : first + max_tokens]
        start, end = window[0][0], window[-1][1]
        chunks.append(
            Chunk(
                text=cleaned[start:end],
                position=len(chunks),
                char_start=origin[start],
                char_end=origin[end],
            )
        )
        if first + max_tokens >= len(spans):
            break
    return chunks
