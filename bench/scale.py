"""Query latency at scale: p50/p95/p99 by stage at 10k, 100k and 1M stored items, on Milvus Lite with
Prism's in-memory index (the default), on Milvus Lite searching itself, and on a Milvus server, next to
the numpy exact floor and the insert rate of the synthetic rows.

    .venv/bin/python bench/scale.py [--sizes 10000,100000,1000000] [--stores lite,lite-scan,server] [--queries 300]

The store is filled directly with MilvusStore (random unit vectors of the server's text model's dimension,
short texts, in batches of 5000), in the text space and under the model name the server will use; then a
real `prism serve` (text model only) opens that data and answers distinct text queries over HTTP. Sizes
grow one store: the rows of 10k stay when it grows to 100k. Stages are the server's `timings_ms`:
`encode` (encode.*), `search` (search.*, summed: the text encoder's routes text->text, text->caption
and text->audio share one search, search.text-space), `fusion`, `total`; `wall` is the client's time around the request.
Stores: `lite` is Milvus Lite with the in-memory index (exact; retrieval/lite_index.py), `lite-scan`
the same data with PRISM_LITE_INDEX_MAX_ITEMS=0 (Milvus Lite's own exact FLAT search), `server` a Milvus
server with HNSW. `floor` is numpy's exact top-10 over the same unit vectors in this process, one after each
query (so under the same load); `search / floor` compares the search stage with it.
The server rows are flushed and indexed before the queries; if Milvus is still re-indexing merged
segments after --index-timeout seconds, the queries run anyway and the results say so (`insert.index.settled`).

Each run writes its own rows to bench/results/scale.json and .md, and also records them in
bench/results/scale-history.json (a row per store and size, the newest run's row replacing an older one,
each with the command that measured it), because 1M items is usually measured on its own. The plot,
docs/scale-latency.png (search p50 per store, and the numpy floor, against items, log-log), is drawn
from that history when matplotlib is installed (`pip install -e '.[bench]'`); `--plot-only` redraws it
without measuring.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from common import QUANTILES, RESULTS, ROOT, STAGES, TEXT_ONLY, fill_text_space, index_state, milvus_server, numpy_floor, query_latency, running_server, text_model, write_results

STORE_ENV = {"lite": {}, "lite-scan": {"PRISM_LITE_INDEX_MAX_ITEMS": "0"}}


def run_store(store: str, sizes: list[int], queries: int, model: tuple[str, int], index_timeout: float) -> list[dict]:
    results = []
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="prism-bench-scale-")))
        if store in STORE_ENV:
            uri, env = str(data_dir / "milvus.db"), STORE_ENV[store]
        else:
            uri = stack.enter_context(milvus_server())
            env = {"PRISM_MILVUS_URI": uri}
        stored, vectors = 0, []
        for size in sizes:
            fill = fill_text_space(uri, "bench", stored, size, model, index_timeout=index_timeout, vectors_out=vectors)
            stored = size
            print(f"{store}: {size} rows stored ({fill['rows'] / fill['insert_s']:.0f} rows/s), ready after {fill['ready_s']:.0f} s", flush=True)
            if fill["index"] and not fill["index"]["settled"]:
                print(f"{store}: Milvus was still indexing after {index_timeout:.0f} s ({fill['index']}); measuring anyway", flush=True)
            vectors = [np.concatenate(vectors)]
            started = time.perf_counter()
            with running_server({**TEXT_ONLY, **env}, data_dir=data_dir) as client:
                start_s = time.perf_counter() - started
                latency = query_latency(client, queries, seed=size, floor=numpy_floor(vectors[0], seed=size))
                search_info = client.get("/v1/info").json()["store"].get("search_text", "")
            if store == "server":  # was Milvus still indexing while the queries ran?
                fill["index_after_queries"] = server_index_state(uri)
            results.append({"store": store, "items": size, "start_s": start_s, "insert": fill, "insert_rows_per_s": fill["rows"] / fill["insert_s"], "search_info": search_info, **latency})
            print(f"{store} {size}: search p50 {latency['search']['p50']:.1f} ms, floor p50 {latency['floor']['p50']:.1f} ms ({search_info})", flush=True)
    return results


def server_index_state(uri: str) -> dict[str, int]:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri, dedicated=True)
    try:
        return index_state(client)
    finally:
        client.close()


HISTORY = RESULTS / "scale-history.json"
STORE_NAMES = {"lite": "Milvus Lite + Prism's in-memory index (exact)", "lite-scan": "Milvus Lite searching itself (exact)", "server": "Milvus server (HNSW)"}
COLORS = {"lite": "tab:green", "lite-scan": "tab:blue", "server": "tab:orange"}


def record(results: list[dict], command: str) -> list[dict]:
    """Add this run's rows to the history (replacing older rows of the same store and size) and return
    the whole history, ordered by store and size."""
    history = {(r["store"], r["items"]): r for r in (json.loads(HISTORY.read_text()) if HISTORY.exists() else [])}
    for r in results:
        history[(r["store"], r["items"])] = {**r, "command": command, "measured_at": time.strftime("%Y-%m-%d %H:%M")}
    rows = [history[key] for key in sorted(history)]
    HISTORY.parent.mkdir(parents=True, exist_ok=True)
    HISTORY.write_text(json.dumps(rows, indent=2))
    return rows


def plot(results: list[dict]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    # Search is the stage that grows with the collection; total adds encoding the query, which does not.
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for store in sorted(dict.fromkeys(r["store"] for r in results), key=list(STORE_NAMES).index):
        rows = [r for r in results if r["store"] == store]
        for stage, style in (("search", "-o"), ("total", "--s")):
            axes.plot([r["items"] for r in rows], [r[stage]["p50"] for r in rows], style, color=COLORS[store], label=f"{STORE_NAMES[store]}, {stage} p50")
    floors = sorted({r["items"]: r["floor"]["p50"] for r in results if "floor" in r}.items())
    if floors:
        axes.plot([items for items, _ in floors], [ms for _, ms in floors], ":", color="black", label="numpy exact top-10 (floor), p50")
    axes.set(xscale="log", yscale="log", xlabel="stored items", ylabel="ms per query", title="Query latency against collection size")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    out = ROOT / "docs" / "scale-latency.png"
    figure.savefig(out, dpi=100, bbox_inches="tight")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated item counts")
    parser.add_argument("--stores", default="lite,server", help="comma-separated: lite (with the in-memory index), lite-scan (Lite searching itself), server")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--index-timeout", type=float, default=3600, help="seconds to wait for a Milvus server's index to settle before measuring anyway")
    parser.add_argument("--plot-only", action="store_true", help=f"redraw the plot from {HISTORY.relative_to(ROOT)} and exit")
    args = parser.parse_args()
    if args.plot_only:
        if not HISTORY.exists():
            sys.exit(f"no {HISTORY.relative_to(ROOT)} yet: run scale.py first")
        print(plot(json.loads(HISTORY.read_text())) or "no plot written")
        return
    sizes = sorted(int(size) for size in args.sizes.split(","))
    model = text_model()

    results = [r for store in args.stores.split(",") for r in run_store(store, sizes, args.queries, model, args.index_timeout)]
    lines = [
        f"Query latency in ms, {args.queries} distinct text queries, top_k 10, model {model[0]} ({model[1]}-d), synthetic vectors",
        "",
        "| store | items | insert rows/s | " + " | ".join(f"{s} p{q}" for s in STAGES for q in QUANTILES) + " | floor p50 | search / floor (p50) | total - encode (p50) |",
        "|---|---:|---:|" + "---:|" * (len(STAGES) * len(QUANTILES) + 3),
    ]
    for r in results:
        cells = " | ".join(f"{r[stage][f'p{q}']:.1f}" for stage in STAGES for q in QUANTILES)
        ratios = f"{r['floor']['p50']:.1f} | {r['search']['p50'] / r['floor']['p50']:.2f} | {r['total']['p50'] - r['encode']['p50']:.1f}"
        lines.append(f"| {r['store']} | {r['items']} | {r['insert_rows_per_s']:.0f} | {cells} | {ratios} |")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    written = plot(record(results, " ".join([".venv/bin/python", "bench/scale.py", *sys.argv[1:]])))
    write_results("scale", {"args": vars(args), "model": model, "results": results, "plot": str(written) if written else None}, markdown)


if __name__ == "__main__":
    main()
