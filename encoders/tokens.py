"""Approximate token boundaries, for chunking text when the model's tokenizer is not at hand.

The openai backend talks to a remote server that does not expose its tokenizer. Chunking only needs
token counts and cut points that are roughly right, so this splits text the way subword tokenizers
roughly do, erring towards more tokens (chunks then stay below the model's limit):

- a run of letters/digits is cut into pieces of at most 4 characters (BPE pieces of English words
  average about 4 characters);
- each Chinese, Japanese or Korean character is a token of its own: these scripts are written without
  spaces, so a "word" regex would otherwise swallow a whole sentence as one token;
- every other visible symbol (punctuation, emoji) is a token; whitespace is not.
"""

from __future__ import annotations

import re

_MAX_WORD_PIECE = 4

# Han (incl. extension A and compatibility ideographs), Hiragana, Katakana (incl. half-width),
# Hangul syllables and jamo, CJK punctuation.
_CJK = (
    "\u3000-\u303f"  # CJK symbols and punctuation
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff"  # Katakana
    "\u3100-\u312f"  # Bopomofo
    "\u3130-\u318f"  # Hangul compatibility jamo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK unified ideographs extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\u1100-\u11ff"  # Hangul jamo
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0003134f"  # CJK unified ideographs extensions B-G
)

# Order matters: a CJK character is also a "word character" (\w), so it is matched first.
_TOKEN = re.compile(
    rf"[{_CJK}]"  # one CJK character
    rf"|(?:(?![{_CJK}])\w){{1,{_MAX_WORD_PIECE}}}"  # up to 4 word characters that are not CJK
    r"|[^\w\s]"  # one other visible symbol
)


def regex_token_spans(text: str) -> list[tuple[int, int]]:
    """Character (start, end) of each approximate token of `text`, in order, whitespace excluded."""
    return [match.span() for match in _TOKEN.finditer(text)]
