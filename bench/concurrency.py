"""Concurrency: throughput (queries/s), latency and the server's CPU per query with 1, 8 and 32 clients at
once, for text queries and for picture queries with CLIP's dynamic batching on (PRISM_IMAGE_BATCH_SIZE=32)
and off (=1); and text search latency while a bulk ingest runs.

    .venv/bin/python bench/concurrency.py [--clients 1,8,32] [--text-queries 256] [--image-queries 64]
        [--text-env ''] [--text-env PRISM_CPU_THREADS=2] [--no-images] [--ingest-docs 1000]

Every request is distinct (no cache hits). Text: one-sentence documents ingested over the API, `POST
/v1/search`, server with the text model only, once per --text-env (comma-separated PRISM_* settings;
'' is the defaults). "CPU ms per query" is the server process's CPU time (user + system, all threads,
from /proc) over the step, divided by its queries; "CPU / wall" is that time over the step's wall time:
1.0 is one core busy, 2.0 both. "queries per pass" is prism_batcher_items_total /
prism_batcher_batches_total{batcher="text-queries"}. Pictures: a few pictures and documents ingested,
then `POST /v1/search/upload` with a 640x480 JPEG (routes image->image, image->text, image->audio: one
CLIP forward pass per query, through the micro-batcher); "items per batch" likewise for
batcher="image-encoder". The CLIP model is PRISM_IMAGE_MODEL / PRISM_IMAGE_PRETRAINED when set, else
ViT-B-32 with random weights (see common.clip_settings).

Search during ingest (--ingest-docs N, 0 to skip): one client searches (idle, --text-queries queries),
then keeps searching while another client ingests N long documents (about 450 tokens each, 10 per
request); latency p50/p95/p99 of both phases and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from common import (
    TEXT_ONLY,
    WORDS,
    batcher_counts,
    clip_settings,
    cpu_seconds,
    ingest_documents,
    percentile,
    photos,
    running_server,
    synthetic_documents,
    write_results,
)

DOCUMENTS = 1000
PICTURES = 32
LONG_SENTENCES = 25  # about 450 MiniLM tokens per document
INGEST_BATCH = 10


def load(send: Callable[[int], None], requests: int, clients: int, pid: int) -> dict:
    """`requests` calls of send(index) from `clients` threads: throughput, latency percentiles, and the
    server's CPU time per request."""
    latencies: list[float] = []

    def timed(index: int) -> None:
        started = time.perf_counter()
        send(index)
        latencies.append((time.perf_counter() - started) * 1000)

    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(timed, range(requests)))
    seconds, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
    return {
        "clients": clients,
        "requests": requests,
        "qps": requests / seconds,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "cpu_ms_per_query": cpu * 1000 / requests,
        "cpu_per_wall": cpu / seconds,
    }


def search_text(client, tag: str) -> Callable[[int], None]:
    def send(index: int) -> None:
        text = f"{WORDS[index % len(WORDS)]} near a {WORDS[(index * 7) % len(WORDS)]} ({tag}.{index})"
        client.post("/v1/search", json={"query": {"text": text}, "collection": "bench", "top_k": 10}).raise_for_status()

    return send


def text_queries(levels: list[int], requests: int, settings: str) -> list[dict]:
    env = {**TEXT_ONLY, **parse_env(settings)}
    results = []
    with running_server(env) as client:
        ingest_documents(client, synthetic_documents(DOCUMENTS, sentences=1))
        for clients in levels:
            send = search_text(client, f"{settings}.{clients}")
            for index in range(5):
                send(-1 - index)  # warm-up
            batches, items = batcher_counts(client, "text-queries")
            result = load(send, max(requests, clients), clients, client.pid)
            batches_after, items_after = batcher_counts(client, "text-queries")
            result["items_per_batch"] = (items_after - items) / max(batches_after - batches, 1)
            results.append({"kind": "text", "settings": settings or "defaults", **result})
            print(results[-1], flush=True)
    return results


def parse_env(settings: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in settings.split(",") if pair)


def image_queries(levels: list[int], requests: int, clip: dict[str, str], batch_size: int) -> list[dict]:
    env = {**TEXT_ONLY, **clip, "PRISM_IMAGE_BATCH_SIZE": str(batch_size)}
    queries = photos(requests * len(levels) + 1, seed=7)
    results = []
    with running_server(env) as client:
        files = [("files", (f"{i}.jpg", data)) for i, data in enumerate(photos(PICTURES, seed=3))]
        client.post("/v1/images", data={"collection": "bench"}, files=files).raise_for_status()
        ingest_documents(client, synthetic_documents(200, sentences=1))
        for level, clients in enumerate(levels):

            def send(index: int) -> None:
                data = queries[level * requests + index]
                client.post("/v1/search/upload", data={"collection": "bench"}, files={"file": ("q.jpg", data)}).raise_for_status()

            client.post("/v1/search/upload", data={"collection": "bench"}, files={"file": ("q.jpg", queries[-1])}).raise_for_status()  # warm-up
            batches, items = batcher_counts(client)
            result = load(send, requests, clients, client.pid)
            batches_after, items_after = batcher_counts(client)
            result["items_per_batch"] = (items_after - items) / max(batches_after - batches, 1)
            results.append({"kind": f"image, batch size {batch_size}", "settings": "", **result})
            print(results[-1], flush=True)
    return results


def search_during_ingest(documents: int, queries: int) -> dict:
    """One client's search latency, idle and while another client ingests `documents` long documents."""
    with running_server(TEXT_ONLY) as client:
        ingest_documents(client, synthetic_documents(DOCUMENTS, sentences=1))
        send = search_text(client, "ingest")
        for index in range(5):
            send(-1 - index)
        phases: dict[str, list[float]] = {"idle": [], "during ingest": []}
        for index in range(queries):
            started = time.perf_counter()
            send(index)
            phases["idle"].append((time.perf_counter() - started) * 1000)
        long_documents = synthetic_documents(documents, sentences=LONG_SENTENCES, seed=5)
        ingest_s: list[float] = []

        def ingest() -> None:
            started = time.perf_counter()
            ingest_documents(client, long_documents, collection="bulk", batch=INGEST_BATCH)
            ingest_s.append(time.perf_counter() - started)

        worker = threading.Thread(target=ingest)
        worker.start()
        index = queries
        while worker.is_alive():
            started = time.perf_counter()
            send(index)
            phases["during ingest"].append((time.perf_counter() - started) * 1000)
            index += 1
        worker.join()
    summary = {phase: {f"p{q}": percentile(values, q) for q in (50, 95, 99)} | {"queries": len(values)} for phase, values in phases.items()}
    return {"documents": documents, "ingest_s": ingest_s[0], **summary, "p99_ratio": summary["during ingest"]["p99"] / summary["idle"]["p99"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--text-queries", type=int, default=256, help="requests per level")
    parser.add_argument("--image-queries", type=int, default=64, help="requests per level")
    parser.add_argument("--text-env", action="append", help="PRISM_* settings for a text run, e.g. PRISM_CPU_THREADS=2 (repeat to compare; '' is the defaults)")
    parser.add_argument("--no-images", action="store_true", help="text queries only")
    parser.add_argument("--ingest-docs", type=int, default=1000, help="long documents ingested while one client searches (0: skip)")
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",")]

    results = [r for settings in (args.text_env or [""]) for r in text_queries(levels, args.text_queries, settings)]
    clip = {}
    if not args.no_images:
        with tempfile.TemporaryDirectory(prefix="prism-bench-clip-") as folder:
            clip = clip_settings(Path(folder))
            for batch_size in (32, 1):
                results += image_queries(levels, args.image_queries, clip, batch_size)
    during = search_during_ingest(args.ingest_docs, args.text_queries) if args.ingest_docs else None
    markdown = report(args, levels, results, clip, during)
    print(markdown)
    gains = batching_gains(levels, results)
    write_results("concurrency", {"args": vars(args), "results": results, "batching_gain": gains, "search_during_ingest": during}, markdown)


def batching_gains(levels: list[int], results: list[dict]) -> dict[int, float]:
    on = {r["clients"]: r["qps"] for r in results if r["kind"] == "image, batch size 32"}
    off = {r["clients"]: r["qps"] for r in results if r["kind"] == "image, batch size 1"}
    return {clients: on[clients] / off[clients] for clients in levels if clients in on and clients in off}


def report(args, levels: list[int], results: list[dict], clip: dict, during: dict | None) -> str:
    lines = [
        f"Concurrent queries, {args.text_queries} text / {args.image_queries} picture requests per level"
        + (f", CLIP {clip['PRISM_IMAGE_MODEL']}" if clip else "")
        + ", latency in ms",
        "",
        "| queries | settings | clients | queries/s | p50 | p95 | queries/s vs 1 client | CPU ms per query | CPU / wall | items per batch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        single = next(o for o in results if o["kind"] == r["kind"] and o["settings"] == r["settings"] and o["clients"] == levels[0])
        lines.append(
            f"| {r['kind']} | {r['settings']} | {r['clients']} | {r['qps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['qps'] / single['qps']:.2f} | "
            f"{r['cpu_ms_per_query']:.1f} | {r['cpu_per_wall']:.2f} | {r['items_per_batch']:.1f} |"
        )
    gains = batching_gains(levels, results)
    if gains:
        lines += ["", "Dynamic batching (batch size 32 / batch size 1, queries/s): " + ", ".join(f"{c} clients x{g:.2f}" for c, g in gains.items())]
    if during:
        lines += [
            "",
            f"Search latency at one client, idle and while another client ingests {during['documents']} documents of about 450 tokens "
            f"({INGEST_BATCH} per request; the ingest took {during['ingest_s']:.0f} s), ms",
            "",
            "| phase | queries | p50 | p95 | p99 |",
            "|---|---:|---:|---:|---:|",
            *[f"| {phase} | {during[phase]['queries']} | {during[phase]['p50']:.0f} | {during[phase]['p95']:.0f} | {during[phase]['p99']:.0f} |" for phase in ("idle", "during ingest")],
            "",
            f"p99 during ingest / idle p99: {during['p99_ratio']:.2f}",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
