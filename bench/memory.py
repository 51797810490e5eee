"""Server memory: resident memory (VmRSS) of `prism serve` idle after start, and after storing items, so MiB
per 100k stored items, on Milvus Lite, with Prism's in-memory index and without it.

    .venv/bin/python bench/memory.py [--items 100000]

The server runs the text model only (no Whisper, CLIP or reranker). "idle" is measured on an empty data
directory after one document and 20 queries (models and store loaded); then the directory is filled with --items synthetic
items (random unit vectors of the text model's dimension and short texts, stored directly with
MilvusStore, as bench/scale.py does), the server started on it again and measured after 20 queries, once
with the in-memory index (the default) and once with PRISM_LITE_INDEX_MAX_ITEMS=0; the difference is
what the index costs, next to what the index reports of its own arrays in /v1/info. Milvus Lite runs
inside the server process, so its vectors and index count here; on a Milvus server they live in the
Milvus process instead, and the Prism process stays near its idle size.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from common import TEXT_ONLY, fill_text_space, rss_mb, running_server, text_model, write_results


def measured_rss(data_dir: Path, collection: str, queries: int, env: dict[str, str] | None = None) -> dict:
    with running_server({**TEXT_ONLY, **(env or {})}, data_dir=data_dir) as client:
        start_rss = rss_mb(client.pid)
        if collection == "warmup":  # one document, so that ingest and search have run once
            client.post("/v1/documents", json={"collection": "warmup", "documents": [{"text": "warm up the model"}]}).raise_for_status()
        for index in range(queries):
            query = {"query": {"text": f"a query about memory ({index})"}, "collection": collection}
            client.post("/v1/search", json=query).raise_for_status()
        time.sleep(1)
        search = client.get("/v1/info").json()["store"].get("search_text", "")
        return {"after_start_mb": start_rss, "after_queries_mb": rss_mb(client.pid), "search_text": search}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()
    model = text_model()
    with tempfile.TemporaryDirectory(prefix="prism-bench-memory-") as folder:
        data_dir = Path(folder)
        idle = measured_rss(data_dir, "warmup", 20)
        fill = fill_text_space(str(data_dir / "milvus.db"), "bench", 0, args.items, model)
        full = measured_rss(data_dir, "bench", 20)
        without = measured_rss(data_dir, "bench", 20, {"PRISM_LITE_INDEX_MAX_ITEMS": "0"})
        on_disk_mb = sum(p.stat().st_size for p in (data_dir / "milvus.db").rglob("*") if p.is_file()) / 2**20
    scale = 100_000 / args.items
    per_100k = (full["after_queries_mb"] - idle["after_queries_mb"]) * scale
    lite_per_100k = (without["after_queries_mb"] - idle["after_queries_mb"]) * scale
    index_per_100k = (full["after_queries_mb"] - without["after_queries_mb"]) * scale
    reported = re.search(r"([0-9.]+) MiB", full["search_text"])
    reported_per_100k = float(reported.group(1)) * scale if reported else float("nan")
    raw_mb = args.items * model[1] * 4 / 2**20
    lines = [
        f"Server memory (VmRSS), Milvus Lite, model {model[0]} ({model[1]}-d), MiB",
        "",
        "| state | after start | after queries |",
        "|---|---:|---:|",
        f"| idle (one document) | {idle['after_start_mb']:.0f} | {idle['after_queries_mb']:.0f} |",
        f"| {args.items} items stored, in-memory index | {full['after_start_mb']:.0f} | {full['after_queries_mb']:.0f} |",
        f"| {args.items} items stored, no index (PRISM_LITE_INDEX_MAX_ITEMS=0) | {without['after_start_mb']:.0f} | {without['after_queries_mb']:.0f} |",
        "",
        f"Per 100k stored items: {per_100k:.0f} MiB in all, {lite_per_100k:.0f} MiB of it Milvus Lite's, {index_per_100k:.0f} MiB the index's "
        f"(its arrays, as /v1/info reports them: {reported_per_100k:.0f} MiB; the raw float32 vectors alone: {raw_mb * scale:.0f} MiB); "
        f"Milvus Lite directory on disk: {on_disk_mb:.0f} MiB; insert {fill['rows'] / fill['insert_s']:.0f} rows/s.",
    ]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    write_results(
        "memory",
        {"args": vars(args), "model": model, "idle": idle, "stored": full, "stored_without_index": without, "per_100k_mb": per_100k,
         "lite_per_100k_mb": lite_per_100k, "index_per_100k_mb": index_per_100k, "index_reported_per_100k_mb": reported_per_100k,
         "raw_vectors_mb": raw_mb, "on_disk_mb": on_disk_mb, "insert": fill},
        markdown,
    )  # fmt: skip


if __name__ == "__main__":
    main()
