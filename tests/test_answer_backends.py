"""Answer backends other than the in-process model, through real Prism servers on loopback:

- `none`: answers are refused with a 503 that says how to turn them on; search is unaffected.
- `openai` against a chat server that is down or never answers: 503 naming it within one deadline, and
  the "nothing found" path answers without ever contacting it.
- `openai` against a real OpenAI-compatible chat server: llama-cpp-python's server (`python -m
  llama_cpp.server`, in .venv-llama) serving the same SmolLM2 GGUF file as the offline default.
"""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.conftest import minilm_settings
from tests.fixtures_answers import smollm2_gguf
from tests.servers import free_port, poll, prism_server
from tests.test_upstream_faults import silent_server

DEADLINE_S = 2.0
DOCUMENTS = [{"id": "owls", "title": "Owls", "text": "Owls hunt small animals at night in the forest."}]
RELEVANT = {"query": {"text": "When do owls hunt?"}, "collection": "backends", "min_score": 0.2, "max_tokens": 8}
IRRELEVANT = {"query": {"text": "the orbital period of Neptune's moons"}, "collection": "backends", "min_score": 0.9}


@pytest.fixture(scope="module")
def down_url():
    """A chat server address where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/v1"


def start(settings) -> tuple:
    server = prism_server(settings)
    url = server.__enter__()
    client = httpx.Client(base_url=url, timeout=120)
    assert client.post("/v1/documents", json={"collection": "backends", "documents": DOCUMENTS}).status_code == 200
    return server, client


@pytest.fixture(scope="module")
def no_answers(tmp_path_factory):
    server, client = start(minilm_settings(tmp_path_factory.mktemp("none"), answer_backend="none", whisper_model=""))
    yield client
    client.close()
    server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def unreachable(tmp_path_factory, down_url):
    settings = minilm_settings(tmp_path_factory.mktemp("down"), answer_backend="openai", answer_url=down_url, answer_model="any", whisper_model="")
    server, client = start(settings)
    yield client
    client.close()
    server.__exit__(None, None, None)


def test_with_backend_none_answers_are_503_saying_how_to_enable_them(no_answers):
    for path, body in (("/v1/answer", RELEVANT), ("/v1/chat/completions", {"model": "prism", "messages": [{"role": "user", "content": "hi"}]})):
        response = no_answers.post(path, json=body)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "generator_unavailable" and "PRISM_ANSWER_BACKEND=local" in error["message"]
    assert no_answers.post("/v1/search", json={"query": {"text": "owls"}, "collection": "backends"}).json()["results"]
    assert [model["id"] for model in no_answers.get("/v1/models").json()["data"] if model["id"].startswith("prism")] == []


def test_nothing_found_needs_no_generator_and_a_down_one_is_a_503_naming_it(unreachable, down_url):
    response = unreachable.post("/v1/answer", json=IRRELEVANT)
    assert response.status_code == 200 and response.json()["nothing_found"] is True  # the server was never asked
    for body in (RELEVANT, {**RELEVANT, "stream": True}):
        response = unreachable.post("/v1/answer", json=body)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "generator_unavailable" and f"answer server at {down_url}" in error["message"] and "unreachable" in error["message"]


def test_a_chat_server_that_never_answers_is_a_503_within_one_deadline(tmp_path):
    with silent_server() as (url, accepted):
        settings = minilm_settings(tmp_path, answer_backend="openai", answer_url=url, answer_model="any", answer_timeout_s=DEADLINE_S, whisper_model="")
        with prism_server(settings) as prism, httpx.Client(base_url=prism) as client:
            assert client.post("/v1/documents", json={"collection": "backends", "documents": DOCUMENTS}).status_code == 200
            # The first answer also asks the server for its context window (one ping's time, once).
            response = client.post("/v1/answer", json={**RELEVANT, "stream": True}, timeout=3 * DEADLINE_S + 2)
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "generator_unavailable" and url in error["message"] and f"did not answer within {DEADLINE_S:g} s" in error["message"]
            assert accepted  # it was asked


@pytest.fixture(scope="module")
def llama_server(llama_python, tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on loopback, serving SmolLM2's GGUF file. Its log
    goes to a file: llama.cpp logs a lot while loading, and a full pipe would stop it. `--n_batch 1`:
    llama-cpp-python 0.3.36 built natively on these machines' CPUs (AVX-512, AMX) crashes (SIGSEGV in
    llama_decode) when it evaluates a prompt in batches of several tokens with this Q4_1 file; one
    token at a time works, and costs a few seconds for a prompt of a few hundred tokens."""
    port = free_port()
    command = [llama_python, "-m", "llama_cpp.server", "--model", smollm2_gguf(), "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--n_ctx", "2048", "--n_batch", "1"]
    log = tmp_path_factory.mktemp("llama") / "server.log"
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{url}/models", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        poll(up, 300, "llama_cpp.server", interval=0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def via_llama(tmp_path_factory, llama_server):
    settings = minilm_settings(
        tmp_path_factory.mktemp("llama"), answer_backend="openai", answer_url=llama_server, answer_model="smollm2", answer_context_tokens=2048, whisper_model=""
    )
    server, client = start(settings)
    yield client
    client.close()
    server.__exit__(None, None, None)


def test_the_openai_backend_answers_through_a_real_chat_server(via_llama):
    response = via_llama.post("/v1/answer", json=RELEVANT)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["backend"] == "openai" and answer["model"] == "smollm2" and answer["answer"]
    assert answer["used_context"][0]["doc_id"] == "owls" and answer["used_context"][0]["label"] == 'document chunk from "Owls"'

    with via_llama.stream("POST", "/v1/answer", json={**RELEVANT, "stream": True}) as stream:
        assert stream.status_code == 200
        blocks = [block for block in stream.read().decode().split("\n\n") if block.strip()]
    names = [block.split("\n", 1)[0] for block in blocks]
    assert names[-1] == "event: answer" and names.count("event: token") >= 1
    final = json.loads(blocks[-1].split("\n", 1)[1].removeprefix("data: "))
    tokens = "".join(json.loads(block.split("\n", 1)[1].removeprefix("data: "))["text"] for block in blocks[:-1])
    assert tokens.strip() == final["answer"] and final["backend"] == "openai"
