"""Query latency by stage (encode, search, total as the server reports it, and the client's wall time),
p50 and p95, at several collection sizes. `search` is the sum of the server's search.* stages (a text
query's routes text->text, text->caption and text->audio share one search, search.text-space),
`encode` of its encode.* stages; fusion, well under a millisecond, is left out.
`--cpu-threads default,1` measures each size once per PRISM_CPU_THREADS value (`default`: unset), in
one run, with each value's encode and total p50 as a ratio to the first's.

    .venv/bin/python bench/query.py [--sizes 1000,10000] [--queries 200] [--cpu-threads default,1]
"""

from __future__ import annotations

import argparse

from common import TEXT_ONLY, ingest_documents, query_latency, running_server, synthetic_documents, write_results

STAGES = ("encode", "search", "total", "wall")


def measure(size: int, queries: int, threads: str) -> dict:
    documents = synthetic_documents(size, sentences=1, seed=size)  # one sentence: one chunk per document
    env = {**TEXT_ONLY, "PRISM_CPU_THREADS": "" if threads == "default" else threads}
    with running_server(env) as client:
        ingest_documents(client, documents)
        chunks = next(c["items"] for c in client.get("/v1/collections").json()["collections"] if c["name"] == "bench")
        latency = query_latency(client, queries, seed=1)
    return {"threads": threads, "chunks": chunks, **{stage: latency[stage] for stage in STAGES}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated chunk counts")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--cpu-threads", default="default", help="comma-separated PRISM_CPU_THREADS values to compare; default leaves it unset")
    args = parser.parse_args()

    sizes, thread_values = [int(size) for size in args.sizes.split(",")], args.cpu_threads.split(",")
    results = [measure(size, args.queries, threads) for size in sizes for threads in thread_values]
    lines = [
        f"Query latency in ms, {args.queries} queries, top_k 10, Milvus Lite (exact search)",
        "",
        "| chunks | cpu threads | encode p50 | encode p95 | search p50 | search p95 | total p50 | total p95 | wall p50 | wall p95 | encode p50 ratio | total p50 ratio |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        first = next(f for f in results if f["chunks"] == r["chunks"])  # the first threads value at this size
        cells = " | ".join(f"{r[stage][q]:.1f}" for stage in STAGES for q in ("p50", "p95"))
        ratios = " | ".join(f"{r[stage]['p50'] / first[stage]['p50']:.2f}" for stage in ("encode", "total"))
        lines.append(f"| {r['chunks']} | {r['threads']} | {cells} | {ratios} |")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    write_results("query", {"args": vars(args), "results": results}, markdown)


if __name__ == "__main__":
    main()
