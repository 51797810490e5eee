"""Grounded answers: retrieve, keep what is relevant, prompt a generator with numbered sources, and
resolve the sources the answer cites to items.

- Retrieval is the search pipeline itself (every modality, filters, fusion, optional reranking).
- A source is relevant when its relevance reaches `min_score`: the reranker's score when it was
  reranked, else the best cosine similarity among the routes that found it (the web UI's threshold
  compares the same number; fused RRF scores are not on that scale).
- When nothing is relevant, the answer says that the library has nothing on it, and the generator is
  neither loaded nor called.
- The prompt (retrieval/answer_prompt.py) numbers the sources with their modality and fits them into
  the generator's context window by tokens; `citations` are the sources the answer cites.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from encoders.generate import Generator, Message
from retrieval.answer_prompt import PICTURE_QUESTION, Prompt, Source, build_prompt, parse_citations
from retrieval.search import Query
from retrieval.types import Hit, SearchResult

NOTHING_FOUND = "The library has nothing on this: no source in collection {collection!r} reached the relevance threshold ({min_score:g})."


@dataclass(frozen=True)
class AnswerRequest:
    query: Query  # what is searched (a text, or a picture), with top_k, filters, modalities and rerank
    question: str | None  # the question put to the model: the text, or a spoken clip's transcript; None for a picture
    min_score: float
    max_tokens: int
    temperature: float = 0.0
    history: tuple[Message, ...] = ()  # earlier turns of a chat, oldest first
    instructions: str | None = None  # a chat client's own system message


@dataclass
class Answer:
    text: str
    sources: list[Source]  # the sources given to the model
    citations: list[Source]  # those the answer cites, in order of first mention
    nothing_found: bool
    model: str | None  # the generator that wrote it; None when nothing was found
    backend: str | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    search: SearchResult | None = None


def relevance(hit: Hit) -> float:
    """What the relevance threshold is compared with (the same number as in the web UI)."""
    if hit.rerank_score is not None:
        return hit.rerank_score
    return max((route.score for route in hit.routes.values()), default=hit.score)


class AnswerRun:
    """One answer. Retrieval (and the prompt) happen when it is made, so that what can go wrong
    before the first word (a bad query, an unknown collection, no generator) raises there; then
    `pieces()` streams the answer and `result()` gives it whole, with its citations."""

    def __init__(self, search: Callable[[Query], SearchResult], generator: Callable[[], Generator], request: AnswerRequest) -> None:
        self.request = request
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.search = search(request.query)
        rerank_ms = self.search.timings_ms.get("rerank", 0.0)
        self.timings["retrieve"] = round(self.search.timings_ms.get("total", 0.0) - rerank_ms, 3)
        if rerank_ms:
            self.timings["rerank"] = round(rerank_ms, 3)
        self.relevant = [(hit, relevance(hit)) for hit in self.search.hits if relevance(hit) >= request.min_score]
        self.generator: Generator | None = None
        self.prompt: Prompt | None = None
        self.text = ""
        self._done = not self.relevant
        if self.relevant:
            self.generator = generator()  # loads a local model on the first answer; 503 if there is none
            budget = self.generator.info.context_tokens - request.max_tokens
            self.prompt = build_prompt(
                self.question(),
                self.relevant,
                self.generator.prompt_tokens,
                self.generator.text_tokens,
                budget,
                request.history,
                request.instructions,
            )

    def question(self) -> str:
        text = (self.request.question or "").strip()
        return text or (PICTURE_QUESTION if self.request.query.image is not None else "What do the sources say?")

    @property
    def nothing_found(self) -> bool:
        return not self.relevant

    @property
    def sources(self) -> list[Source]:
        return self.prompt.sources if self.prompt else []

    def pieces(self) -> Iterator[str]:
        """The answer as the generator writes it (nothing when nothing was found)."""
        if self._done:
            return
        started = time.perf_counter()
        first = True
        for piece in self.generator.stream(self.prompt.messages, self.request.max_tokens, self.request.temperature):
            if first:
                self.timings["first_token"] = round((time.perf_counter() - self.started) * 1000, 3)
                first = False
            self.text += piece
            yield piece
        self.timings["generate"] = round((time.perf_counter() - started) * 1000, 3)
        self._done = True

    def result(self) -> Answer:
        """The whole answer; reads what is left of the stream first."""
        for _ in self.pieces():
            pass
        self.timings["total"] = round((time.perf_counter() - self.started) * 1000, 3)
        if self.nothing_found:
            text = NOTHING_FOUND.format(collection=self.request.query.collection, min_score=self.request.min_score)
            return Answer(text, [], [], True, None, None, dict(self.timings), search=self.search)
        text = self.text.strip()
        by_number = {source.n: source for source in self.sources}
        info = self.generator.info
        return Answer(
            text=text,
            sources=self.sources,
            citations=[by_number[n] for n in parse_citations(text, len(self.sources))],
            nothing_found=False,
            model=info.name,
            backend=info.backend,
            timings_ms=dict(self.timings),
            prompt_tokens=self.prompt.tokens,
            completion_tokens=self.generator.text_tokens(text) if text else 0,
            search=self.search,
        )
