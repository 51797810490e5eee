"""The datasets `prism eval` reads: a BEIR-format folder, and a folder of captioned pictures.
Everything is checked here, before any model loads, so that a malformed file fails in a second."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from api.eval.client import EvalError


@dataclass
class BeirDataset:
    name: str
    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]  # id -> text, in file order
    qrels: dict[str, dict[str, float]]  # query id -> corpus id -> grade
    warnings: list[str] = field(default_factory=list)


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise EvalError(f"{path} is missing (see prism eval --help for the dataset format)")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise EvalError(f"{path}:{number}: not JSON: {error}") from None
            if not isinstance(record, dict):
                raise EvalError(f"{path}:{number}: expected a JSON object")
            yield number, record


def required(record: dict[str, Any], key: str, where: str) -> str:
    if record.get(key) is None:
        raise EvalError(f"{where}: no {key!r}")
    return str(record[key])


def load_beir(folder: Path, split: str) -> BeirDataset:
    warnings: list[str] = []
    corpus: dict[str, tuple[str, str]] = {}
    duplicates = 0
    for number, record in read_jsonl(folder / "corpus.jsonl"):
        doc_id = required(record, "_id", f"corpus.jsonl:{number}")
        if doc_id in corpus:
            duplicates += 1
            continue
        corpus[doc_id] = (str(record.get("title") or ""), str(record.get("text") or ""))
    if duplicates:
        warnings.append(f"{duplicates} corpus lines repeat an earlier _id; the first of each was kept")
    queries: dict[str, str] = {}
    for number, record in read_jsonl(folder / "queries.jsonl"):
        queries[required(record, "_id", f"queries.jsonl:{number}")] = required(record, "text", f"queries.jsonl:{number}")
    qrels = read_qrels(folder / "qrels" / f"{split}.tsv")
    unknown_docs = {doc for judged in qrels.values() for doc, grade in judged.items() if grade > 0 and doc not in corpus}
    if unknown_docs:
        warnings.append(f"{len(unknown_docs)} relevant documents in the qrels are not in the corpus; they count as relevant and cannot be found")
    unknown_queries = set(qrels) - set(queries)
    if unknown_queries:
        warnings.append(f"{len(unknown_queries)} queries in the qrels are not in queries.jsonl and are skipped")
    name = folder.resolve().name or "dataset"
    return BeirDataset(name=name, corpus=corpus, queries=queries, qrels=qrels, warnings=warnings)


def read_qrels(path: Path) -> dict[str, dict[str, float]]:
    if not path.is_file():
        raise EvalError(f"{path} is missing (qrels/SPLIT.tsv: query-id<TAB>corpus-id<TAB>score; see --split)")
    qrels: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.rstrip("\r\n").split("\t")
            if not line.strip() or (number == 1 and fields[0].strip().lower() in ("query-id", "query_id", "qid")):
                continue
            if len(fields) < 3:
                raise EvalError(f"{path}:{number}: expected query-id<TAB>corpus-id<TAB>score")
            try:
                grade = float(fields[-1])
            except ValueError:
                raise EvalError(f"{path}:{number}: the score {fields[-1]!r} is not a number") from None
            # Some qrels files (TREC style) have an iteration column: query-id 0 corpus-id score.
            qrels.setdefault(fields[0].strip(), {})[fields[-2].strip()] = grade
    return qrels


@dataclass
class CaptionDataset:
    name: str
    folder: Path
    captions: list[tuple[str, str]]  # (image filename, caption), in file order
    warnings: list[str] = field(default_factory=list)


def load_captions(folder: Path) -> CaptionDataset:
    tsv, jsonl = folder / "captions.tsv", folder / "captions.jsonl"
    pairs: list[tuple[str, str]] = []
    if tsv.is_file():
        with tsv.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                name, tab, caption = line.rstrip("\r\n").partition("\t")
                if not tab:
                    raise EvalError(f"{tsv}:{number}: expected filename<TAB>caption")
                if number == 1 and name.strip().lower() in ("filename", "image", "file") and not (folder / name.strip()).is_file():
                    continue  # a header
                pairs.append((name.strip(), caption.strip()))
    elif jsonl.is_file():
        for number, record in read_jsonl(jsonl):
            pairs.append((required(record, "image", f"{jsonl}:{number}"), required(record, "caption", f"{jsonl}:{number}").strip()))
    else:
        raise EvalError(f"{folder} has neither captions.tsv (filename<TAB>caption) nor captions.jsonl ({{\"image\", \"caption\"}})")
    warnings = []
    missing = sorted({name for name, _ in pairs if not (folder / name).is_file()})
    if missing:
        warnings.append(f"{len(missing)} captioned pictures are not in the folder and are skipped: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    empty = sum(1 for name, caption in pairs if not caption)
    if empty:
        warnings.append(f"{empty} empty captions are skipped")
    pairs = [(name, caption) for name, caption in pairs if caption and name not in missing]
    if not pairs:
        raise EvalError(f"no captioned pictures found in {folder}")
    return CaptionDataset(name=folder.resolve().name or "images", folder=folder, captions=pairs, warnings=warnings)
