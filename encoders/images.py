"""Turning uploaded image bytes into what CLIP looks at: an upright RGB picture, plus a small JPEG thumbnail.

Decoding happens in-process with Pillow. Only the formats people actually upload are accepted; every
limit (bytes, pixels) is checked before the pixels are decoded, so a hostile upload costs a header read.
Large pictures are decoded at a reduced size (WORKING_SIDE): memory per picture is at most its full
decoded size once (3 bytes a pixel for RGB; a JPEG is decoded at a fraction of that) and a few MB after.
"""

from __future__ import annotations

import io
import math
import struct
import threading
import zlib
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from encoders.cancel import check_cancelled

# Pillow's format name -> the content type we report. MPO is what Pillow calls the JPEG files many phone
# cameras write (a JPEG with extra preview pictures appended); to everyone else it is a JPEG.
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
SUPPORTED = "JPEG, PNG, WebP, GIF, BMP, TIFF"

MAX_BYTES = 20 * 1024 * 1024
# 50 megapixels covers every phone and most DSLR photos; decoded as RGB that is already 150 MB of memory.
MAX_PIXELS = 50_000_000

# Pictures are kept reduced by a whole factor: the largest that leaves the shorter side at least
# WORKING_SIDE, and at least enough for WORKING_PIXELS. CLIP looks at 224 px (of the shorter side) and
# thumbnails at 256 px, so 50 megapixels in full is mostly waste (200 MB: Pillow holds RGB in 4 bytes a
# pixel; every copy on the way to RGB and the thumbnail cost as much again). The original bytes are
# what is stored and served.
WORKING_SIDE = 512
WORKING_PIXELS = 4_000_000  # 16 MB as RGB: what a picture costs while its request runs
# Decoding a large picture in full (formats without scaled decoding: PNG, WebP, GIF, BMP, TIFF) holds
# it whole for a moment; at most this many such decodes run at once in the process, the rest wait.
FULL_DECODE_SLOTS = 2
_full_decodes = threading.BoundedSemaphore(FULL_DECODE_SLOTS)
# Modes whose values can be averaged (not palette indices), which Image.reduce takes; the others are
# converted first: to REDUCIBLE_AS's mode, or a palette picture to RGB (RGBA with transparency).
REDUCIBLE_MODES = {"L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"}
REDUCIBLE_AS = {"1": "L", "I;16": "I", "I;16L": "I", "I;16B": "I", "I;16N": "I", "PA": "RGBA"}

THUMBNAIL_CONTENT_TYPE = "image/jpeg"
THUMBNAIL_QUALITY = 85

# What Pillow raises while decoding broken data: it has no single error class, and a corrupt chunk can
# surface from its parsers (SyntaxError, struct.error), from zlib, or as OSError "image file is truncated".
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


class InvalidImage(ValueError):
    """The upload is not an image this server can use (the API answers 400 with the message)."""


class ImageTooLarge(InvalidImage):
    """The upload is over the byte or pixel limit (the API answers 413 with the message)."""


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, upright (EXIF orientation applied), first frame only; reduced (WORKING_SIDE)
    format: str  # "JPEG", "PNG", "WEBP", "GIF", "BMP" or "TIFF"
    width: int  # of the picture as shown (after rotation), before any reduction
    height: int
    content_type: str  # "image/jpeg", ...


def decode_image(
    data: bytes, filename: str = "", max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> DecodedImage:
    """Decode a JPEG, PNG, WebP, GIF, BMP or TIFF upload to an upright RGB image.

    Animated GIF and WebP give their first frame. Raises ImageTooLarge when the bytes are over
    `max_bytes` or the header states more than `max_pixels` pixels (a decompression bomb: a few KB that
    would decode to gigabytes), and InvalidImage when the bytes are not an image, are in another format,
    or are corrupt or truncated.
    """
    name = filename or "upload"
    if not data:
        raise InvalidImage(f"{name}: the file is empty")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{name}: the file is {len(data)} bytes, over the limit of {max_bytes} bytes")
    try:
        # Image.open reads only the header; the pixels are decoded by load() below, after the checks.
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as error:
        raise InvalidImage(f"{name}: not an image (or not in a format this server reads)") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow refuses on its own at twice its global MAX_IMAGE_PIXELS (and warns above it, which is
        # an exception if the process turned warnings into errors). We do not touch that global: other
        # code in the process may rely on it; our own limit is the explicit check below.
        raise ImageTooLarge(f"{name}: the image has too many pixels ({error})") from error
    except DECODE_ERRORS as error:
        raise InvalidImage(f"{name}: corrupt or truncated image ({error})") from error

    with image:
        if image.format not in CONTENT_TYPES:
            raise InvalidImage(f"{name}: unsupported image format {image.format}; supported: {SUPPORTED}")
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"{name}: the image is {width}x{height} = {width * height} pixels, "
                f"over the limit of {max_pixels} pixels"
            )
        large = width * height > WORKING_PIXELS and image.format not in ("JPEG", "MPO")
        try:
            with _full_decodes if large else nullcontext():
                check_cancelled()  # decoding 50 megapixels takes a while: not for a client that left
                # The file is positioned on frame 0, so for animated GIF/WebP (and multi-page TIFF) this
                # decodes the first frame only. Pillow's LOAD_TRUNCATED_IMAGES stays off: a cut-off
                # upload must fail here rather than be indexed with its missing part filled in grey.
                working = decode_reduced(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageTooLarge(f"{name}: the image has too many pixels ({error})") from error
        except DECODE_ERRORS as error:
            raise InvalidImage(f"{name}: corrupt or truncated image ({error})") from error
        if quarter_turned(image):  # read after decoding: for a PNG, reading EXIF decodes the pixels
            width, height = height, width  # the size as the picture is shown, like the pixels below
        fmt = "JPEG" if image.format == "MPO" else image.format
        rgb = to_rgb(upright(working), name)
    return DecodedImage(image=rgb, format=fmt, width=width, height=height, content_type=CONTENT_TYPES[fmt])


def reduction(width: int, height: int) -> int:
    """The whole factor to reduce a picture by (1: keep it as it is): the largest that keeps the shorter
    side at WORKING_SIDE or more, or more if that leaves over WORKING_PIXELS (a long panorama)."""
    by_side = min(width, height) // WORKING_SIDE
    by_pixels = math.ceil(math.sqrt(width * height / WORKING_PIXELS))
    return max(1, by_side, by_pixels)


def decode_reduced(image: Image.Image) -> Image.Image:
    """The opened image's pixels, reduced by a whole factor (reduction) as early as the format allows.

    A JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (draft), so it never exists in full.
    Other formats are decoded in full once and reduced at once (box filter), before anything copies
    them: then turning it upright, converting it to RGB and thumbnailing work on the small copy.
    """
    factor = reduction(*image.size)
    if factor > 1 and image.format in ("JPEG", "MPO"):
        image.draft(image.mode, (image.width // factor, image.height // factor))
    image.load()
    factor = reduction(*image.size)
    if factor == 1:
        return image
    if image.mode not in REDUCIBLE_MODES:
        # Bilevel, palette and 16-bit pictures: into a mode Pillow reduces, at full size (P into RGB(A)
        # costs 3-4 bytes a pixel; the others at most 4).
        image = image.convert(REDUCIBLE_AS.get(image.mode, "RGBA" if "transparency" in image.info else "RGB"))
    return image.reduce(factor)


def quarter_turned(image: Image.Image) -> bool:
    """Whether the EXIF orientation turns the picture by a quarter (its width and height swap)."""
    try:
        return image.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8)
    except DECODE_ERRORS:
        return False  # upright() keeps a picture with a malformed EXIF block unrotated too


def upright(image: Image.Image) -> Image.Image:
    """The image turned the way the camera's EXIF orientation tag says it was held.

    Phones store pixels as the sensor read them and record the rotation separately; without this a
    portrait photo is embedded (and thumbnailed) lying on its side.
    """
    try:
        return ImageOps.exif_transpose(image)
    except DECODE_ERRORS:
        # A malformed EXIF block does not spoil the pixels: keep the image, just unrotated. (A copy,
        # like exif_transpose returns: decode_image closes the opened file, and with it its pixels.)
        return image.copy()


def to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Any Pillow mode as 8-bit RGB; transparent areas become white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale (PNG, TIFF): Pillow's own conversion clips every value above 255 to white,
        # so scale the 0..65535 range down to 0..255 instead.
        grey = np.asarray(image).astype(np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        # Dropping the alpha channel would leave whatever colour the transparent pixels happen to hold,
        # which is usually black: a logo on a transparent background would become a logo on black, and
        # be embedded as a dark image. White is what a viewer shows behind it on a page.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    try:
        # Covers 1, L, P, CMYK, YCbCr, F (clipped to 0..255). convert() gives a new image even
        # for the modes it maps directly, so nothing returned shares the file decode_image closes.
        return image.convert("RGB")
    except ValueError:
        try:
            return image.convert("L").convert("RGB")
        except ValueError as error:
            raise InvalidImage(f"{name}: unsupported colour mode {image.mode}") from error


def thumbnail(image: Image.Image, max_side: int = 256) -> bytes:
    """A JPEG of the image with its longest side at most `max_side` pixels (aspect kept, never enlarged)."""
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, not {max_side}")
    small = image.convert("RGB") if image.mode != "RGB" else image.copy()  # thumbnail() works in place
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()


# The first bytes of each supported format. RIFF is shared by WebP and WAV, so WebP is told by its
# form type at bytes 8-12.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def looks_like_image(data: bytes) -> bool:
    """Whether the bytes start like one of the supported image formats (a cheap sniff, no decoding):
    lets one upload field take an image or an audio clip."""
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
