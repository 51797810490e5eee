"""Turning uploaded audio bytes into what Whisper listens to: 16 kHz mono float32 samples.

Decoding happens in-process with PyAV (FFmpeg's libraries, shipped in the `av` wheel that faster-whisper
already needs), so every common container and codec works without an `ffmpeg` binary on the server.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Iterator

import av
import numpy as np

from encoders.cancel import check_cancelled

# Whisper's feature extractor is defined on 16 kHz audio; both backends expect exactly this rate.
SAMPLE_RATE = 16000

# Below these levels there is nothing to transcribe: Whisper would "hear" hallucinated phrases in it
# (the classic "Thank you." on silence), so a silent upload is refused rather than indexed as text.
SILENCE_PEAK = 1e-3
SILENCE_RMS = 1e-4

FRAMES_PER_CANCEL_CHECK = 256  # a few seconds of audio for most codecs; a cheap check


class InvalidAudio(ValueError):
    """The upload is not audio this server can use (the API answers 400 with the message)."""


class AudioTooLong(InvalidAudio):
    """The audio runs longer than the limit it was decoded with (the API answers 413)."""


@dataclass
class _Level:
    """What a first pass over the audio learns, holding one frame at a time."""

    samples: int = 0
    peak: float = 0.0
    sum_of_squares: float = 0.0  # float64, accumulated frame by frame

    @property
    def rms(self) -> float:
        return math.sqrt(self.sum_of_squares / self.samples) if self.samples else 0.0


def decode_audio(data: bytes, filename: str = "", max_duration_s: float | None = None) -> np.ndarray:
    """Decode any container and codec FFmpeg knows to 16 kHz mono float32 samples in [-1, 1].

    Stereo and multichannel audio is mixed down and any sample rate resampled. Raises InvalidAudio when
    the bytes are not audio (or are corrupt), hold no samples, are silent, or, with `max_duration_s`,
    run longer than that (checked while decoding, for containers that do not state their duration).

    Memory: the result, 4 bytes a sample (230 MB per hour of audio), and one frame besides. A first pass
    measures length and level as a stream, so an over-long or silent upload is refused holding no
    samples at all; a second pass decodes into one array of the length the first pass counted.
    """
    name = filename or "upload"
    if not data:
        raise InvalidAudio(f"{name}: the file is empty")
    max_samples = None if max_duration_s is None else int(max_duration_s * SAMPLE_RATE)
    level = _Level()
    for chunk in _decoded_chunks(data, name):
        if not np.all(np.isfinite(chunk)):
            raise InvalidAudio(f"{name}: corrupt audio (samples that are not finite numbers)")
        level.samples += chunk.size
        level.peak = max(level.peak, float(np.max(np.abs(chunk), initial=0.0)))
        level.sum_of_squares += float(np.dot(chunk.astype(np.float64), chunk.astype(np.float64)))
        if max_samples is not None and level.samples > max_samples:
            raise AudioTooLong(f"{name}: the audio is longer than {max_duration_s:g} s")
    if level.samples == 0:
        raise InvalidAudio(f"{name}: the audio is empty (no samples)")
    if level.peak < SILENCE_PEAK or level.rms < SILENCE_RMS:
        raise InvalidAudio(f"{name}: the audio is silent (peak {level.peak:.2g}, RMS {level.rms:.2g})")
    samples = np.empty(level.samples, dtype=np.float32)
    filled = 0
    for chunk in _decoded_chunks(data, name):
        # Decoding is deterministic, so the second pass yields what the first counted; never write past it.
        take = min(chunk.size, level.samples - filled)
        samples[filled : filled + take] = chunk[:take]
        filled += take
    if filled != level.samples:
        raise InvalidAudio(f"{name}: the audio decoded to {filled} samples the second time, not {level.samples}")
    return samples


def _decoded_chunks(data: bytes, name: str) -> Iterator[np.ndarray]:
    """The audio as 16 kHz mono float32 chunks (a frame's worth each), checking for cancellation as
    it goes (decoding hours of audio takes seconds)."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise InvalidAudio(f"{name}: not audio (the file has no audio stream)")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for count, frame in enumerate(container.decode(stream)):
                if count % FRAMES_PER_CANCEL_CHECK == 0:
                    check_cancelled()
                for resampled in resampler.resample(frame):
                    yield resampled.to_ndarray().reshape(-1)
            # The resampler holds back the last few milliseconds until it is flushed.
            for resampled in resampler.resample(None):
                yield resampled.to_ndarray().reshape(-1)
    except av.FFmpegError as error:
        reason = getattr(error, "strerror", None) or str(error)  # without PyAV's "<none>" file name
        raise InvalidAudio(f"{name}: not audio or corrupt ({reason})") from error


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
