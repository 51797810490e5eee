"""Decoding uploads to 16 kHz mono float32 with PyAV: real files in every common format, real rejections."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from encoders.audio import SAMPLE_RATE, InvalidAudio, audio_duration_s, decode_audio, probe_duration_s
from tests.audio_files import FORMATS, encode_as, read_wav, silence, speak, tone, wav_bytes

SENTENCE = "Owls hunt small animals at night in the forest."


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    return speak(SENTENCE, tmp_path_factory.mktemp("audio") / "owls.wav")


@pytest.fixture(scope="module")
def speech_seconds(speech_wav) -> float:
    samples, rate = read_wav(speech_wav)
    return len(samples) / rate


def energy_near(samples: np.ndarray, hz: float, width: float = 10.0) -> float:
    """The share of the signal's energy within `width` Hz of `hz` (at 16 kHz)."""
    power = np.abs(np.fft.rfft(samples)) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    return float(power[np.abs(frequencies - hz) <= width].sum() / power.sum())


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_decodes_to_16k_mono_float32(speech_wav, speech_seconds, fmt):
    data = encode_as(speech_wav, fmt)
    samples = decode_audio(data, f"owls.{fmt}")
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert audio_duration_s(samples) == pytest.approx(speech_seconds, abs=0.1)
    assert 0.05 < np.max(np.abs(samples)) <= 1.0


def test_lossless_formats_decode_to_the_same_samples(speech_wav):
    from_wav = decode_audio(speech_wav.read_bytes(), "owls.wav")
    from_flac = decode_audio(encode_as(speech_wav, "flac"), "owls.flac")
    assert from_flac.shape == from_wav.shape
    assert np.max(np.abs(from_flac - from_wav)) < 1e-3


@pytest.mark.parametrize("fmt", ["wav", "mp3", "m4a"])
def test_stereo_44k_is_mixed_down_and_resampled(fmt):
    # Left 440 Hz, right 880 Hz: the mono mix keeps both pitches, which sit where they should only if the
    # sample rate was converted (44.1 kHz read as 16 kHz would put them near 160 and 320 Hz).
    data = encode_as(tone(2.0, rate=44100, channels=2), fmt, rate=44100)
    samples = decode_audio(data, f"stereo.{fmt}")
    assert samples.ndim == 1 and samples.dtype == np.float32
    assert audio_duration_s(samples) == pytest.approx(2.0, abs=0.1)
    assert energy_near(samples, 440) > 0.3 and energy_near(samples, 880) > 0.3


def test_8k_mono_is_upsampled():
    samples = decode_audio(wav_bytes(tone(1.5, rate=8000, hz=300), 8000), "phone.wav")
    assert audio_duration_s(samples) == pytest.approx(1.5, abs=0.01)
    assert energy_near(samples, 300) > 0.9


@pytest.fixture(scope="module")
def rejections(speech_wav) -> dict[str, tuple[bytes, str]]:
    """Bytes that must be refused, and the word the message must contain."""
    wav = speech_wav.read_bytes()
    return {
        "random bytes": (np.random.default_rng(0).bytes(5000), "not audio"),
        "a text file": (b"Meeting notes: nothing was decided.\n" * 40, "not audio"),
        "a truncated WAV header": (wav[:30], "not audio"),
        "a truncated MP3": (encode_as(speech_wav, "mp3")[:100], "not audio"),
        "no bytes": (b"", "empty"),
        "a WAV of 0 samples": (wav_bytes(np.zeros(0, np.float32), 16000), "empty"),
        "a silent WAV": (silence(2.0), "silent"),
        "a near-silent WAV": (wav_bytes(tone(1.0, amplitude=2e-4), 16000), "silent"),
    }


@pytest.mark.parametrize("case", [
    "random bytes", "a text file", "a truncated WAV header", "a truncated MP3", "no bytes",
    "a WAV of 0 samples", "a silent WAV", "a near-silent WAV",
])  # fmt: skip
def test_rejections_say_what_is_wrong_and_name_the_file(rejections, case):
    data, expected = rejections[case]
    with pytest.raises(InvalidAudio) as raised:
        decode_audio(data, "upload-17.bin")
    assert "upload-17.bin" in str(raised.value)
    assert expected in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_a_video_without_audio_is_not_audio():
    out = io.BytesIO()
    with av.open(out, mode="w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 40, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(InvalidAudio, match="no audio stream"):
        decode_audio(out.getvalue(), "clip.webm")


def test_max_duration_stops_decoding(speech_wav):
    with pytest.raises(InvalidAudio, match="longer than 1 s"):
        decode_audio(speech_wav.read_bytes(), "owls.wav", max_duration_s=1.0)
    assert len(decode_audio(speech_wav.read_bytes(), "owls.wav", max_duration_s=10.0)) > SAMPLE_RATE


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "webm"])
def test_probe_reads_the_stated_duration(speech_wav, speech_seconds, fmt):
    assert probe_duration_s(encode_as(speech_wav, fmt), f"owls.{fmt}") == pytest.approx(speech_seconds, abs=0.1)


def test_probe_gives_none_when_it_cannot_tell():
    assert probe_duration_s(np.random.default_rng(1).bytes(4000), "noise.bin") is None
    assert probe_duration_s(b"", "empty.wav") is None
