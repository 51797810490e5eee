"""Ingest throughput: documents/s and chunks/s through the server, next to the bare encoder, in one run.

    .venv/bin/python bench/ingest.py [--docs 1000] [--batch 32] [--sentences 4] [--rounds 4] [--prefill 0]

Synthetic documents of --sentences sentences each (4: about 74 tokens, one chunk; 25: about 450
tokens, two chunks of MiniLM's 256). Both sides embed the same chunk texts; the ratio says what HTTP,
cleaning, chunking, hashing and Milvus writes cost on top of the model. The documents are measured in
--rounds slices that alternate between the bare encoder and the server (bare, server, bare, server,
...), so that a change in the machine's load during the run hits both sides alike; the figures are
the sums. The server loads the text model only (no Whisper, CLIP or reranker): the figure is the text
path alone (with CLIP loaded, ingest also makes CLIP text-tower copies of every chunk). --prefill N
first stores N synthetic items (as bench/scale.py does) in the collection the documents go to, to
measure ingest into a large Milvus Lite store.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import TEXT_ONLY, fill_text_space, model_env, running_server, synthetic_documents, text_model, write_results


def bare_encoder(documents: list[dict]):
    """The server's text encoder in this process, and the chunk texts of each document as the server cuts them."""
    from api.settings import Settings
    from encoders import create_text_encoder
    from retrieval.chunking import chunk_text

    os.environ.update(model_env())
    settings = Settings()
    encoder = create_text_encoder(settings.text_encoder_config())
    max_tokens = min(settings.chunk_tokens, encoder.info.max_tokens)
    overlap = min(settings.chunk_overlap, max_tokens // 2)
    chunks = [[chunk.text for chunk in chunk_text(doc["text"], encoder.token_spans, max_tokens, overlap)] for doc in documents]
    encoder.embed_documents([texts[0] for texts in chunks[:8]])  # warm-up
    return encoder, chunks


def measure(documents: list[dict], batch: int, rounds: int, data_dir: Path | None) -> dict:
    encoder, chunks = bare_encoder(documents)
    bare_s = server_s = 0.0
    stored = 0
    with running_server(TEXT_ONLY, data_dir=data_dir) as client:
        client.post("/v1/documents", json={"collection": "warmup", "documents": [{"text": "warm up the model"}]}).raise_for_status()
        size = -(-len(documents) // rounds)
        for first in range(0, len(documents), size):
            texts = [text for doc_chunks in chunks[first : first + size] for text in doc_chunks]
            started = time.perf_counter()
            encoder.embed_documents(texts)
            bare_s += time.perf_counter() - started
            started = time.perf_counter()
            for start in range(first, min(first + size, len(documents)), batch):
                response = client.post("/v1/documents", json={"collection": "bench", "documents": documents[start : min(start + batch, first + size)]})
                response.raise_for_status()
                stored += response.json()["chunks"]
            server_s += time.perf_counter() - started
    count = sum(len(doc_chunks) for doc_chunks in chunks)
    assert stored == count, f"the server stored {stored} chunks, the bare side embedded {count}"
    return {
        "model": encoder.info.name,
        "chunks": count,
        "bare": {"seconds": bare_s, "docs_per_s": len(documents) / bare_s, "chunks_per_s": count / bare_s},
        "server": {"seconds": server_s, "docs_per_s": len(documents) / server_s, "chunks_per_s": count / server_s},
        "ratio": bare_s / server_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32, help="documents per request")
    parser.add_argument("--sentences", type=int, default=4, help="sentences per document (4: ~74 tokens, 25: ~450)")
    parser.add_argument("--rounds", type=int, default=4, help="slices alternating between the bare encoder and the server")
    parser.add_argument("--prefill", type=int, default=0, help="synthetic items stored in the collection first")
    args = parser.parse_args()

    documents = synthetic_documents(args.docs, sentences=args.sentences)
    with tempfile.TemporaryDirectory(prefix="prism-bench-ingest-") as folder:
        data_dir = Path(folder)
        if args.prefill:
            fill_text_space(str(data_dir / "milvus.db"), "bench", 0, args.prefill, text_model())
        result = measure(documents, args.batch, args.rounds, data_dir)
    bare, server, ratio = result["bare"], result["server"], result["ratio"]
    markdown = "\n".join(
        [
            f"Ingest, {args.docs} documents of {args.sentences} sentences, {result['chunks']} chunks, model {result['model']}, "
            f"{args.batch} docs/request, {args.rounds} alternating rounds" + (f", into {args.prefill} stored items" if args.prefill else ""),
            "",
            "| path | docs/s | chunks/s |",
            "|---|---:|---:|",
            f"| bare encoder | {bare['docs_per_s']:.1f} | {bare['chunks_per_s']:.1f} |",
            f"| server (HTTP + chunking + Milvus Lite) | {server['docs_per_s']:.1f} | {server['chunks_per_s']:.1f} |",
            f"| ratio server / bare | {ratio:.3f} | {ratio:.3f} |",
            "",
        ]
    )
    print(markdown)
    write_results("ingest", {"args": vars(args), **result}, markdown)


if __name__ == "__main__":
    main()
