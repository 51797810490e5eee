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

Modules: `datasets` reads the folders, `client` talks to the server, `text` and `images` run the two
kinds of evaluation, `report` prints them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Callable, ContextManager

from api.eval.client import MAX_TOP_K, EvalError
from api.eval.datasets import load_beir, load_captions
from prism_client import PrismClient

# The evaluations themselves (numpy, the metrics, the local settings) are imported when one runs, so
# that building the `prism` command's parser stays quick.

__all__ = ["EvalError", "add_arguments", "evaluate"]

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

--answers, a BEIR-format folder, optionally with
  answers.jsonl     {"_id": query-id, "answer": "reference answer"} per line
Every question judged in the qrels is asked through POST /v1/answer (--top-k sources, default 5); one
judged with no relevant document (all scores 0) should be answered "nothing found". Reports citation
precision (cited documents that are relevant), citation recall@k and context recall@k, the share of
questions without a relevant source answered "nothing found" (and of answerable ones answered so), and
token F1 against the reference answers; with the backend and model that answered.
"""


Connect = Callable[[argparse.Namespace], ContextManager[PrismClient]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("dataset", type=Path, metavar="DATASET_DIR", help="A BEIR-format folder, or with --images a folder of captioned pictures.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--spoken", action="store_true", help="Also search every query as synthetic speech (espeak-ng) and report the word error rate.")
    mode.add_argument("--images", action="store_true", help="DATASET_DIR is a folder of pictures with captions.tsv or captions.jsonl.")
    mode.add_argument("--answers", action="store_true", help="Ask every judged question through /v1/answer and measure the citations and answers.")
    parser.add_argument("--rerank", action="store_true", help="Rerank the pipeline's results (the bare encoder is never reranked).")
    parser.add_argument("--top-k", type=int, help="Documents ranked per query (at least 100, for Recall@100; default 100); with --answers, sources per question (default 5, at most 50).")
    parser.add_argument("--min-score", type=float, help="--answers: the relevance threshold (default: the server's PRISM_ANSWER_MIN_SCORE).")
    parser.add_argument("--max-tokens", type=int, help="--answers: the longest answer in tokens (default: the server's PRISM_ANSWER_MAX_TOKENS).")
    parser.add_argument("--limit", type=int, metavar="N", help="Evaluate only the first N queries (with --images: the first N captions and N pictures); the whole corpus is still ingested.")
    parser.add_argument("--split", default="test", help="Which qrels/SPLIT.tsv to read (default test).")
    parser.add_argument("--output", type=Path, metavar="REPORT.json", help="Also write the report as JSON to this file.")


def evaluate(args: argparse.Namespace, connect: Connect) -> int:
    args.top_k = args.top_k or (5 if args.answers else 100)
    if args.limit is not None and args.limit < 1:
        raise EvalError("--limit must be at least 1")
    if not 1 <= args.top_k <= MAX_TOP_K:
        raise EvalError(f"--top-k must be between 1 and {MAX_TOP_K}")
    if args.answers and not 1 <= args.top_k <= 50:
        raise EvalError("--top-k must be between 1 and 50 with --answers")
    if args.images and args.rerank:
        raise EvalError("--rerank reorders text queries' results; it does not apply to --images")
    if not args.dataset.is_dir():
        raise EvalError(f"{args.dataset} is not a folder")
    started = time.perf_counter()
    # Read the dataset before anything is loaded: a malformed file should fail in a second, not after the models.
    dataset = load_captions(args.dataset) if args.images else load_beir(args.dataset, args.split)
    if args.spoken and shutil.which("espeak-ng") is None:
        raise EvalError("--spoken synthesizes the queries with espeak-ng, which is not installed (apt-get install espeak-ng)")
    from api.eval.answers import AnswerEval, format_answers_report
    from api.eval.images import ImageEval
    from api.eval.report import format_images_report, format_text_report
    from api.eval.text import TextEval

    with connect(args) as client:
        if args.images:
            report = ImageEval(client, dataset, args).run()
        elif args.answers:
            report = AnswerEval(client, dataset, args).run()
        else:
            report = TextEval(client, dataset, args).run()
    report["timings_s"]["total"] = round(time.perf_counter() - started, 3)
    print(format_images_report(report) if args.images else format_answers_report(report) if args.answers else format_text_report(report))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"report written to {args.output}")
    return 0
