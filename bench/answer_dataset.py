"""A small BEIR-format question set with reference answers, for `prism eval --answers`, written from the
documents and questions of bench/answer.py (offline, no download): corpus.jsonl, queries.jsonl,
qrels/test.tsv (each question judged against its document; two questions the library cannot answer
are judged with score 0 only, so a good answer is "nothing found") and answers.jsonl.

    .venv/bin/python bench/answer_dataset.py DIR && .venv/bin/prism eval --answers DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from answer import DOCUMENTS, QUESTIONS

# (question index in QUESTIONS, relevant document, reference answer)
JUDGED = [
    (0, "budget", "The committee decided to cut the travel budget by half."),
    (1, "owls", "Their soft feathers let them fly almost silently."),
    (2, "bread", "Forty minutes in a hot oven."),
    (3, "trains", "Every morning at seven."),
    (4, "roses", "Twice a week in summer."),
    (5, "loss", "The focal loss."),
    (6, "budget", "New laptops."),
    (7, "trains", "Platform nine."),
]
UNANSWERABLE = ["What is the capital of Mongolia?", "Who won the chess match in 1972?"]


def write(folder: Path) -> None:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = [{"_id": doc, "title": title, "text": text} for doc, title, text in DOCUMENTS]
    queries = [{"_id": f"q{index}", "text": QUESTIONS[index]} for index, _, _ in JUDGED]
    queries += [{"_id": f"none{index}", "text": text} for index, text in enumerate(UNANSWERABLE)]
    qrels = [f"q{index}\t{doc}\t1" for index, doc, _ in JUDGED] + [f"none{index}\tloss\t0" for index in range(len(UNANSWERABLE))]
    answers = [{"_id": f"q{index}", "answer": answer} for index, _, answer in JUDGED]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(record) + "\n" for record in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(record) + "\n" for record in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    (folder / "answers.jsonl").write_text("".join(json.dumps(record) + "\n" for record in answers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    write(parser.parse_args().folder)


if __name__ == "__main__":
    main()
