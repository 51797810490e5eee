"""Query latency at scale: p50/p95/p99 by stage at 10k, 100k and 1M stored items, on Milvus Lite and on a
Milvus server, plus the insert rate of the synthetic rows.

    .venv/bin/python bench/scale.py [--sizes 10000,100000,1000000] [--stores lite,server] [--queries 300]

The store is filled directly with MilvusStore (random unit vectors of the server's text model's dimension,
short texts, in batches of 5000), in the text space and under the model name the server will use; then a
real `prism serve` (text model only) opens that data and answers distinct text queries over HTTP. Sizes
grow one store: the rows of 10k stay when it grows to 100k. Stages are the server's `timings_ms`:
`encode` (encode.*), `search` (search.*, summed: the text encoder's routes text->text, text->caption
and text->audio share one search, search.text-space), `fusion`, `total`; `wall` is the client's time around the request.
Milvus Lite searches exactly (FLAT); the server uses HNSW. The server rows are flushed and indexed
before the queries. If matplotlib is importable, also writes docs/scale-latency.png.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from common import QUANTILES, ROOT, STAGES, TEXT_ONLY, fill_text_space, milvus_server, query_latency, running_server, text_model, write_results

def run_store(store: str, sizes: list[int], queries: int, model: tuple[str, int]) -> list[dict]:
    results = []
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="prism-bench-scale-")))
        if store == "lite":
            uri, env = str(data_dir / "milvus.db"), {}
        else:
            uri = stack.enter_context(milvus_server())
            env = {"PRISM_MILVUS_URI": uri}
        stored = 0
        for size in sizes:
            fill = fill_text_space(uri, "bench", stored, size, model)
            stored = size
            print(f"{store}: {size} rows stored ({fill['rows'] / fill['insert_s']:.0f} rows/s)", flush=True)
            started = time.perf_counter()
            with running_server({**TEXT_ONLY, **env}, data_dir=data_dir) as client:
                start_s = time.perf_counter() - started
                latency = query_latency(client, queries, seed=size)
            results.append({"store": store, "items": size, "start_s": start_s, "insert": fill, "insert_rows_per_s": fill["rows"] / fill["insert_s"], **latency})
    return results


def plot(results: list[dict]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    figure, axes = plt.subplots(figsize=(6, 4))
    for store in dict.fromkeys(r["store"] for r in results):
        rows = [r for r in results if r["store"] == store]
        for q, style in (("p50", "-o"), ("p95", "--o")):
            axes.plot([r["items"] for r in rows], [r["total"][q] for r in rows], style, label=f"{store} total {q}")
    axes.set(xscale="log", yscale="log", xlabel="stored items", ylabel="ms", title="Query latency against collection size")
    axes.legend()
    out = ROOT / "docs" / "scale-latency.png"
    figure.savefig(out, dpi=100, bbox_inches="tight")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated item counts")
    parser.add_argument("--stores", default="lite,server", help="lite, server or both")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    model = text_model()

    results = [r for store in args.stores.split(",") for r in run_store(store, sizes, args.queries, model)]
    lines = [
        f"Query latency in ms, {args.queries} distinct text queries, top_k 10, model {model[0]} ({model[1]}-d), synthetic vectors",
        "",
        "| store | items | insert rows/s | " + " | ".join(f"{s} p{q}" for s in STAGES for q in QUANTILES) + " |",
        "|---|---:|---:|" + "---:|" * (len(STAGES) * len(QUANTILES)),
    ]
    for r in results:
        cells = " | ".join(f"{r[stage][f'p{q}']:.1f}" for stage in STAGES for q in QUANTILES)
        lines.append(f"| {r['store']} | {r['items']} | {r['insert_rows_per_s']:.0f} | {cells} |")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    written = plot(results)
    write_results("scale", {"args": vars(args), "model": model, "results": results, "plot": str(written) if written else None}, markdown)


if __name__ == "__main__":
    main()
