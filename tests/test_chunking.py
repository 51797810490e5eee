"""Chunking: token windows with overlap, offsets into the original text, invisible Unicode."""

import re

import pytest

from encoders.tokens import regex_token_spans
from retrieval.chunking import chunk_text, clean_text


def words(text):
    return [match.span() for match in re.finditer(r"\S+", text)]


def test_windows_overlap_and_cover_the_text():
    text = " ".join(f"w{i}" for i in range(25))
    chunks = chunk_text(text, words, max_tokens=10, overlap=3)
    assert [c.text.split()[0] for c in chunks] == ["w0", "w7", "w14", "w21"]
    assert all(len(c.text.split()) <= 10 for c in chunks)
    assert chunks[-1].text.split()[-1] == "w24"
    # Neighbours share exactly `overlap` tokens.
    assert chunks[0].text.split()[-3:] == chunks[1].text.split()[:3]
    assert [c.position for c in chunks] == [0, 1, 2, 3]
    for chunk in chunks:
        assert text[chunk.char_start : chunk.char_end] == chunk.text


def test_short_text_is_one_chunk_and_blank_text_none():
    assert len(chunk_text("just a few words", words, 10, 2)) == 1
    assert chunk_text(" \n\t\u200b\ufeff ", words, 10, 2) == []


def test_invisible_characters_are_dropped_and_offsets_point_into_the_original():
    original = "\ufeffzero\u200bwidth words here"
    cleaned, origin = clean_text(original)
    assert cleaned == "zerowidth words here"
    assert len(origin) == len(cleaned) + 1 and origin[-1] == len(original)
    (chunk,) = chunk_text(original, words, 10, 2)
    assert chunk.text == "zerowidth words here"
    assert original[chunk.char_start : chunk.char_end] == "zero\u200bwidth words here"


def test_combining_marks_are_composed_nfc():
    original = "cafe\u0301 au lait"
    cleaned, _ = clean_text(original)
    assert cleaned == "café au lait"
    (chunk,) = chunk_text(original, words, 10, 2)
    assert original[chunk.char_start : chunk.char_end] == original


@pytest.mark.parametrize(
    "text",
    [
        "检索增强生成把外部知识库与大语言模型结合起来，回答问题时先检索再生成。" * 3,
        "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。" * 3,
    ],
)
def test_scripts_without_spaces_are_split_between_characters(text):
    chunks = chunk_text(text, regex_token_spans, max_tokens=16, overlap=4)
    assert len(chunks) > 3
    for chunk in chunks:
        assert 0 < len(chunk.text) <= 16
        assert text[chunk.char_start : chunk.char_end] == chunk.text
    # Every character of the text is in some chunk.
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.char_start, chunk.char_end))
    assert covered == set(range(len(text)))


def test_bad_window_settings_are_rejected():
    with pytest.raises(ValueError):
        chunk_text("a b", words, 0, 0)
    with pytest.raises(ValueError):
        chunk_text("a b", words, 4, 4)


def test_text_that_needs_no_cleaning_reads_the_same_through_the_fast_path():
    """clean_text returns NFC text unchanged without its per-character loop: the answer must be what the
    loop gives, for random mixes of ASCII, accents (composed and not), Hangul jamo, Indic vowel signs,
    emoji with joiners and invisible characters."""
    import random
    import unicodedata

    from retrieval import chunking

    alphabet = list("ab .\n") + ["é", "e\u0301", "\u0301", "\u1100", "\u1161", "\u11a8", "\uac00", "\u0b47", "\u0b3e", "\u0b4b", "👩\u200d💻", "\u200c", "\u200b", "\ufeff", "\u00ad", "Å", "\u212b", "ﬁ"]
    rng = random.Random(14)
    fast_path = 0
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        got = clean_text(text)
        fast_path += unicodedata.is_normalized("NFC", text) and not chunking.INVISIBLE.intersection(text)
        cleaned, origin, cluster, start = [], [], "", 0
        for index, char in enumerate(text + "\0"):  # the loop, as clean_text runs it on other text
            if char in chunking.INVISIBLE:
                continue
            if cluster and not unicodedata.combining(char):
                composed = unicodedata.normalize("NFC", cluster)
                cleaned.extend(composed)
                origin.extend([start] * len(composed))
                cluster = ""
            if not cluster:
                start = index
            cluster += char
        assert got == ("".join(cleaned), origin + [len(text)]), repr(text)
    assert fast_path > 300
