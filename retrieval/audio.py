"""Recordings in, searchable transcript windows out; and audio clips as queries.

A recording is decoded, transcribed into timestamped segments, and the segments are grouped into
overlapping windows of about 30 s. Each window is embedded as text, so a text query (or the
transcript of a spoken query) finds the moment in the recording. The original file goes to the blob
store, under the recording id, so a player can fetch it and seek.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Callable, Sequence

import numpy as np

from encoders.audio import SAMPLE_RATE, decode_audio, probe_duration_s
from encoders.whisper import Segment, Transcriber, Transcript
from retrieval.blobs import BlobOwner, blob_key
from retrieval.errors import InvalidInput
from retrieval.ingest import (
    Ingestor,
    check_collection_name,
    check_metadata,
    content_hash,
    item_id,
)
from retrieval.timing import StageTimer
from retrieval.types import IngestResult, Item
from retrieval.writes import BlobWrite

Progress = Callable[[float, str], None]


class TooLarge(InvalidInput):
    """An upload over the configured size or duration limit (HTTP 413)."""


@dataclass(frozen=True)
class AudioConfig:
    window_s: float = 30.0  # long enough to hold a thought, short enough to point at a moment
    overlap_s: float = 5.0  # a sentence cut by a window boundary is whole in one of the two windows
    max_bytes: int = 200 * 1024 * 1024
    max_duration_s: float = 4 * 3600
    job_threshold_s: float = 60.0  # longer uploads are processed as background jobs


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float
    text: str


@dataclass
class Recording:
    """One decoded upload, checked against the limits, ready to transcribe."""

    filename: str
    data: bytes
    samples: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def recording_id(self, collection: str) -> str:
        """The same file uploaded again to a collection gets the same id, so its windows are
        replaced, not doubled. The collection is part of it so that each collection owns its copy
        of the original (deleting one never removes another's)."""
        digest = hashlib.sha256(collection.encode() + b"\0" + self.data).hexdigest()
        return "rec-" + digest[:24]


def group_windows(segments: Sequence[Segment], window_s: float, overlap_s: float) -> list[Window]:
    """Consecutive segments grouped into windows of at most `window_s` seconds (a longer segment
    gets a window of its own); each window starts with the first segment that begins within
    `overlap_s` of the previous window's end."""
    spoken = [segment for segment in segments if segment.text.strip()]
    windows: list[Window] = []
    first = 0
    while first < len(spoken):
        last = first
        while last + 1 < len(spoken) and spoken[last + 1].end - spoken[first].start <= window_s:
            last += 1
        part = spoken[first : last + 1]
        windows.append(Window(part[0].start, part[-1].end, " ".join(s.text.strip() for s in part)))
        if last + 1 >= len(spoken):
            break
        overlap_from = part[-1].end - overlap_s
        next_first = next((i for i in range(first + 1, last + 1) if spoken[i].start >= overlap_from), last + 1)
        first = max(next_first, first + 1)
    return windows


class AudioLibrary:
    def __init__(self, transcriber: Transcriber, ingestor: Ingestor, config: AudioConfig) -> None:
        self.transcriber = transcriber
        self.ingestor = ingestor
        self.config = config

    def decode(self, filename: str, data: bytes, metadata: dict[str, Any] | None = None) -> Recording:
        """Check the limits and decode; every upload is decoded before anything is stored."""
        if len(data) > self.config.max_bytes:
            raise TooLarge(f"{filename}: {len(data)} bytes is over the upload limit of {self.config.max_bytes} bytes (PRISM_AUDIO_MAX_BYTES)")
        stated = probe_duration_s(data, filename)  # refuse an over-long file before decoding it
        if stated is not None and stated > self.config.max_duration_s:
            raise TooLarge(f"{filename}: {stated:.0f} s is over the duration limit of {self.config.max_duration_s:.0f} s (PRISM_AUDIO_MAX_SECONDS)")
        metadata = check_metadata(metadata or {}, f"{filename}: metadata")
        # Decoding stops at the limit, for containers that do not state their length (AudioTooLong: 413).
        samples = decode_audio(data, filename, self.config.max_duration_s)
        recording = Recording(filename=filename, data=data, samples=samples, metadata=metadata)
        if recording.duration_s > self.config.max_duration_s:
            raise TooLarge(
                f"{filename}: {recording.duration_s:.0f} s is over the duration limit of {self.config.max_duration_s:.0f} s (PRISM_AUDIO_MAX_SECONDS)"
            )
        return recording

    def ingest(self, collection: str, recordings: Sequence[Recording], language: str | None, report: Progress | None = None) -> IngestResult:
        """Transcribe, embed and store every recording; items appear only once all are done."""
        check_collection_name(collection)
        report = report or (lambda progress, message: None)
        timer = StageTimer()
        items: list[Item] = []
        total_s = sum(r.duration_s for r in recordings) or 1.0
        done_s = 0.0
        for recording in recordings:
            report(0.9 * done_s / total_s, f"transcribing {recording.filename}")
            with timer.stage("transcribe"):
                transcript = self.transcriber.transcribe(recording.samples, language)
            items.extend(self._items(collection, recording, transcript))
            done_s += recording.duration_s
        if not items:
            raise InvalidInput("no speech was recognised in " + ", ".join(r.filename for r in recordings))
        report(0.9, "embedding and storing")
        # The originals are stored in the same write as the windows: a failure removes only those
        # that did not exist before it, so a failed re-upload never takes a good original away.
        originals = [_original(collection, recording) for recording in recordings]
        result = self.ingestor.save(collection, items, timer, originals)
        report(1.0, "done")
        return result

    def _items(self, collection: str, recording: Recording, transcript: Transcript) -> list[Item]:
        windows = group_windows(transcript.segments, self.config.window_s, self.config.overlap_s)
        recording_id = recording.recording_id(collection)
        now = int(time.time() * 1000)
        metadata = {**recording.metadata, "language": transcript.language, "duration_s": round(recording.duration_s, 3)}
        return [
            Item(
                id=item_id(collection, recording_id, position),
                collection=collection,
                modality="audio",
                doc_id=recording_id,
                text=window.text,
                content_hash=content_hash(window.text),
                created_at=now,
                source=recording.filename,
                title=PurePath(recording.filename).stem,
                position=position,
                start_s=window.start_s,
                end_s=window.end_s,
                metadata=metadata,
            )
            for position, window in enumerate(windows)
        ]

    def transcribe_query(self, filename: str, data: bytes, language: str | None = None) -> Transcript:
        recording = self.decode(filename, data)
        transcript = self.transcriber.transcribe(recording.samples, language)
        if not transcript.text.strip():
            raise InvalidInput(f"{filename}: no speech was recognised in the query clip")
        return transcript


def recording_blob_key(collection: str, recording_id: str) -> str:
    return blob_key("recording", collection, recording_id)


def _original(collection: str, recording: Recording) -> BlobWrite:
    recording_id = recording.recording_id(collection)
    owner = BlobOwner("recording", collection, recording_id)
    return BlobWrite(recording_blob_key(collection, recording_id), recording.data, guess_content_type(recording.filename), recording.filename, owner)


AUDIO_CONTENT_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".webm": "audio/webm",
}


def guess_content_type(filename: str) -> str:
    return AUDIO_CONTENT_TYPES.get(PurePath(filename).suffix.lower(), "application/octet-stream")
