"""Image ingest speed: pictures per second through the server, next to the bare CLIP encoder, in one run.

    .venv/bin/python bench/images.py [--images 256] [--clients 8]

The model is PRISM_IMAGE_MODEL / PRISM_IMAGE_PRETRAINED when set; otherwise ViT-B-32 with random
weights saved to a temporary checkpoint (no pretrained CLIP exists offline, and the values of the
weights do not change the cost of a forward pass). The pictures are 640x480 JPEGs, the size of a
typical web photo. The figures:
  bare encoder        ClipEncoder.embed_images on decoded pictures, in batches of 32, with the threads
                      per operation the server uses (PRISM_CPU_THREADS, else half the cores), before
                      and after the server runs (their mean is the reference for the ratios: load from
                      elsewhere drifts); and with PyTorch's default (one thread per core)
  server, batched     POST /v1/images with 16 pictures per request, one client
  server, concurrent  POST /v1/images with 1 picture per request from --clients clients at once:
                      what dynamic micro-batching gathers across requests (items per batch is shown),
                      and the server's own timings per request (p50 of its thumbnail, embed and store
                      stages)
The server figures include HTTP, decoding, thumbnails, CLIP, Milvus Lite writes and blob writes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import TEXT_ONLY, batcher_counts, clip_settings, percentile, photos, running_server, write_results

REQUEST_IMAGES = 16


def bare_encoder(settings: dict[str, str]):
    from encoders.clip import ClipConfig, create_clip_encoder

    return create_clip_encoder(ClipConfig(model=settings["PRISM_IMAGE_MODEL"], pretrained=settings["PRISM_IMAGE_PRETRAINED"] or None))


def bare_speed(encoder, data: list[bytes], labels: tuple[str, ...]) -> dict:
    """Images/s of the bare encoder: "default" with PyTorch's default threads, "server" with the server's."""
    import os

    import torch

    from encoders.base import set_cpu_threads
    from encoders.images import decode_image

    pictures = [decode_image(item).image for item in data]
    speeds = {}
    for label in labels:
        if label == "server":
            set_cpu_threads(int(os.environ["PRISM_CPU_THREADS"]) if os.environ.get("PRISM_CPU_THREADS") else None)
        encoder.embed_images(pictures[:8])  # warm-up
        started = time.perf_counter()
        encoder.embed_images(pictures)
        seconds = time.perf_counter() - started
        speeds[label] = {"threads": torch.get_num_threads(), "wall_s": seconds, "images_per_s": len(data) / seconds}
    return speeds


def server_speed(settings: dict[str, str], data: list[bytes], others: list[bytes], clients: int) -> dict:
    """`others`: as many different pictures for the concurrent run, since the server does not encode a
    picture it has stored before (it reuses the vector of the same bytes)."""
    env = {**TEXT_ONLY, **settings}
    with running_server(env) as client:
        client.post("/v1/images", data={"collection": "warmup"}, files=[("files", ("w.jpg", photos(1, seed=99)[0]))]).raise_for_status()

        started = time.perf_counter()
        for start in range(0, len(data), REQUEST_IMAGES):
            files = [("files", (f"{start + i}.jpg", item)) for i, item in enumerate(data[start : start + REQUEST_IMAGES])]
            client.post("/v1/images", data={"collection": "batched"}, files=files).raise_for_status()
        batched_s = time.perf_counter() - started

        batches_before, items_before = batcher_counts(client)

        stages: dict[str, list[float]] = {}

        def post_one(index: int) -> None:
            response = client.post("/v1/images", data={"collection": "concurrent"}, files=[("files", (f"{index}.jpg", others[index]))])
            response.raise_for_status()
            for stage, ms in response.json()["timings_ms"].items():
                stages.setdefault(stage, []).append(ms)

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(post_one, range(len(others))))
        concurrent_s = time.perf_counter() - started
        batches_after, items_after = batcher_counts(client)
    batches = batches_after - batches_before
    return {
        "batched": {"wall_s": batched_s, "images_per_s": len(data) / batched_s},
        "concurrent": {
            "wall_s": concurrent_s,
            "images_per_s": len(others) / concurrent_s,
            "clients": clients,
            "items_per_batch": (items_after - items_before) / batches if batches else float("nan"),
            "stages_p50_ms": {stage: percentile(values, 50) for stage, values in stages.items()},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    data = photos(args.images)
    with tempfile.TemporaryDirectory(prefix="prism-bench-clip-") as folder:
        settings = clip_settings(Path(folder))
        encoder = bare_encoder(settings)
        bare = bare_speed(encoder, data, ("default", "server"))
        server = server_speed(settings, data, photos(args.images, seed=1), args.clients)
        after = bare_speed(encoder, data, ("server",))["server"]  # again after the server: load from elsewhere drifts
    # The reference for the ratios: the bare encoder at the server's threads, the mean of before and after.
    bare["server"]["images_per_s"] = (bare["server"]["images_per_s"] + after["images_per_s"]) / 2
    bare["server"]["before_after"] = [bare["server"].pop("wall_s"), after["wall_s"]]
    bare["images_per_s"], bare["model"] = bare["server"]["images_per_s"], encoder.info.name  # as bench/run_all.py reads them
    reference = bare["server"]["images_per_s"]
    concurrent = server["concurrent"]
    rows = [
        (f"bare encoder (batches of 32), {bare['server']['threads']} thread(s) per operation, as the server (mean of before and after the server runs)", reference, 1.0, ""),
        (f"bare encoder (batches of 32), PyTorch's default {bare['default']['threads']} threads", bare["default"]["images_per_s"], bare["default"]["images_per_s"] / reference, ""),
        (f"server, {REQUEST_IMAGES} per request", server["batched"]["images_per_s"], server["batched"]["images_per_s"] / reference, ""),
        (
            f"server, 1 per request, {args.clients} clients",
            concurrent["images_per_s"],
            concurrent["images_per_s"] / reference,
            f"{concurrent['items_per_batch']:.1f} pictures per CLIP batch; per request p50 "
            + ", ".join(f"{stage} {ms:.0f} ms" for stage, ms in concurrent["stages_p50_ms"].items()),
        ),
    ]
    lines = [
        f"Image ingest, {args.images} pictures of 640x480, model {bare['model']} ({settings['PRISM_IMAGE_PRETRAINED'] or 'pretrained tag'})",
        "",
        "| path | images/s | ratio to bare (server's threads) | note |",
        "|---|---:|---:|---|",
        *[f"| {name} | {speed:.1f} | {ratio:.2f} | {note} |" for name, speed, ratio, note in rows],
    ]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    out = write_results("images", {"images": args.images, "bare": bare, **server}, markdown)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
