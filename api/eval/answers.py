"""`prism eval --answers`: the quality of grounded answers on a BEIR-format dataset, through the API.

The corpus is ingested into a fresh collection and every question judged in the qrels is asked through
POST /v1/answer. A question with a relevant document (grade > 0) is answerable; one judged with no
relevant document (all grades 0) should be answered "nothing found". Figures:

- citation_precision: of the documents an answer cites, the share that are relevant (mean over the
  answerable questions whose answer cites something);
- citation_recall@k: of the relevant documents (at most k, the sources retrieved), the share the answer
  cites; context_recall@k: the share given to the model at all (what retrieval and the threshold let in);
- nothing_found_accuracy: the share of questions without a relevant source answered "nothing found",
  and false_nothing_found: the share of answerable questions answered so;
- token_f1: the answer against a reference answer (answers.jsonl, optional), SQuAD's token F1.
Every figure names the backend and model that answered: run it once per backend to compare them.
"""

from __future__ import annotations

import argparse
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any

from api.eval.client import EvalError, call, eval_collection, progress, seconds, server_info
from api.eval.datasets import BeirDataset, read_jsonl
from api.eval.text import TextEval, document_text
from prism_client import PrismClient
from retrieval.metrics import mean
from retrieval.timing import StageTimer

ANSWER_FIGURES = ("citation_precision", "citation_recall@k", "context_recall@k", "nothing_found_accuracy", "false_nothing_found", "token_f1")
MAX_SOURCES = 50  # the API's limit on top_k for answers
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_tokens(text: str) -> list[str]:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(character for character in text.lower() if character not in string.punctuation)
    return _ARTICLES.sub(" ", text).split()


def token_f1(answer: str, reference: str) -> float:
    """The harmonic mean of token precision and recall of an answer against a reference (SQuAD)."""
    predicted, expected = normalize_tokens(answer), normalize_tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def load_references(folder: Path) -> dict[str, str]:
    """answers.jsonl: {"_id" (or "query_id", "query-id"): ..., "answer": ...} per line; optional."""
    path = folder / "answers.jsonl"
    if not path.is_file():
        return {}
    references: dict[str, str] = {}
    for number, record in read_jsonl(path):
        query_id = next((record[key] for key in ("_id", "query_id", "query-id") if record.get(key) is not None), None)
        if query_id is None or not isinstance(record.get("answer"), str):
            raise EvalError(f"{path}:{number}: expected {{\"_id\": ..., \"answer\": \"...\"}}")
        references[str(query_id)] = record["answer"]
    return references


def score_question(answer: dict[str, Any], relevant: set[str], k: int, reference: str | None) -> dict[str, Any]:
    cited = list(dict.fromkeys(citation["doc_id"] for citation in answer["citations"]))
    used = list(dict.fromkeys(source["doc_id"] for source in answer["used_context"]))
    scores: dict[str, Any] = {"nothing_found": answer["nothing_found"], "cited": cited, "used": used}
    if relevant:
        room = min(len(relevant), k)
        scores["citation_recall@k"] = len(relevant.intersection(cited)) / room
        scores["context_recall@k"] = len(relevant.intersection(used)) / room
        if cited:
            scores["citation_precision"] = len(relevant.intersection(cited)) / len(cited)
    if reference is not None:
        scores["token_f1"] = token_f1(answer["answer"], reference)
    return scores


def summarize(per_question: list[dict[str, Any]]) -> dict[str, float | None]:
    answerable = [q for q in per_question if q["relevant"]]
    unanswerable = [q for q in per_question if not q["relevant"]]

    def average(rows: list[dict[str, Any]], key: str) -> float | None:
        values = [row[key] for row in rows if key in row]
        return round(mean(values), 4) if values else None

    return {
        "citation_precision": average(answerable, "citation_precision"),
        "citation_recall@k": average(answerable, "citation_recall@k"),
        "context_recall@k": average(answerable, "context_recall@k"),
        "nothing_found_accuracy": round(mean(float(q["nothing_found"]) for q in unanswerable), 4) if unanswerable else None,
        "false_nothing_found": round(mean(float(q["nothing_found"]) for q in answerable), 4) if answerable else None,
        "token_f1": average(per_question, "token_f1"),
        "cited_something": round(mean(float(bool(q["cited"])) for q in answerable), 4) if answerable else None,
    }


class AnswerEval:
    def __init__(self, client: PrismClient, dataset: BeirDataset, args: argparse.Namespace) -> None:
        self.client, self.dataset, self.args = client, dataset, args
        self.top_k = min(args.top_k, MAX_SOURCES)
        self.timer = StageTimer()
        self.warnings = list(dataset.warnings)
        self.references = load_references(args.dataset)

    def run(self) -> dict[str, Any]:
        dataset, args = self.dataset, self.args
        judged = [q for q in dataset.queries if q in dataset.qrels or q in self.references]
        if not judged:
            raise EvalError(f"no question in queries.jsonl is judged in qrels/{args.split}.tsv or has a reference in answers.jsonl")
        question_ids = judged[: args.limit] if args.limit else judged
        documents = {doc: text for doc, fields in dataset.corpus.items() if (text := document_text(*fields))}
        if not documents:
            raise EvalError("the corpus has no documents with text")
        server_info(self.client)
        per_question: list[dict[str, Any]] = []
        with eval_collection(self.client, dataset.name) as collection:
            with self.timer.stage("ingest"):
                chunks = TextEval(self.client, dataset, args).ingest(collection, documents)
            with self.timer.stage("answer"):
                for query_id in progress(question_ids, unit="question", desc="answer"):
                    per_question.append(self.ask(collection, query_id))
        answered = next((q for q in per_question if q["model"]), {})
        return {
            "dataset": dataset.name,
            "mode": "answers",
            "backend": answered.get("backend"),
            "model": answered.get("model"),
            "questions": len(per_question),
            "answerable": sum(1 for q in per_question if q["relevant"]),
            "unanswerable": sum(1 for q in per_question if not q["relevant"]),
            "with_reference": sum(1 for q in per_question if "token_f1" in q),
            "documents": len(documents),
            "chunks": chunks,
            "top_k": self.top_k,
            "min_score": args.min_score,
            **summarize(per_question),
            "per_question": per_question,
            "warnings": self.warnings,
            "timings_s": seconds(self.timer),
        }

    def ask(self, collection: str, query_id: str) -> dict[str, Any]:
        options = dict(collection=collection, top_k=self.top_k, rerank=bool(self.args.rerank), min_score=self.args.min_score, max_tokens=self.args.max_tokens)
        answer = call(self.client.answer, self.dataset.queries[query_id], **options)
        relevant = {doc for doc, grade in self.dataset.qrels.get(query_id, {}).items() if grade > 0}
        scores = score_question(answer, relevant, self.top_k, self.references.get(query_id))
        return {"query": query_id, "relevant": sorted(relevant), "answer": answer["answer"], "model": answer["model"], "backend": answer["backend"], **scores}


def format_answers_report(report: dict[str, Any]) -> str:
    lines = [
        f"{report['dataset']}: {report['questions']} questions ({report['answerable']} answerable, {report['unanswerable']} without a relevant source, "
        f"{report['with_reference']} with a reference answer), {report['documents']} documents, {report['top_k']} sources per question",
        f"answers by {report['model'] or '(no answer was generated)'} ({report['backend'] or '-'})",
        "",
    ]
    for key in (*ANSWER_FIGURES, "cited_something"):
        value = report[key]
        lines.append(f"{key:<24}{'-' if value is None else f'{value:.4f}':>10}")
    lines += [""] + [f"warning: {warning}" for warning in report["warnings"]]
    lines.append("time: " + ", ".join(f"{stage} {secs:.1f} s" for stage, secs in report["timings_s"].items()))
    return "\n".join(lines)
