"""Ingest throughput: documents/s and chunks/s through the server, next to the bare encoder.

    .venv/bin/python bench/ingest.py [--docs 2000] [--batch 32]

Both sides embed the same chunk texts in the same run; the ratio says what HTTP, chunking, hashing
and Milvus writes cost on top of the model. The server loads the text model only (no Whisper, CLIP or
reranker): the figure is the text path alone (with CLIP loaded, ingest also makes CLIP text-tower
copies of every chunk).
"""

from __future__ import annotations

import argparse
import os
import time

from common import TEXT_ONLY, model_env, running_server, synthetic_documents, write_results


def bare_encoder_throughput(documents: list[dict]) -> dict:
    from api.settings import Settings
    from encoders import create_text_encoder
    from retrieval.chunking import chunk_text

    os.environ.update(model_env())
    settings = Settings()
    encoder = create_text_encoder(settings.text_encoder_config())
    max_tokens = min(settings.chunk_tokens, encoder.info.max_tokens)
    overlap = min(settings.chunk_overlap, max_tokens // 2)
    texts = [chunk.text for doc in documents for chunk in chunk_text(doc["text"], encoder.token_spans, max_tokens, overlap)]
    encoder.embed_documents(texts[:8])  # warm-up
    started = time.perf_counter()
    encoder.embed_documents(texts)
    seconds = time.perf_counter() - started
    return {"model": encoder.info.name, "seconds": seconds, "docs_per_s": len(documents) / seconds, "chunks": len(texts), "chunks_per_s": len(texts) / seconds}


def server_throughput(documents: list[dict], batch: int) -> dict:
    with running_server(TEXT_ONLY) as client:
        client.post("/v1/documents", json={"collection": "warmup", "documents": [{"text": "warm up the model"}]}).raise_for_status()
        chunks = 0
        started = time.perf_counter()
        for start in range(0, len(documents), batch):
            response = client.post("/v1/documents", json={"collection": "bench", "documents": documents[start : start + batch]})
            response.raise_for_status()
            chunks += response.json()["chunks"]
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "docs_per_s": len(documents) / seconds, "chunks": chunks, "chunks_per_s": chunks / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32, help="documents per request")
    args = parser.parse_args()

    documents = synthetic_documents(args.docs)
    bare = bare_encoder_throughput(documents)
    server = server_throughput(documents, args.batch)
    ratio = server["chunks_per_s"] / bare["chunks_per_s"]
    markdown = "\n".join(
        [
            f"Ingest, {args.docs} documents, {server['chunks']} chunks, model {bare['model']}, {args.batch} docs/request",
            "",
            "| path | docs/s | chunks/s |",
            "|---|---:|---:|",
            f"| bare encoder | {bare['docs_per_s']:.1f} | {bare['chunks_per_s']:.1f} |",
            f"| server (HTTP + chunking + Milvus Lite) | {server['docs_per_s']:.1f} | {server['chunks_per_s']:.1f} |",
            f"| ratio server / bare | {ratio:.2f} | {ratio:.2f} |",
            "",
        ]
    )
    print(markdown)
    write_results("ingest", {"args": vars(args), "bare": bare, "server": server, "ratio": ratio}, markdown)


if __name__ == "__main__":
    main()
