"""Run every benchmark, each as a subprocess, and collect their results into one JSON and one markdown file.

    .venv/bin/python bench/run_all.py [--quick] [--only ingest,scale] [--skip audio] [--scale-sizes 10000,100000,1000000]

Writes bench/results/summary.json and bench/results/summary.md (each script also writes
bench/results/<name>.json and .md). `--quick` uses small sizes (a smoke run of a few minutes); the full
run takes about 45 minutes on 2 cores, far more with 1M items in --scale-sizes. A script that fails is
reported as failed and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import RESULTS, ROOT

# name -> (full arguments, quick arguments)
SCRIPTS = {
    "ingest": (["--docs", "1000"], ["--docs", "200"]),
    "audio": (["--sentences", "12"], ["--sentences", "4"]),
    "images": (["--images", "256", "--clients", "8"], ["--images", "64", "--clients", "8"]),
    "query": (["--sizes", "1000,10000", "--queries", "200", "--cpu-threads", "default,1"], ["--sizes", "1000", "--queries", "50"]),
    "scale": (["--sizes", "10000,100000", "--stores", "lite,server", "--queries", "300"], ["--sizes", "10000", "--stores", "lite,server", "--queries", "50"]),
    "concurrency": ([], ["--text-queries", "64", "--image-queries", "32", "--ingest-docs", "50"]),
    "embeddings": ([], ["--requests", "24"]),
    "cli_ingest": (["--files", "200"], ["--files", "40"]),
    "memory": (["--items", "100000"], ["--items", "20000"]),
    "peak_memory": (["--document-kb", "1,100,1000", "--recording-minutes", "10"], ["--document-kb", "1,100", "--recording-minutes", "1"]),
}


def run(name: str, arguments: list[str]) -> dict:
    command = [sys.executable, f"bench/{name}.py", *arguments]
    print(f"\n=== {' '.join(command)}", flush=True)
    started_at = time.time()
    completed = subprocess.run(command, cwd=ROOT)
    seconds = time.time() - started_at
    result_file = RESULTS / f"{name}.json"
    fresh = result_file.exists() and result_file.stat().st_mtime >= started_at
    entry = {"command": " ".join([".venv/bin/python", *command[1:]]), "returncode": completed.returncode, "seconds": round(seconds, 1)}
    entry["status"] = "ok" if completed.returncode == 0 and fresh else "failed"
    if entry["status"] == "ok":
        entry["results"] = json.loads(result_file.read_text())
        entry["markdown"] = (RESULTS / f"{name}.md").read_text()
    return entry


def ingest_rows(runs: dict) -> list[str]:
    """One table of ingest throughput per modality: bare encoder, server, ratio."""
    rows = []
    if runs.get("ingest", {}).get("status") == "ok":
        r = runs["ingest"]["results"]
        rows.append(f"| text (chunks/s) | {r['bare']['chunks_per_s']:.1f} | {r['server']['chunks_per_s']:.1f} | {r['ratio']:.2f} |")
    if runs.get("audio", {}).get("status") == "ok":
        for backend, r in runs["audio"]["results"]["results"].items():
            rows.append(f"| audio, {backend} (audio s per wall s) | {r['bare']['audio_s_per_s']:.1f} | {r['server']['audio_s_per_s']:.1f} | {r['ratio']:.2f} |")
    if runs.get("images", {}).get("status") == "ok":
        r = runs["images"]["results"]
        bare = r["bare"]["images_per_s"]
        rows.append(f"| images, 16 per request (images/s) | {bare:.1f} | {r['batched']['images_per_s']:.1f} | {r['batched']['images_per_s'] / bare:.2f} |")
        rows.append(
            f"| images, 1 per request, {r['concurrent']['clients']} clients (images/s) | {bare:.1f} | "
            f"{r['concurrent']['images_per_s']:.1f} | {r['concurrent']['images_per_s'] / bare:.2f} |"
        )
    if not rows:
        return []
    return ["## Ingest throughput per modality", "", "| modality | bare encoder | server | ratio server / bare |", "|---|---:|---:|---:|", *rows, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", default="", help="comma-separated scripts to run (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated scripts not to run")
    parser.add_argument("--scale-sizes", default=None, help="item counts for scale.py, e.g. 10000,100000,1000000")
    args = parser.parse_args()
    names = [n for n in (args.only.split(",") if args.only else SCRIPTS) if n not in args.skip.split(",")]
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        parser.error(f"unknown scripts {unknown}; known: {', '.join(SCRIPTS)}")

    runs = {}
    for name in names:
        arguments = list(SCRIPTS[name][1 if args.quick else 0])
        if name == "scale" and args.scale_sizes:
            arguments[arguments.index("--sizes") + 1] = args.scale_sizes
        runs[name] = run(name, arguments)

    lines = [f"# Benchmark summary ({'quick' if args.quick else 'full'} run, {time.strftime('%Y-%m-%d %H:%M')})", ""]
    lines += ["| script | status | seconds | command |", "|---|---|---:|---|"]
    lines += [f"| {name} | {r['status']} | {r['seconds']:.0f} | `{r['command']}` |" for name, r in runs.items()]
    lines += ["", *ingest_rows(runs)]
    for name, r in runs.items():
        if r["status"] == "ok":
            lines += [f"## {name}", "", r["markdown"]]
    markdown = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.md").write_text(markdown)
    summary = {"quick": args.quick, "runs": {name: {k: v for k, v in r.items() if k != "markdown"} for name, r in runs.items()}}
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n" + markdown)
    print(f"written to {RESULTS / 'summary.json'} and {RESULTS / 'summary.md'}")
    sys.exit(1 if any(r["status"] != "ok" for r in runs.values()) else 0)


if __name__ == "__main__":
    main()
