"""Text evaluation: the pipeline over the API against the bare encoder's exact search, typed and spoken."""

from __future__ import annotations

import argparse
import math
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from api.eval.client import DOCUMENT_BATCH, MAX_TOP_K, EvalError, call, eval_collection, progress, seconds, server_info, unique
from api.eval.datasets import BeirDataset
from api.settings import Settings
from prism_client import PrismClient
from retrieval.metrics import mean, mrr_at_k, ndcg_at_k, recall_at_k, word_error_rate
from retrieval.timing import StageTimer

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
METRIC_LABELS = {"ndcg@10": "nDCG@10", "recall@10": "Recall@10", "recall@100": "Recall@100", "mrr@10": "MRR@10"}
TOLERANCE = 0.02  # the pipeline may trail the bare encoder by this much (relative) before the report warns
EMBED_BATCH = 256  # texts per call to the bare encoder (for progress; backends batch on their own)
SPOKEN_LANGUAGE = "en"  # espeak-ng's default voice speaks English
MAX_TITLE_BYTES = 1024


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
    def __init__(self, client: PrismClient, dataset: BeirDataset, args: argparse.Namespace) -> None:
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
            body = [
                {"id": doc, "title": truncate_utf8(self.dataset.corpus[doc][0].strip(), MAX_TITLE_BYTES) or None, "text": documents[doc]}
                for doc in batch
            ]
            chunks += call(self.client.add_documents, body, collection=collection)["chunks"]
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
            return dict(call(self.client.search, text, collection=collection, modalities=["text"], top_k=top_k, rerank=bool(self.args.rerank)))

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
                    clip = (f"query-{number}.wav", audio)
                    options = dict(collection=collection, top_k=top_k, modalities=["text"], language=SPOKEN_LANGUAGE, rerank=bool(self.args.rerank))
                    return dict(call(self.client.search_file, clip, **options))

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


def bare_encoder(client: PrismClient, server_model: dict[str, Any]) -> tuple[Any, bool]:
    """The text encoder the server uses, in this process: (encoder, whether we loaded it and must close it).

    In-process, that is the app's own encoder (no second copy of the model). For a remote server the local
    settings must name the same model: the baseline of another model would compare nothing.
    """
    app = getattr(client.http, "app", None)  # a TestClient around the in-process app
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
