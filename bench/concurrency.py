"""Concurrency: throughput (queries/s) and latency with 1, 8 and 32 clients at once, for text queries and for
picture queries with CLIP's dynamic batching on (PRISM_IMAGE_BATCH_SIZE=32) and off (=1).

    .venv/bin/python bench/concurrency.py [--clients 1,8,32] [--text-queries 256] [--image-queries 64]

Every request is distinct (no cache hits). Text: one-sentence documents ingested over the API, `POST
/v1/search`. Pictures: a few pictures and documents ingested, then `POST /v1/search/upload` with a
640x480 JPEG (routes image->image, image->text, image->audio: one CLIP forward pass per query, through
the micro-batcher). "items per batch" is prism_batcher_items_total / prism_batcher_batches_total
{batcher="image-encoder"} from /metrics over that step. The CLIP model is PRISM_IMAGE_MODEL /
PRISM_IMAGE_PRETRAINED when set, else ViT-B-32 with random weights (see common.clip_settings).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from common import TEXT_ONLY, WORDS, batcher_counts, ingest_documents, clip_settings, percentile, photos, running_server, synthetic_documents, write_results

DOCUMENTS = 1000
PICTURES = 32


def load(send: Callable[[int], None], requests: int, clients: int) -> dict:
    """`requests` calls of send(index) from `clients` threads; throughput and latency percentiles."""
    latencies: list[float] = []

    def timed(index: int) -> None:
        started = time.perf_counter()
        send(index)
        latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(timed, range(requests)))
    seconds = time.perf_counter() - started
    return {"clients": clients, "requests": requests, "qps": requests / seconds, "p50": percentile(latencies, 50), "p95": percentile(latencies, 95)}


def text_queries(levels: list[int], requests: int) -> list[dict]:
    results = []
    with running_server(TEXT_ONLY) as client:
        ingest_documents(client, synthetic_documents(DOCUMENTS, sentences=1))
        for clients in levels:

            def send(index: int) -> None:
                text = f"{WORDS[index % len(WORDS)]} near a {WORDS[(index * 7) % len(WORDS)]} ({clients}.{index})"
                client.post("/v1/search", json={"query": {"text": text}, "collection": "bench", "top_k": 10}).raise_for_status()

            send(-1)  # warm-up
            results.append({"kind": "text", **load(send, max(requests, clients), clients)})
            print(results[-1], flush=True)
    return results


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
            result = load(send, requests, clients)
            batches_after, items_after = batcher_counts(client)
            result["items_per_batch"] = (items_after - items) / max(batches_after - batches, 1)
            results.append({"kind": f"image, batch size {batch_size}", **result})
            print(results[-1], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--text-queries", type=int, default=256, help="requests per level")
    parser.add_argument("--image-queries", type=int, default=64, help="requests per level")
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",")]

    results = text_queries(levels, args.text_queries)
    with tempfile.TemporaryDirectory(prefix="prism-bench-clip-") as folder:
        clip = clip_settings(Path(folder))
        for batch_size in (32, 1):
            results += image_queries(levels, args.image_queries, clip, batch_size)

    lines = [
        f"Concurrent queries, {args.text_queries} text / {args.image_queries} picture requests per level, "
        f"CLIP {clip['PRISM_IMAGE_MODEL']}, latency in ms",
        "",
        "| queries | clients | queries/s | p50 | p95 | ratio to 1 client (queries/s) | items per CLIP batch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        single = next(o for o in results if o["kind"] == r["kind"] and o["clients"] == levels[0])
        per_batch = f"{r['items_per_batch']:.1f}" if "items_per_batch" in r else ""
        lines.append(f"| {r['kind']} | {r['clients']} | {r['qps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['qps'] / single['qps']:.2f} | {per_batch} |")
    on = {r["clients"]: r["qps"] for r in results if r["kind"] == "image, batch size 32"}
    off = {r["clients"]: r["qps"] for r in results if r["kind"] == "image, batch size 1"}
    gains = {clients: on[clients] / off[clients] for clients in levels}
    lines += ["", "Dynamic batching (batch size 32 / batch size 1, queries/s): " + ", ".join(f"{c} clients x{g:.2f}" for c, g in gains.items())]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    write_results("concurrency", {"args": vars(args), "results": results, "batching_gain": gains}, markdown)


if __name__ == "__main__":
    main()
