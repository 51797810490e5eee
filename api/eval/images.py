"""Picture evaluation: text-to-image and image-to-text recall on a folder of captioned pictures."""

from __future__ import annotations

import argparse
from typing import Any

from api.eval.client import DOCUMENT_BATCH, MAX_TOP_K, EvalError, call, eval_collection, progress, seconds, server_info, unique
from api.eval.datasets import CaptionDataset
from prism_client import PrismClient
from retrieval.metrics import hit_at_k, mean
from retrieval.timing import StageTimer

IMAGE_KS = (1, 5, 10)
IMAGE_BATCH = 16  # pictures per ingest request
IMAGE_BATCH_BYTES = 64 * 1024 * 1024


class ImageEval:
    def __init__(self, client: PrismClient, dataset: CaptionDataset, args: argparse.Namespace) -> None:
        self.client = client
        self.dataset = dataset
        self.args = args
        self.timer = StageTimer()

    def run(self) -> dict[str, Any]:
        dataset, limit = self.dataset, self.args.limit
        info = server_info(self.client)
        image_model = info["models"].get("image", {})
        if not image_model.get("available"):
            raise EvalError(f"--images needs a CLIP model on the server, and it has none: {image_model.get('error') or 'no image model'}")
        images = unique(name for name, _ in dataset.captions)
        caption_ids: dict[str, list[str]] = {}  # image -> ids of its caption documents
        documents = []
        for name, caption in dataset.captions:
            ids = caption_ids.setdefault(name, [])
            doc_id = name if not ids else f"{name}#{len(ids) + 1}"
            ids.append(doc_id)
            documents.append({"id": doc_id, "text": caption, "metadata": {"image": name}})
        text_queries = dataset.captions[:limit] if limit else dataset.captions
        image_queries = images[:limit] if limit else images

        with eval_collection(self.client, dataset.name) as collection:
            with self.timer.stage("ingest_images"):
                self.ingest_images(collection, images)
            with self.timer.stage("ingest_captions"):
                for start in range(0, len(documents), DOCUMENT_BATCH):
                    call(self.client.add_documents, documents[start : start + DOCUMENT_BATCH], collection=collection)
            with self.timer.stage("text_to_image"):
                text_to_image = [
                    self.search({"text": caption}, "image", collection, "source", name)
                    for name, caption in progress(text_queries, unit="query", desc="text to image")
                ]
            depth = min(MAX_TOP_K, max(IMAGE_KS))
            with self.timer.stage("image_to_text"):
                image_to_text = [
                    self.search({"image": (dataset.folder / name).read_bytes()}, "text", collection, "doc_id", caption_ids[name], depth)
                    for name in progress(image_queries, unit="query", desc="image to text")
                ]
        return {
            "dataset": dataset.name,
            "mode": "images",
            "images": len(images),
            "captions": len(documents),
            "queries": {"text_to_image": len(text_to_image), "image_to_text": len(image_to_text)},
            "model": {"image": image_model.get("name"), "text": info["models"]["text"]["name"]},
            "text_to_image": {f"recall@{k}": round(mean(hits[k] for hits in text_to_image), 4) for k in IMAGE_KS},
            "image_to_text": {f"recall@{k}": round(mean(hits[k] for hits in image_to_text), 4) for k in IMAGE_KS},
            "warnings": dataset.warnings,
            "timings_s": seconds(self.timer),
        }

    def ingest_images(self, collection: str, images: list[str]) -> None:
        batch: list[tuple[str, bytes]] = []
        size = 0
        for name in progress(images, unit="picture", desc="ingest pictures"):
            data = (self.dataset.folder / name).read_bytes()
            if batch and (len(batch) >= IMAGE_BATCH or size + len(data) > IMAGE_BATCH_BYTES):
                call(self.client.add_images, batch, collection=collection)
                batch, size = [], 0
            batch.append((name, data))
            size += len(data)
        if batch:
            call(self.client.add_images, batch, collection=collection)

    def search(self, query: dict[str, str | bytes], modality: str, collection: str, key: str, wanted: str | list[str], top_k: int = max(IMAGE_KS)) -> dict[int, float]:
        """Hit at each k of IMAGE_KS: whether a wanted item (by `key` of the results) is among the first k.
        `query`: {"text": ...} or {"image": the picture's bytes}."""
        options = dict(collection=collection, modalities=[modality], top_k=top_k)
        text, image = query.get("text"), query.get("image")
        body = call(self.client.search, text, **options) if isinstance(text, str) else call(self.client.search_image, image, **options)
        ranked = [result[key] for result in body["results"]]
        relevant = [wanted] if isinstance(wanted, str) else wanted
        return {k: hit_at_k(ranked, relevant, k) for k in IMAGE_KS}
