"""Real audio files for tests: espeak-ng speech, tones and silence, encoded with PyAV's own encoders."""

from __future__ import annotations

import io
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Format -> (container, codec, sample rate the codec accepts). Opus only runs at 8/12/16/24/48 kHz.
FORMATS = {
    "wav": ("wav", "pcm_s16le", None),
    "flac": ("flac", "flac", None),
    "mp3": ("mp3", "libmp3lame", None),
    "ogg": ("ogg", "libopus", 48000),
    "m4a": ("mp4", "aac", None),
    "webm": ("webm", "libopus", 48000),
}


def speak(text: str, path: Path) -> Path:
    """Synthetic English speech (espeak-ng: 22.05 kHz mono 16-bit WAV)."""
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


def read_wav(source: Path | bytes) -> tuple[np.ndarray, int]:
    """(samples, rate) of a 16-bit PCM WAV; samples float32 shaped (frames, channels)."""
    with wave.open(str(source) if isinstance(source, Path) else io.BytesIO(source)) as reader:
        rate, channels = reader.getframerate(), reader.getnchannels()
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    return (pcm.astype(np.float32) / 32768).reshape(-1, channels), rate


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV of float samples shaped (frames,) or (frames, channels), written by the stdlib."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(samples.shape[1])
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def spoken_recording(sentences: list[str], pause_s: float, folder: Path) -> tuple[bytes, list[tuple[float, float]]]:
    """One WAV of the sentences spoken by espeak-ng with a pause after each, and where each sentence
    starts and ends in it (seconds)."""
    parts, spans, cursor = [], [], 0.0
    for index, sentence in enumerate(sentences):
        samples, rate = read_wav(speak(sentence, folder / f"s{index}.wav"))
        spans.append((cursor, cursor + len(samples) / rate))
        parts += [samples, np.zeros((int(pause_s * rate), samples.shape[1]), dtype=samples.dtype)]
        cursor += len(samples) / rate + pause_s
    return wav_bytes(np.concatenate(parts), rate), spans


def tone(seconds: float, rate: int = 16000, hz: float = 440.0, channels: int = 1, amplitude: float = 0.5):
    """A sine tone as float32 samples shaped (frames, channels); channels get different pitches."""
    t = np.arange(int(seconds * rate)) / rate
    columns = [amplitude * np.sin(2 * np.pi * hz * (c + 1) * t) for c in range(channels)]
    return np.stack(columns, axis=1).astype(np.float32)


def silence(seconds: float, rate: int = 16000) -> bytes:
    """A WAV of digital silence."""
    return wav_bytes(np.zeros(int(seconds * rate), np.float32), rate)


def encode_as(source: Path | bytes | np.ndarray, fmt: str, rate: int = 16000) -> bytes:
    """Real `fmt` bytes (a key of FORMATS) of a WAV file/bytes, or of float samples at `rate`."""
    if isinstance(source, np.ndarray):
        samples = source.reshape(len(source), -1).astype(np.float32)
    else:
        samples, rate = read_wav(source)
    container_format, codec, codec_rate = FORMATS[fmt]
    channels = samples.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=codec_rate or rate, layout=layout)
        # Convert to what the encoder takes, in frames of the size it wants (AAC 1024, Opus 960...).
        resampler = av.AudioResampler(
            format=stream.codec_context.format.name,
            layout=layout,
            rate=stream.codec_context.rate,
            frame_size=stream.codec_context.frame_size or None,
        )
        # Packed "flt" frames interleave channels (L R L R ...): exactly the row-major (frames, channels).
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.reshape(1, -1)), format="flt", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            chunk.pts = None  # let the encoder number them
            container.mux(stream.encode(chunk))
        container.mux(stream.encode(None))
    return out.getvalue()
