"""Turning uploaded audio bytes into what Whisper listens to: 16 kHz mono float32 samples.

Decoding happens in-process with PyAV (FFmpeg's libraries, shipped in the `av` wheel that faster-whisper
already needs), so every common container and codec works without an `ffmpeg` binary on the server.
"""

from __future__ import annotations

import io

import av
import numpy as np

# Whisper's feature extractor is defined on 16 kHz audio; both backends expect exactly this rate.
SAMPLE_RATE = 16000

# Below these levels there is nothing to transcribe: Whisper would "hear" hallucinated phrases in it
# (the classic "Thank you." on silence), so a silent upload is refused rather than indexed as text.
SILENCE_PEAK = 1e-3
SILENCE_RMS = 1e-4


class InvalidAudio(ValueError):
    """The upload is not audio this server can use (the API answers 422 with the message)."""


def decode_audio(data: bytes, filename: str = "", max_duration_s: float | None = None) -> np.ndarray:
    """Decode any container and codec FFmpeg knows to 16 kHz mono float32 samples in [-1, 1].

    Stereo and multichannel audio is mixed down and any sample rate resampled. Raises InvalidAudio when
    the bytes are not audio (or are corrupt), hold no samples, are silent, or, with `max_duration_s`,
    run longer than that (checked while decoding, for containers that do not state their duration).
    """
    name = filename or "upload"
    if not data:
        raise InvalidAudio(f"{name}: the file is empty")
    max_samples = None if max_duration_s is None else int(max_duration_s * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    decoded = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise InvalidAudio(f"{name}: not audio (the file has no audio stream)")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for resampled in resampler.resample(frame):
                    chunks.append(resampled.to_ndarray().reshape(-1))
                    decoded += chunks[-1].size
                if max_samples is not None and decoded > max_samples:
                    raise InvalidAudio(f"{name}: the audio is longer than {max_duration_s:g} s")
            # The resampler holds back the last few milliseconds until it is flushed.
            for resampled in resampler.resample(None):
                chunks.append(resampled.to_ndarray().reshape(-1))
    except av.FFmpegError as error:
        reason = getattr(error, "strerror", None) or str(error)  # without PyAV's "<none>" file name
        raise InvalidAudio(f"{name}: not audio or corrupt ({reason})") from error
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise InvalidAudio(f"{name}: the audio is empty (no samples)")
    if max_samples is not None and samples.size > max_samples:
        raise InvalidAudio(f"{name}: the audio is longer than {max_duration_s:g} s")
    if not np.all(np.isfinite(samples)):
        raise InvalidAudio(f"{name}: corrupt audio (samples that are not finite numbers)")
    peak = float(np.max(np.abs(samples)))
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if peak < SILENCE_PEAK or rms < SILENCE_RMS:
        raise InvalidAudio(f"{name}: the audio is silent (peak {peak:.2g}, RMS {rms:.2g})")
    return samples


def audio_duration_s(samples: np.ndarray) -> float:
    """Duration of samples as decode_audio returns them (16 kHz mono)."""
    return len(samples) / SAMPLE_RATE


def probe_duration_s(data: bytes, filename: str = "") -> float | None:
    """The duration the container states, read from its headers without decoding; None when unknown.

    Lets the API refuse an over-long upload before spending seconds decoding it. Headers can lie (or be
    estimated from a bit rate, as for MP3 without a Xing header), so decode_audio's max_duration_s is
    the check that holds; this one is the cheap early answer. Anything unreadable gives None, leaving
    the precise error message to decode_audio.
    """
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / av.time_base
    except av.FFmpegError:
        return None
    return None
