"""The grounded prompt, and the citations in what the model wrote.

Sources are numbered [1], [2], ... in order of relevance, each labelled with what it is: a document
chunk (with its document's title), a transcript window of a recording (with its time span), or a
picture's caption. The model is asked to answer from them only and to cite them by number. They are
fitted into the generator's context window by tokens, counted with the generator's own tokenizer:
the question, the instructions, the answer's max_tokens and the conversation so far come first (the
oldest turns are dropped when they do not fit), then the sources, best first; the weakest sources are
dropped first, and a best source that does not fit alone is cut to fit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from retrieval.errors import InvalidInput
from retrieval.types import Hit

Message = dict[str, str]

SYSTEM_PROMPT = (
    "You answer questions from the user's library. The library's sources are given as a numbered list: "
    "document chunks, transcripts of recordings (with their time span) and captions of pictures. "
    "Answer only from these sources. After each statement, cite the sources it comes from by their "
    "numbers in square brackets, like [1] or [2][3]. If the sources do not answer the question, say "
    "that the library does not say. Be brief."
)
PICTURE_QUESTION = "The question is a picture (not shown to you). What do the sources say about what it shows?"
TRUNCATED = " …"


@dataclass(frozen=True)
class Source:
    n: int  # its number in the prompt, from 1
    hit: Hit
    relevance: float  # what the threshold was compared with (retrieval/answer.py relevance())
    text: str  # the text given to the model (cut to fit, when the best source alone was too long)


@dataclass(frozen=True)
class Prompt:
    messages: list[Message]
    sources: list[Source]  # those in the prompt, numbered; weaker ones that did not fit are gone
    tokens: int  # the prompt's size, counted by the generator
    history_dropped: int = 0  # earlier turns left out to make room


def clock(seconds: float) -> str:
    whole = max(0, int(seconds))
    hours, minutes, secs = whole // 3600, whole % 3600 // 60, whole % 60
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def label(source: Source) -> str:
    """What the source is, for the model and for people: its modality and where it comes from."""
    item = source.hit.item
    name = item.title or item.source or item.doc_id
    if item.modality == "audio":
        return f'transcript of the recording "{item.source or item.doc_id}", {clock(item.start_s)}-{clock(item.end_s)}'
    if item.modality == "image":
        return f'caption of the picture "{item.source or item.doc_id}"' if item.text.strip() else f'a picture "{item.source or item.doc_id}" (no caption)'
    return f'document chunk from "{name}"'


def source_block(source: Source) -> str:
    return f"[{source.n}] {label(source)}:\n{source.text.strip() or '(no text)'}"


def user_message(question: str, sources: Sequence[Source]) -> Message:
    listed = "\n\n".join(source_block(source) for source in sources) or "(none)"
    return {"role": "user", "content": f"Sources:\n\n{listed}\n\nQuestion: {question}"}


def system_message(instructions: str | None) -> Message:
    extra = f"\n\nThe user's own instructions: {instructions.strip()}" if instructions and instructions.strip() else ""
    return {"role": "system", "content": SYSTEM_PROMPT + extra}


def build_prompt(
    question: str,
    candidates: Sequence[tuple[Hit, float]],
    prompt_tokens: Callable[[Sequence[Message]], int],
    text_tokens: Callable[[str], int],
    budget: int,
    history: Sequence[Message] = (),
    instructions: str | None = None,
) -> Prompt:
    """The messages for the generator: system, the conversation so far, then the sources and the
    question. `candidates` are (hit, relevance), best first; `budget` is the prompt's room in tokens
    (the context window less the answer's max_tokens). Raises InvalidInput when not even the question
    fits."""
    system = system_message(instructions)
    history = list(history)
    dropped = 0
    while prompt_tokens([system, *history, user_message(question, [])]) > budget:
        if not history:
            raise InvalidInput(
                f"the question does not fit the answer model's context window: with max_tokens it needs more than the "
                f"{budget} tokens left for the prompt; ask a shorter question or lower max_tokens"
            )
        history.pop(0)  # the oldest turn first
        dropped += 1
    sources = [Source(n, hit, relevance, hit.item.text) for n, (hit, relevance) in enumerate(candidates, 1)]

    def size(chosen: Sequence[Source]) -> int:
        return prompt_tokens([system, *history, user_message(question, chosen)])

    chosen = _fit(sources, size, budget)
    if not chosen and sources:
        chosen = [_cut_to_fit(sources[0], size, text_tokens, budget)]
    return Prompt(messages=[system, *history, user_message(question, chosen)], sources=chosen, tokens=size(chosen), history_dropped=dropped)


def _fit(sources: list[Source], size: Callable[[Sequence[Source]], int], budget: int) -> list[Source]:
    """The longest prefix of `sources` (best first) whose prompt fits: binary search, since the
    prompt only grows with every source added."""
    low, high = 0, len(sources)  # low always fits
    while low < high:
        middle = (low + high + 1) // 2
        if size(sources[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return sources[:low]


def _cut_to_fit(source: Source, size: Callable[[Sequence[Source]], int], text_tokens: Callable[[str], int], budget: int) -> Source:
    """The source with its text cut, at a word boundary, to the longest start that fits (by tokens)."""
    words = source.text.split(" ")
    low, high = 0, len(words)
    while low < high:
        middle = (low + high + 1) // 2
        if size([replace(source, text=" ".join(words[:middle]) + TRUNCATED)]) <= budget:
            low = middle
        else:
            high = middle - 1
    return replace(source, text=" ".join(words[:low]) + TRUNCATED)


# [1], [1][3], [1, 3], [1; 3], [1-3], [Source 2], [sources 1, 2]
_CITATION = re.compile(r"\[\s*(?:sources?\s*)?(\d+(?:\s*(?:,|;|-|–|and)\s*(?:sources?\s*)?\d+)*)\s*\]", re.IGNORECASE)
_NUMBER_OR_RANGE = re.compile(r"(\d+)(?:\s*(?:-|–)\s*(\d+))?")
MAX_RANGE = 20  # [1-3] is a range; [2019-2024] is a year span, not 2000 citations


def parse_citations(answer: str, source_count: int) -> list[int]:
    """The source numbers an answer cites, in order of first mention, each once. Numbers that name no
    source (0, or above source_count) are dropped; text without brackets cites nothing."""
    cited: dict[int, None] = {}
    for match in _CITATION.finditer(answer):
        for number in _NUMBER_OR_RANGE.finditer(match.group(1)):
            first = int(number.group(1))
            last = int(number.group(2)) if number.group(2) else first
            numbers = range(first, last + 1) if 0 <= last - first <= MAX_RANGE else (first, last)
            for n in numbers:
                if 1 <= n <= source_count:
                    cited[n] = None
    return list(cited)
