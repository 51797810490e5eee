"""Memory per request is bounded: decoding a long recording or a huge picture holds about what the
models need, never several copies of it.

Each measurement runs in a fresh Python process: the growth of its peak resident memory across one
decode. The peak is the kernel's VmHWM (/proc/self/status), which starts afresh with the new program;
getrusage's ru_maxrss would not do here, as Linux carries it over from the forking process (pytest,
with its models) across exec. A bound on memory is not a timing: it holds on any machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.image_files import encode

MB = 1024 * 1024


def silent_flac(path: Path, seconds: int, rate: int = 16000, block_s: int = 60) -> Path:
    """A FLAC of digital silence, written a block at a time (an hour is some 650 KB)."""
    with av.open(str(path), mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        stream.codec_context.format = "s16"
        block = np.zeros((1, rate * block_s), dtype=np.int16)
        for index in range(seconds // block_s):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, index * block.shape[1], Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def peak_growth(setup: str, measured: str) -> dict:
    """Run `setup`, then `measured` (which sets `result`) in a fresh interpreter; the growth of peak
    RSS in bytes across `measured`, and `result`."""
    script = textwrap.dedent(
        """
        import json

        def peak_bytes():
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
        {setup}
        before = peak_bytes()
        {measured}
        print(json.dumps({{"growth": peak_bytes() - before, "result": result}}))
        """
    ).format(setup=textwrap.indent(textwrap.dedent(setup), ""), measured=textwrap.dedent(measured))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def silent_hour(tmp_path_factory) -> Path:
    return silent_flac(tmp_path_factory.mktemp("silence") / "silent-hour.flac", 3600)


def test_an_hour_of_silence_is_refused_without_holding_its_samples(silent_hour):
    # An hour at 16 kHz is 57.6 million samples: 230 MB as float32. Collecting, concatenating and
    # squaring them in float64 peaked near 900 MB; measuring level and length as a stream needs
    # none of them.
    measured = peak_growth(
        f"""
        from encoders.audio import InvalidAudio, decode_audio
        data = open({str(silent_hour)!r}, "rb").read()
        """,
        """
        try:
            decode_audio(data, "silent-hour.flac")
            result = "accepted"
        except InvalidAudio as error:
            result = str(error)
        """,
    )
    assert "silent" in measured["result"]
    assert measured["growth"] < 60 * MB, f"decoding grew the peak by {measured['growth'] / MB:.0f} MB"


def test_a_silent_hour_is_a_400_from_the_server(prism_url, silent_hour, collection):
    files = {"files": ("silent-hour.flac", silent_hour.read_bytes(), "audio/flac")}
    response = httpx.post(f"{prism_url}/v1/audio", data={"collection": collection}, files=files, timeout=300)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_audio" and "silent" in error["message"]


def tone_flac(path: Path, seconds: int, rate: int = 16000) -> Path:
    """A FLAC of a 440 Hz tone, written a minute at a time."""
    with av.open(str(path), mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        stream.codec_context.format = "s16"
        block = (8000 * np.sin(2 * np.pi * 440 * np.arange(rate * 60) / rate)).astype(np.int16)[None, :]
        for index in range(seconds // 60):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, index * block.shape[1], Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def without_stated_length(flac: bytes) -> bytes:
    """The FLAC with the total sample count of its STREAMINFO set to 0, which means "unknown": its
    length can only be learnt by decoding it."""
    data = bytearray(flac)
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first, its body from byte 8
    data[8 + 13] &= 0xF0  # the count is the low 4 bits of body byte 13 and bytes 14-17
    data[8 + 14 : 8 + 18] = bytes(4)
    return bytes(data)


def test_decoded_audio_is_held_once(tmp_path):
    # A ten-minute tone decodes to 9.6 million samples: 38 MB as float32, the array Whisper reads. The
    # decoder holds that and little more (it collected and concatenated chunks: twice that, plus
    # 8 bytes a sample for the level check).
    seconds, rate = 600, 16000
    path = tone_flac(tmp_path / "tone.flac", seconds, rate)
    measured = peak_growth(
        f"""
        from encoders.audio import decode_audio
        data = open({str(path)!r}, "rb").read()
        """,
        """
        samples = decode_audio(data, "tone.flac")
        result = [len(samples), float(max(samples.max(), -samples.min()))]  # no copy of the array
        """,
    )
    length, peak = measured["result"]
    assert length == seconds * rate and 0.2 < peak < 0.3
    array = length * 4
    assert measured["growth"] < array + 20 * MB, f"decoding grew the peak by {measured['growth'] / MB:.0f} MB for a {array / MB:.0f} MB array"


def test_a_recording_over_the_limit_that_hides_its_length_is_refused_holding_nothing(tmp_path):
    # Ten minutes against a limit of one, and no length in the header for the early check: decoding
    # stops at the limit, holding no samples (it used to decode everything, then compare).
    path = tmp_path / "unstated.flac"
    path.write_bytes(without_stated_length(tone_flac(tmp_path / "tone.flac", 600).read_bytes()))
    measured = peak_growth(
        f"""
        from encoders.audio import InvalidAudio, probe_duration_s
        from retrieval.audio import AudioConfig, AudioLibrary
        library = AudioLibrary(None, None, AudioConfig(max_duration_s=60))
        data = open({str(path)!r}, "rb").read()
        assert probe_duration_s(data) is None
        """,
        """
        try:
            library.decode("unstated.flac", data)
            result = "accepted"
        except InvalidAudio as error:
            result = [type(error).__name__, str(error)]
        """,
    )
    kind, message = measured["result"]
    assert kind == "AudioTooLong" and "longer than 60 s" in message
    assert measured["growth"] < 10 * MB, f"refusing it grew the peak by {measured['growth'] / MB:.0f} MB"


@pytest.mark.parametrize("fmt,mode,bound_mb", [("PNG", "RGB", 240), ("PNG", "L", 100), ("JPEG", "RGB", 40)])
def test_a_49_megapixel_picture_is_decoded_at_the_size_clip_and_the_thumbnail_need(tmp_path, fmt, mode, bound_mb):
    # 7000 x 7000 is 196 MB of pixels as Pillow holds RGB (4 bytes a pixel), 49 MB as greyscale. A PNG
    # cannot be decoded at a smaller scale, so it is held once and reduced at once; a JPEG is decoded at
    # a fraction of its size (libjpeg's scaling). They used to be held several times over (decoded,
    # turned upright, converted to RGB, thumbnailed): 380 MB for the RGB pictures, more for greyscale.
    image = Image.new("RGB", (7000, 7000), (30, 120, 200))
    image.paste((250, 200, 40), (0, 0, 3500, 3500))
    path = tmp_path / f"huge.{fmt.lower()}"
    path.write_bytes(encode(image.convert(mode), fmt))
    expected = [np.array(image.convert(mode).convert("RGB").getpixel(xy)) for xy in ((10, 10), (6990, 10))]
    del image
    measured = peak_growth(
        f"""
        from encoders.images import decode_image, thumbnail
        data = open({str(path)!r}, "rb").read()
        """,
        """
        decoded = decode_image(data, "huge")
        small = thumbnail(decoded.image)
        result = [decoded.width, decoded.height, *decoded.image.size, decoded.image.getpixel((10, 10)), decoded.image.getpixel((decoded.image.width - 10, 10))]
        """,
    )
    width, height, kept_width, kept_height, top_left, top_right = measured["result"]
    assert (width, height) == (7000, 7000)  # the picture's own size is what is reported
    assert 512 <= min(kept_width, kept_height) < 1024  # what CLIP (224 px) and a thumbnail (256 px) need
    assert np.abs(top_left - expected[0]).max() <= 3  # JPEG is lossy: about the colours
    assert np.abs(top_right - expected[1]).max() <= 3
    assert measured["growth"] < bound_mb * MB, f"decoding grew the peak by {measured['growth'] / MB:.0f} MB"
