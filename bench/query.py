"""Query latency by stage (encode, search, total as the server reports it, and the client's wall time),
p50 and p95, at several collection sizes. `search` is the sum of the routes' searches (a text query
searches text chunks, captions and transcript windows), `encode` of the encoders' time.

    .venv/bin/python bench/query.py [--sizes 1000,10000] [--queries 200]
"""

from __future__ import annotations

import argparse

from common import TEXT_ONLY, query_latency, running_server, synthetic_documents, write_results

STAGES = ("encode", "search", "total", "wall")


def measure(size: int, queries: int) -> dict:
    documents = synthetic_documents(size, sentences=1, seed=size)  # one sentence: one chunk per document
    with running_server(TEXT_ONLY) as client:
        for start in range(0, size, 256):
            client.post("/v1/documents", json={"collection": "bench", "documents": documents[start : start + 256]}).raise_for_status()
        chunks = next(c["items"] for c in client.get("/v1/collections").json()["collections"] if c["name"] == "bench")
        latency = query_latency(client, queries, seed=1)
    return {"chunks": chunks, **{stage: latency[stage] for stage in STAGES}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated chunk counts")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    results = {int(size): measure(int(size), args.queries) for size in args.sizes.split(",")}
    lines = [
        f"Query latency in ms, {args.queries} queries, top_k 10, Milvus Lite (exact search)",
        "",
        "| chunks | encode p50 | encode p95 | search p50 | search p95 | total p50 | total p95 | wall p50 | wall p95 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, r in results.items():
        cells = " | ".join(f"{r[stage][q]:.1f}" for stage in STAGES for q in ("p50", "p95"))
        lines.append(f"| {r['chunks']} | {cells} |")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    write_results("query", {"args": vars(args), "results": results}, markdown)


if __name__ == "__main__":
    main()
