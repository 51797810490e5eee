"""Image files for tests, written with Pillow or byte by byte."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bilevel_png(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A 1-bit greyscale PNG written by hand; all black unless `idat` replaces the compressed pixels.

    All black compresses about 1000:1, so a 20000x20000 image (400 megapixels) is some 50 KB on disk.
    """
    if idat is None:
        row = b"\x00" * (1 + (width + 7) // 8)  # filter byte 0, then the packed bits
        packer = zlib.compressobj(9)
        idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    chunks = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks
