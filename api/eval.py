"""`prism eval`: measure retrieval quality through the real path, over the API.

Text (BEIR format): the corpus is ingested over the API into a fresh collection, every judged query is
searched, and nDCG@10, Recall@10, Recall@100 and MRR@10 are computed on the documents found (a document
found through several chunks counts once, at its best rank). The same metrics are computed for the bare
text encoder, loaded in this process from the same settings, with exact brute-force search in NumPy over
the same texts (each document whole, as sent to the API), and the pipeline/bare ratio says what chunking,
pooling, normalisation and indexing cost. `--spoken` also searches every query as espeak-ng speech and
reports the transcripts' word error rate; `--images` measures text-to-image and image-to-text recall on a
folder of captioned pictures. The eval collection is dropped at the end, also on failure.

The server side is whatever `connect()` gives: a running server (--url), or the same app in-process.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import httpx
import numpy as np

from api.settings import Settings
from retrieval.timing import StageTimer
from retrieval.metrics import hit_at_k, mean, mrr_at_k, ndcg_at_k, recall_at_k, word_error_rate

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
METRIC_LABELS = {"ndcg@10": "nDCG@10", "recall@10": "Recall@10", "recall@100": "Recall@100", "mrr@10": "MRR@10"}
IMAGE_KS = (1, 5, 10)
TOLERANCE = 0.02  # the pipeline may trail the bare encoder by this much (relative) before the report warns
DOCUMENT_BATCH = 64  # documents per ingest request
IMAGE_BATCH = 16  # pictures per ingest request
IMAGE_BATCH_BYTES = 64 * 1024 * 1024
EMBED_BATCH = 256  # texts per call to the bare encoder (for progress; backends batch on their own)
MAX_TOP_K = 1000  # the API's limit
SPOKEN_LANGUAGE = "en"  # espeak-ng's default voice speaks English
MAX_TITLE_BYTES = 1024

DESCRIPTION = """\
Measure retrieval quality on a dataset, through the API (the server at --url, or in-process).

Text, a BEIR-format folder:
  corpus.jsonl      {"_id": ..., "title": ... (optional), "text": ...} per line
  queries.jsonl     {"_id": ..., "text": ...} per line
  qrels/test.tsv    query-id<TAB>corpus-id<TAB>score, after a header line; score > 0 is relevant (graded)
Each document is ingested as "title\\n\\ntext" (or its text when it has no title) into a fresh collection
that is dropped at the end. Reports nDCG@10, Recall@10, Recall@100 and MRR@10 of the pipeline and of the
bare text encoder (exact search in NumPy over the same texts, each document whole), and their ratio.
The bare encoder is loaded from the local settings, which must name the server's text model (in-process,
it is the app's own encoder).

--spoken: every query is also spoken by espeak-ng and searched as audio (POST /v1/search/upload,
language en); adds the spoken metrics and the word error rate of the transcripts.

--images, a folder of pictures with a captions file:
  captions.tsv      filename<TAB>caption per line (a first line "filename<TAB>caption" is a header), or
  captions.jsonl    {"image": filename, "caption": ...} per line
Filenames are relative to the folder; a picture may have several captions. The pictures are ingested
without captions and the captions as text documents; reports text-to-image Recall@1/5/10 (a caption finds
its picture) and image-to-text Recall@1/5/10 (a picture finds one of its captions). Needs a CLIP model.
"""


class EvalError(Exception):
    """A problem with the dataset, the options or the server, reported as a one-line error."""


Connect = Callable[[argparse.Namespace], ContextManager[httpx.Client]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("dataset", type=Path, metavar="DATASET_DIR", help="A BEIR-format folder, or with --images a folder of captioned pictures.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--spoken", action="store_true", help="Also search every query as synthetic speech (espeak-ng) and report the word error rate.")
    mode.add_argument("--images", action="store_true", help="DATASET_DIR is a folder of pictures with captions.tsv or captions.jsonl.")
    parser.add_argument("--rerank", action="store_true", help="Rerank the pipeline's results (the bare encoder is never reranked).")
    parser.add_argument("--top-k", type=int, default=100, help="Documents ranked per query (at least 100, for Recall@100; default 100).")
    parser.add_argument("--limit", type=int, metavar="N", help="Evaluate only the first N queries (with --images: the first N captions and N pictures); the whole corpus is still ingested.")
    parser.add_argument("--split", default="test", help="Which qrels/SPLIT.tsv to read (default test).")
    parser.add_argument("--output", type=Path, metavar="REPORT.json", help="Also write the report as JSON to this file.")


def evaluate(args: argparse.Namespace, connect: Connect) -> int:
    if args.limit is not None and args.limit < 1:
        raise EvalError("--limit must be at least 1")
    if not 1 <= args.top_k <= MAX_TOP_K:
        raise EvalError(f"--top-k must be between 1 and {MAX_TOP_K}")
    if args.images and args.rerank:
        raise EvalError("--rerank reorders text queries' results; it does not apply to --images")
    if not args.dataset.is_dir():
        raise EvalError(f"{args.dataset} is not a folder")
    started = time.perf_counter()
    # Read the dataset before anything is loaded: a malformed file should fail in a second, not after the models.
    dataset = load_captions(args.dataset) if args.images else load_beir(args.dataset, args.split)
    if args.spoken and shutil.which("espeak-ng") is None:
        raise EvalError("--spoken synthesizes the queries with espeak-ng, which is not installed (apt-get install espeak-ng)")
    with connect(args) as client:
        if args.images:
            report = ImageEval(client, dataset, args).run()
        else:
            report = TextEval(client, dataset, args).run()
    report["timings_s"]["total"] = round(time.perf_counter() - started, 3)
    print(format_images_report(report) if args.images else format_text_report(report))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"report written to {args.output}")
    return 0


# Datasets


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


# Talking to the server


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.TransportError as error:
        raise EvalError(f"{method} {path}: {error}") from None
    if not response.is_success:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        raise EvalError(f"{method} {path} -> {response.status_code}: {message}")
    return response.json()


def collection_name(dataset_name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset_name).strip("-.")[:64] or "dataset"
    return f"eval-{slug}-{secrets.token_hex(3)}"


@contextmanager
def eval_collection(client: httpx.Client, dataset_name: str) -> Iterator[str]:
    """A fresh collection name; the collection is dropped afterwards, whatever happened."""
    name = collection_name(dataset_name)
    try:
        yield name
    finally:
        try:
            response = client.delete(f"/v1/collections/{name}")
            if not (response.is_success or response.status_code == 404):  # 404: nothing was ingested
                print(f"warning: could not drop the eval collection {name!r} ({response.status_code}); delete it with DELETE /v1/collections/{name}", file=sys.stderr)
        except Exception as error:  # the cleanup must not hide the original error
            print(f"warning: could not drop the eval collection {name!r}: {error}", file=sys.stderr)


def server_info(client: httpx.Client) -> dict[str, Any]:
    info = call(client, "GET", "/v1/info")
    if not info.get("ready") or "text" not in info.get("models", {}):
        raise EvalError(f"the server is not ready: {info.get('error') or 'models are still loading'}")
    return info


def progress(iterable: Any, **kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(iterable, file=sys.stderr, disable=None, **kwargs)


def unique(values: Any) -> list[Any]:
    return list(dict.fromkeys(values))


def seconds(timer: StageTimer) -> dict[str, float]:
    return {stage: round(ms / 1000, 3) for stage, ms in timer.ms.items()}


# Text


def document_text(title: str, text: str) -> str:
    """What is ingested, and what the bare encoder embeds: the title is part of the searchable text."""
    title, text = title.strip(), text.strip()
    return f"{title}\n\n{text}" if title and text else title or text


def truncate_utf8(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def score_rankings(rankings: dict[str, list[str]], qrels: dict[str, dict[str, float]]) -> dict[str, float]:
    ids = list(rankings)
    return {
        "ndcg@10": round(mean(ndcg_at_k(rankings[q], qrels[q], 10) for q in ids), 4),
        "recall@10": round(mean(recall_at_k(rankings[q], qrels[q], 10) for q in ids), 4),
        "recall@100": round(mean(recall_at_k(rankings[q], qrels[q], 100) for q in ids), 4),
        "mrr@10": round(mean(mrr_at_k(rankings[q], qrels[q], 10) for q in ids), 4),
    }


def ratios(numerator: dict[str, float], denominator: dict[str, float]) -> dict[str, float | None]:
    return {key: round(numerator[key] / denominator[key], 4) if denominator[key] else None for key in numerator}


class TextEval:
    def __init__(self, client: httpx.Client, dataset: BeirDataset, args: argparse.Namespace) -> None:
        self.client = client
        self.dataset = dataset
        self.args = args
        self.depth = max(100, args.top_k)  # documents ranked per query
        self.timer = StageTimer()
        self.warnings = list(dataset.warnings)
        self.chunks_per_document = 1.0
        self.rerank_skipped: str | None = None

    def run(self) -> dict[str, Any]:
        dataset, args = self.dataset, self.args
        judged = [q for q in dataset.queries if any(grade > 0 for grade in dataset.qrels.get(q, {}).values())]
        if not judged:
            raise EvalError(f"no query in queries.jsonl has a relevant document in qrels/{args.split}.tsv")
        query_ids = judged[: args.limit] if args.limit else judged
        documents = {doc: document_text(*fields) for doc, fields in dataset.corpus.items()}
        empty = [doc for doc, text in documents.items() if not text]
        if empty:
            self.warnings.append(f"{len(empty)} documents have neither title nor text and are skipped")
            documents = {doc: text for doc, text in documents.items() if text}
        if not documents:
            raise EvalError("the corpus has no documents with text")

        info = server_info(self.client)
        text_model = info["models"]["text"]
        if text_model.get("fallback_used"):
            self.warnings.append(f"the server uses the fallback text model {text_model['name']!r} instead of {text_model.get('requested')!r}: the figures describe the fallback")
        if args.spoken and not info["models"].get("audio", {}).get("available"):
            raise EvalError(f"--spoken needs a Whisper model on the server, and it has none: {info['models'].get('audio', {}).get('error')}")
        with self.timer.stage("load_bare_encoder"):
            encoder, owned = bare_encoder(self.client, text_model)

        try:
            with eval_collection(self.client, dataset.name) as collection:
                with self.timer.stage("ingest"):
                    chunks = self.ingest(collection, documents)
                self.chunks_per_document = chunks / len(documents)
                if chunks > len(documents):
                    self.warnings.append(
                        f"the pipeline stored {chunks} chunks for {len(documents)} documents: long documents are split, while "
                        f"the bare encoder embeds each whole (up to the model's {encoder.info.max_tokens} tokens)"
                    )
                with self.timer.stage("search"):
                    pipeline = {q: self.search_typed(collection, dataset.queries[q]) for q in progress(query_ids, unit="query", desc="search")}
                spoken_report: dict[str, Any] = {}
                if args.spoken:
                    spoken_report = self.search_spoken(collection, query_ids)
            bare = self.bare_rankings(encoder, documents, query_ids)
        finally:
            if owned and hasattr(encoder, "close"):
                encoder.close()

        qrels = {q: dataset.qrels[q] for q in query_ids}
        pipeline_scores = score_rankings(pipeline, qrels)
        bare_scores = score_rankings(bare, qrels)
        ratio = ratios(pipeline_scores, bare_scores)
        if self.rerank_skipped:
            self.warnings.append(f"--rerank was asked for but the server skipped it: {self.rerank_skipped}")
        self.warnings.extend(quality_warnings(pipeline_scores, bare_scores, reranked=args.rerank and not self.rerank_skipped))
        report: dict[str, Any] = {
            "dataset": dataset.name,
            "mode": "spoken" if args.spoken else "text",
            "queries": len(query_ids),
            "documents": len(documents),
            "chunks": chunks,
            "model": text_model["name"],
            "rerank": bool(args.rerank) and not self.rerank_skipped,  # whether the pipeline's results were reranked
            "top_k": self.depth,
            "pipeline": pipeline_scores,
            "bare": bare_scores,
            "ratio": ratio,
        }
        if args.spoken:
            spoken_scores = score_rankings(spoken_report.pop("rankings"), qrels)
            report.update(typed=pipeline_scores, spoken=spoken_scores, spoken_vs_typed=ratios(spoken_scores, pipeline_scores), **spoken_report)
        report["warnings"] = self.warnings
        report["timings_s"] = seconds(self.timer)
        return report

    def ingest(self, collection: str, documents: dict[str, str]) -> int:
        ids = list(documents)
        batches = [ids[start : start + DOCUMENT_BATCH] for start in range(0, len(ids), DOCUMENT_BATCH)]
        chunks = 0
        for batch in progress(batches, unit="batch", desc=f"ingest {len(ids)} documents"):
            body = {
                "collection": collection,
                "documents": [
                    {"id": doc, "title": truncate_utf8(self.dataset.corpus[doc][0].strip(), MAX_TITLE_BYTES) or None, "text": documents[doc]}
                    for doc in batch
                ],
            }
            chunks += call(self.client, "POST", "/v1/documents", json=body)["chunks"]
        return chunks

    def first_top_k(self) -> int:
        # Results are chunks: ask for enough of them that `depth` distinct documents come back.
        return min(MAX_TOP_K, max(self.depth, math.ceil(self.depth * self.chunks_per_document)))

    def ranked_documents(self, search: Callable[[int], dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
        """Documents in the order of their best chunk; asks again for more chunks if too few documents came."""
        top_k = self.first_top_k()
        while True:
            body = search(top_k)
            rerank = body.get("rerank") or {}
            if self.args.rerank and not rerank.get("applied"):
                self.rerank_skipped = rerank.get("skipped") or "not applied"
            documents = unique(result["doc_id"] for result in body["results"])
            if len(documents) >= self.depth or len(body["results"]) < top_k or top_k >= MAX_TOP_K:
                return documents[: self.depth], body
            top_k = min(MAX_TOP_K, top_k * 2)

    def search_typed(self, collection: str, text: str) -> list[str]:
        def search(top_k: int) -> dict[str, Any]:
            body = {"query": {"text": text}, "collection": collection, "modalities": ["text"], "top_k": top_k, "rerank": bool(self.args.rerank)}
            return call(self.client, "POST", "/v1/search", json=body)

        return self.ranked_documents(search)[0]

    def search_spoken(self, collection: str, query_ids: list[str]) -> dict[str, Any]:
        rankings: dict[str, list[str]] = {}
        transcripts = []
        edits = words = 0
        with tempfile.TemporaryDirectory(prefix="prism-eval-") as folder:
            for number, query_id in enumerate(progress(query_ids, unit="query", desc="spoken search")):
                text = self.dataset.queries[query_id]
                with self.timer.stage("synthesize"):
                    audio = synthesize(text, Path(folder) / f"{number}.wav")

                def search(top_k: int) -> dict[str, Any]:
                    form = {
                        "collection": collection,
                        "top_k": str(top_k),
                        "modalities": "text",
                        "language": SPOKEN_LANGUAGE,
                        "rerank": "true" if self.args.rerank else "false",
                    }
                    return call(self.client, "POST", "/v1/search/upload", data=form, files={"file": (f"query-{number}.wav", audio, "audio/wav")})

                with self.timer.stage("spoken_search"):
                    rankings[query_id], body = self.ranked_documents(search)
                heard = (body.get("transcript") or {}).get("text", "")
                query_edits, query_words = word_error_rate(text, heard)
                edits, words = edits + query_edits, words + query_words
                transcripts.append({"query": query_id, "text": text, "transcript": heard, "edits": query_edits, "words": query_words})
        return {
            "rankings": rankings,
            "wer": round(edits / words, 4) if words else 0.0,
            "wer_counts": {"edits": edits, "reference_words": words},
            "transcripts": transcripts,
        }

    def bare_rankings(self, encoder: Any, documents: dict[str, str], query_ids: list[str]) -> dict[str, list[str]]:
        """Exact search: every document's vector against every query's, by dot product of unit vectors."""
        from encoders import l2_normalize

        ids, texts = list(documents), list(documents.values())
        with self.timer.stage("bare_embed"):
            parts = [
                encoder.embed_documents(texts[start : start + EMBED_BATCH])
                for start in progress(range(0, len(texts), EMBED_BATCH), unit="batch", desc="bare encoder")
            ]
            matrix = l2_normalize(np.concatenate(parts))
            queries = l2_normalize(encoder.embed_queries([self.dataset.queries[q] for q in query_ids]))
        rankings: dict[str, list[str]] = {}
        depth = min(self.depth, len(ids))
        with self.timer.stage("bare_search"):
            for start in range(0, len(query_ids), 256):
                scores = queries[start : start + 256] @ matrix.T
                top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth] if depth < len(ids) else np.tile(np.arange(len(ids)), (len(scores), 1))
                for row, candidates in enumerate(top):
                    order = candidates[np.argsort(-scores[row, candidates], kind="stable")]
                    rankings[query_ids[start + row]] = [ids[i] for i in order]
        return rankings


def quality_warnings(pipeline: dict[str, float], bare: dict[str, float], reranked: bool) -> list[str]:
    warnings = []
    for key in ("ndcg@10", "recall@100"):
        if bare[key] > 0 and pipeline[key] < bare[key] * (1 - TOLERANCE):
            loss = 1 - pipeline[key] / bare[key]
            warnings.append(
                f"pipeline loses quality: {METRIC_LABELS[key]} is {loss:.1%} below the bare encoder ({pipeline[key]:.4f} vs {bare[key]:.4f}): "
                "chunking, pooling, normalisation or indexing"
                + (" (or the reranker, which reordered the pipeline's results)" if reranked else "")
            )
    return warnings


def bare_encoder(client: httpx.Client, server_model: dict[str, Any]) -> tuple[Any, bool]:
    """The text encoder the server uses, in this process: (encoder, whether we loaded it and must close it).

    In-process, that is the app's own encoder (no second copy of the model). For a remote server the local
    settings must name the same model: the baseline of another model would compare nothing.
    """
    app = getattr(client, "app", None)  # a TestClient around the in-process app
    library = getattr(getattr(getattr(app, "state", None), "prism", None), "library", None)
    if library is not None:
        return library.encoder, False
    settings = Settings()
    local = settings.text_model
    if local not in (server_model["name"], server_model.get("requested")):
        raise EvalError(
            f"the server embeds text with {server_model['name']!r} but the local settings name {local!r}: the bare-encoder "
            "baseline must use the server's model. Set PRISM_TEXT_MODEL (and PRISM_TEXT_BACKEND) to match the server"
        )
    from encoders import EncoderError, create_text_encoder

    try:
        encoder = create_text_encoder(settings.text_encoder_config())
    except (EncoderError, OSError, ValueError) as error:
        raise EvalError(f"cannot load the text model {local!r} for the bare-encoder baseline: {error}") from None
    if encoder.info.name != server_model["name"] or encoder.info.dimension != server_model["dimension"]:
        if hasattr(encoder, "close"):
            encoder.close()
        raise EvalError(
            f"the local text model is {encoder.info.name!r} ({encoder.info.dimension} dimensions) but the server's is "
            f"{server_model['name']!r} ({server_model['dimension']} dimensions): set PRISM_TEXT_MODEL and PRISM_TEXT_DIMENSIONS to match"
        )
    return encoder, True


def synthesize(text: str, path: Path) -> bytes:
    """The text spoken by espeak-ng, as WAV bytes (read from stdin: a query starting with '-' is not an option)."""
    try:
        subprocess.run(["espeak-ng", "-w", str(path), "--stdin"], input=text, text=True, check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as error:
        raise EvalError(f"espeak-ng failed on {text[:80]!r}: {error.stderr.strip()}") from None
    return path.read_bytes()


# Images


class ImageEval:
    def __init__(self, client: httpx.Client, dataset: CaptionDataset, args: argparse.Namespace) -> None:
        self.client = client
        self.dataset = dataset
        self.args = args
        self.timer = StageTimer()

    def run(self) -> dict[str, Any]:
        dataset, limit = self.dataset, self.args.limit
        info = server_info(self.client)
        image_model = info["models"].get("image", {})
        if not image_model.get("available"):
            raise EvalError(f"--images needs a CLIP model on the server, and it has none: {image_model.get('error') or 'no image model'}")
        images = unique(name for name, _ in dataset.captions)
        caption_ids: dict[str, list[str]] = {}  # image -> ids of its caption documents
        documents = []
        for name, caption in dataset.captions:
            ids = caption_ids.setdefault(name, [])
            doc_id = name if not ids else f"{name}#{len(ids) + 1}"
            ids.append(doc_id)
            documents.append({"id": doc_id, "text": caption, "metadata": {"image": name}})
        text_queries = dataset.captions[:limit] if limit else dataset.captions
        image_queries = images[:limit] if limit else images

        with eval_collection(self.client, dataset.name) as collection:
            with self.timer.stage("ingest_images"):
                self.ingest_images(collection, images)
            with self.timer.stage("ingest_captions"):
                for start in range(0, len(documents), DOCUMENT_BATCH):
                    call(self.client, "POST", "/v1/documents", json={"collection": collection, "documents": documents[start : start + DOCUMENT_BATCH]})
            with self.timer.stage("text_to_image"):
                text_to_image = [
                    self.search({"text": caption}, "image", collection, "source", name)
                    for name, caption in progress(text_queries, unit="query", desc="text to image")
                ]
            depth = min(MAX_TOP_K, max(IMAGE_KS))
            with self.timer.stage("image_to_text"):
                image_to_text = [
                    self.search({"image": base64.b64encode((dataset.folder / name).read_bytes()).decode()}, "text", collection, "doc_id", caption_ids[name], depth)
                    for name in progress(image_queries, unit="query", desc="image to text")
                ]
        return {
            "dataset": dataset.name,
            "mode": "images",
            "images": len(images),
            "captions": len(documents),
            "queries": {"text_to_image": len(text_to_image), "image_to_text": len(image_to_text)},
            "model": {"image": image_model.get("name"), "text": info["models"]["text"]["name"]},
            "text_to_image": {f"recall@{k}": round(mean(hits[k] for hits in text_to_image), 4) for k in IMAGE_KS},
            "image_to_text": {f"recall@{k}": round(mean(hits[k] for hits in image_to_text), 4) for k in IMAGE_KS},
            "warnings": dataset.warnings,
            "timings_s": seconds(self.timer),
        }

    def ingest_images(self, collection: str, images: list[str]) -> None:
        batch: list[tuple[str, tuple[str, bytes]]] = []
        size = 0
        for name in progress(images, unit="picture", desc="ingest pictures"):
            data = (self.dataset.folder / name).read_bytes()
            if batch and (len(batch) >= IMAGE_BATCH or size + len(data) > IMAGE_BATCH_BYTES):
                call(self.client, "POST", "/v1/images", data={"collection": collection}, files=batch)
                batch, size = [], 0
            batch.append(("files", (name, data)))
            size += len(data)
        if batch:
            call(self.client, "POST", "/v1/images", data={"collection": collection}, files=batch)

    def search(self, query: dict[str, str], modality: str, collection: str, key: str, wanted: str | list[str], top_k: int = max(IMAGE_KS)) -> dict[int, float]:
        """Hit at each k of IMAGE_KS: whether a wanted item (by `key` of the results) is among the first k."""
        body = {"query": query, "collection": collection, "modalities": [modality], "top_k": top_k}
        ranked = [result[key] for result in call(self.client, "POST", "/v1/search", json=body)["results"]]
        relevant = [wanted] if isinstance(wanted, str) else wanted
        return {k: hit_at_k(ranked, relevant, k) for k in IMAGE_KS}


# Printing


def _number(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.4f}"


def format_text_report(report: dict[str, Any]) -> str:
    spoken = "spoken" in report
    header = f"{'metric':<12}{'pipeline':>10}{'bare':>10}{'ratio':>10}" + (f"{'spoken':>10}{'spoken/typed':>14}" if spoken else "")
    lines = [
        f"{report['dataset']}: {report['queries']} queries, {report['documents']} documents ({report['chunks']} chunks), "
        f"model {report['model']}{', reranked' if report['rerank'] else ''}",
        "",
        header,
    ]
    for key in METRICS:
        line = f"{METRIC_LABELS[key]:<12}{_number(report['pipeline'][key], 10)}{_number(report['bare'][key], 10)}{_number(report['ratio'][key], 10)}"
        if spoken:
            line += f"{_number(report['spoken'][key], 10)}{_number(report['spoken_vs_typed'][key], 14)}"
        lines.append(line)
    if spoken:
        counts = report["wer_counts"]
        lines += ["", f"word error rate of the spoken queries' transcripts: {report['wer']:.1%} ({counts['edits']} edits in {counts['reference_words']} words)"]
    return "\n".join(lines + _footer(report))


def format_images_report(report: dict[str, Any]) -> str:
    queries = report["queries"]
    lines = [
        f"{report['dataset']}: {report['images']} pictures, {report['captions']} captions, image model {report['model']['image']}",
        "",
        f"{'direction':<16}{'queries':>8}" + "".join(f"{f'R@{k}':>9}" for k in IMAGE_KS),
    ]
    for direction, label in (("text_to_image", "text -> image"), ("image_to_text", "image -> text")):
        lines.append(f"{label:<16}{queries[direction]:>8}" + "".join(_number(report[direction][f"recall@{k}"], 9) for k in IMAGE_KS))
    return "\n".join(lines + _footer(report))


def _footer(report: dict[str, Any]) -> list[str]:
    lines = [""] + [f"warning: {warning}" for warning in report["warnings"]]
    lines.append("time: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in report["timings_s"].items()))
    return lines
