"""The grounded prompt (numbering, modality labels, time spans, the token budget) and the parsing of
citations in what a model wrote. Tokens are counted by encoders/tokens.py's real approximation, the
counter the `openai` answer backend uses."""

from __future__ import annotations

import pytest

from encoders.tokens import regex_token_spans
from retrieval.answer import relevance
from retrieval.answer_prompt import SYSTEM_PROMPT, build_prompt, parse_citations
from retrieval.errors import InvalidInput
from retrieval.types import Hit, Item, RouteScore


def item(item_id: str, modality: str, text: str, **fields) -> Item:
    return Item(id=item_id, collection="c", modality=modality, doc_id=fields.pop("doc_id", item_id), text=text, content_hash="h", created_at=0, **fields)


def text_tokens(text: str) -> int:
    return len(regex_token_spans(text))


def prompt_tokens(messages) -> int:
    return sum(text_tokens(message["content"]) + 8 for message in messages) + 8


CHUNK = Hit(item("owls#0", "text", "Owls hunt small animals at night.", title="Owls", source="owls.md"), 0.71, {"text->text": RouteScore(1, 0.71)})
WINDOW = Hit(
    item("rec#3", "audio", "We decided to cut the travel budget by half.", doc_id="rec", source="meeting.wav", start_s=754.2, end_s=3784.9),
    0.62,
    {"text->audio": RouteScore(2, 0.62)},
)
PICTURE = Hit(item("img-1", "image", "Our dog on the beach at Sylt", source="beach.jpg"), 0.016, {"text->caption": RouteScore(3, 0.41), "text->image": RouteScore(1, 0.29)})
CANDIDATES = [(CHUNK, 0.71), (WINDOW, 0.62), (PICTURE, 0.41)]

GOLDEN_USER = """Sources:

[1] document chunk from "Owls":
Owls hunt small animals at night.

[2] transcript of the recording "meeting.wav", 12:34-1:03:04:
We decided to cut the travel budget by half.

[3] caption of the picture "beach.jpg":
Our dog on the beach at Sylt

Question: What did the meeting decide about the budget?"""


def test_the_prompt_numbers_the_sources_with_their_modality_and_time_span():
    prompt = build_prompt("What did the meeting decide about the budget?", CANDIDATES, prompt_tokens, text_tokens, budget=4000)
    assert prompt.messages == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": GOLDEN_USER}]
    assert [source.n for source in prompt.sources] == [1, 2, 3]
    assert [source.hit.item.id for source in prompt.sources] == ["owls#0", "rec#3", "img-1"]
    assert prompt.tokens == prompt_tokens(prompt.messages)


def test_a_picture_without_caption_is_labelled_as_such_and_instructions_and_history_are_kept():
    bare = Hit(item("img-2", "image", "", source="cat.png"), 0.3, {"text->image": RouteScore(1, 0.3)})
    history = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."}]
    prompt = build_prompt("Which cat?", [(bare, 0.3)], prompt_tokens, text_tokens, 4000, history, instructions="Answer in French.")
    assert prompt.messages[0]["content"].endswith("The user's own instructions: Answer in French.")
    assert prompt.messages[1:3] == history
    assert '[1] a picture "cat.png" (no caption):\n(no text)' in prompt.messages[3]["content"]


def test_the_weakest_sources_are_dropped_first_to_fit_the_budget():
    whole = build_prompt("Budget?", CANDIDATES, prompt_tokens, text_tokens, budget=4000)
    two = build_prompt("Budget?", CANDIDATES[:2], prompt_tokens, text_tokens, budget=4000)
    prompt = build_prompt("Budget?", CANDIDATES, prompt_tokens, text_tokens, budget=whole.tokens - 1)
    assert [source.n for source in prompt.sources] == [1, 2]
    assert prompt.tokens == two.tokens <= whole.tokens - 1
    assert "[3]" not in prompt.messages[-1]["content"]


def test_a_best_source_too_long_for_the_budget_is_cut_by_tokens():
    long_text = " ".join(f"word{i}" for i in range(400))
    long_hit = Hit(item("long#0", "text", long_text, title="Long"), 0.9, {"text->text": RouteScore(1, 0.9)})
    empty = build_prompt("Q?", [], prompt_tokens, text_tokens, budget=4000)
    budget = empty.tokens + 120
    prompt = build_prompt("Q?", [(long_hit, 0.9)], prompt_tokens, text_tokens, budget=budget)
    assert len(prompt.sources) == 1 and prompt.sources[0].text.endswith(" …")
    assert prompt.tokens <= budget
    kept = prompt.sources[0].text.removesuffix(" …").split(" ")
    assert 10 < len(kept) < 400 and long_text.startswith(" ".join(kept))
    # One more word would not have fitted: the cut is as long as the budget allows.
    longer = " ".join(long_text.split(" ")[: len(kept) + 1]) + " …"
    assert prompt_tokens(prompt.messages) - text_tokens(prompt.sources[0].text) + text_tokens(longer) > budget - 2


def test_the_oldest_turns_are_dropped_before_the_question_is_refused():
    history = [{"role": "user", "content": "old " * 300}, {"role": "assistant", "content": "short answer"}]
    prompt = build_prompt("Q?", CANDIDATES[:1], prompt_tokens, text_tokens, budget=400, history=history)
    assert prompt.history_dropped == 1 and prompt.messages[1] == history[1]
    with pytest.raises(InvalidInput, match="context window"):
        build_prompt("why " * 500, CANDIDATES, prompt_tokens, text_tokens, budget=300)


def test_relevance_is_the_rerank_score_else_the_best_route_cosine():
    assert relevance(PICTURE) == 0.41  # the fused RRF score (0.016) is not on the cosine scale
    assert relevance(Hit(CHUNK.item, 0.016, CHUNK.routes, rerank_score=0.93)) == 0.93


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Owls hunt at night [1].", [1]),
        ("They cut the budget [2][3], as said before [1].", [2, 3, 1]),
        ("Both [1, 3] and again [3; 1].", [1, 3]),
        ("A range [1-3].", [1, 2, 3]),
        ("As [Source 2] and [sources 1 and 3] say.", [2, 1, 3]),
        ("Cites [4] and [0], which do not exist, and [2].", [2]),
        ("Years [2019-2024] and [12] are not sources.", []),
        ("No citations at all.", []),
        ("", []),
        ("Brackets [a] or [1a] or [] are not citations.", []),
    ],
)
def test_citations_are_parsed_and_those_of_missing_sources_dropped(answer, expected):
    assert parse_citations(answer, source_count=3) == expected
