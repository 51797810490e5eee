"""`prism ingest` of a folder of small files: in batches (the default) against one file per request.

    .venv/bin/python bench/cli_ingest.py [--files 200]

Both runs ingest the same folder of short .txt files, with the real `prism` command, into a text-only
server started for the run (each run into its own collection); the ratio is what batching saves.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, TEXT_ONLY, running_server, synthetic_documents, write_results


def ingest_seconds(url: str, folder: Path, collection: str, batch_files: int) -> float:
    command = [sys.executable, "-m", "api.cli", "--url", url, "ingest", str(folder), "--collection", collection, "--batch-files", str(batch_files)]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="prism-cli-ingest-") as folder, running_server(TEXT_ONLY) as client:
        for document in synthetic_documents(args.files, sentences=2):
            (Path(folder) / f"{document['id']}.txt").write_text(document["text"])
        client.add_documents(["warm up the model"], collection="warmup")
        one_by_one = ingest_seconds(client.base_url, Path(folder), "one-by-one", 1)
        batched = ingest_seconds(client.base_url, Path(folder), "batched", 64)
        counts = {c["name"]: c["items"] for c in client.collections()}
    assert counts["one-by-one"] == counts["batched"] >= args.files, counts
    results = {"files": args.files, "one_per_request_s": one_by_one, "batched_s": batched, "speedup": one_by_one / batched}
    markdown = (
        f"| `prism ingest`, {args.files} small .txt files | seconds |\n|---|---|\n"
        f"| one file per request (`--batch-files 1`) | {one_by_one:.1f} |\n| batches of 64 (the default) | {batched:.1f} |\n"
        f"| speed-up | {results['speedup']:.1f}x |\n"
    )
    write_results("cli_ingest", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
