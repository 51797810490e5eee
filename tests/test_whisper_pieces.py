"""Long recordings are transcribed a piece at a time, cut at quiet moments: Whisper's features for an
hour of audio would take gigabytes at once (faster-whisper: some 2.3 GB per hour), a piece's take a
bounded amount. Timestamps still count from the start of the recording, and work stops between
pieces and segments once it is cancelled. Real tiny.en weights, real espeak-ng speech.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from encoders.audio import SAMPLE_RATE, decode_audio
from encoders.cancel import CancelToken, Cancelled, cancellation
from encoders.whisper import FALLBACK_WHISPER_MODEL, WhisperConfig, create_transcriber, piece_bounds, prism_cache_dir
from tests.audio_files import spoken_recording

SENTENCES = [
    "Owls hunt small animals at night in the forest.",
    "The train to Paris leaves from platform seven.",
    "Green tea is brewed from young leaves.",
]
ROBUST = [{"hunt", "night", "forest"}, {"train", "paris", "platform"}, {"tea", "leaves"}]


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    data, spans = spoken_recording(SENTENCES, 2.0, tmp_path_factory.mktemp("pieces"))
    return decode_audio(data, "three.wav"), spans


@pytest.fixture(scope="module", params=["faster-whisper", "openai-whisper"])
def transcriber(request, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRISM_CACHE_DIR", str(tmp_path_factory.mktemp("prism-cache")))
        prism_cache_dir()
        # Pieces of at most 6 s: each sentence (about 3 s, then 2 s of pause) gets a piece of its own.
        yield create_transcriber(WhisperConfig(backend=request.param, model=FALLBACK_WHISPER_MODEL, piece_s=6.0))


def test_pieces_are_cut_at_quiet_moments_and_cover_everything():
    rate = SAMPLE_RATE
    loud = 0.5 * np.sin(2 * np.pi * 300 * np.arange(10 * rate) / rate).astype(np.float32)
    loud[int(7.2 * rate) : int(7.6 * rate)] = 0.0  # a pause shortly before the 8 s mark
    bounds = piece_bounds(loud, piece_s=8.0, search_s=2.0)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(loud)
    assert all(end == next_start for (_, end), (next_start, _) in zip(bounds, bounds[1:]))
    cut = bounds[0][1] / rate
    assert 7.2 <= cut <= 7.6, cut
    assert piece_bounds(loud[: 5 * rate], piece_s=8.0, search_s=2.0) == [(0, 5 * rate)]


def test_a_recording_longer_than_a_piece_keeps_its_words_and_timestamps(transcriber, recording):
    samples, spans = recording
    transcript = transcriber.transcribe(samples)
    assert transcript.duration_s == pytest.approx(len(samples) / SAMPLE_RATE)
    for robust, (start, end) in zip(ROBUST, spans):
        heard = " ".join(s.text for s in transcript.segments if s.start < end + 1.0 and s.end > start - 1.0)
        assert robust <= words(heard), (robust, heard, transcript.segments)
    starts = [segment.start for segment in transcript.segments]
    assert starts == sorted(starts) and transcript.segments[-1].start > spans[1][1]  # counted from the start
    assert transcript.language == "en"


def test_cancelled_transcription_stops(transcriber, recording):
    samples, _ = recording
    token = CancelToken()
    token.cancel("the client went away")
    with cancellation(token), pytest.raises(Cancelled, match="the client went away"):
        transcriber.transcribe(samples)
