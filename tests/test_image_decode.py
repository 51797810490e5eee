"""Decoding image uploads with Pillow: real files in every accepted format, real rejections, thumbnails."""

from __future__ import annotations

import io
import os
import time

import pytest
from PIL import Image, ImageFile

from encoders.images import (
    THUMBNAIL_CONTENT_TYPE,
    DecodedImage,
    ImageTooLarge,
    InvalidImage,
    decode_image,
    thumbnail,
)
from tests.image_files import bilevel_png, encode

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (20, 40, 230)


def quadrants(width: int = 120, height: int = 80) -> Image.Image:
    """An RGB picture whose top-left quarter is red and the rest blue: orientation and size both show."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height // 2))
    return image


def close_to(pixel, colour, tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


# -- accepted formats ---------------------------------------------------------------------------------

FORMATS = {
    "JPEG": ("photo.jpg", "image/jpeg", {"quality": 95}),
    "PNG": ("photo.png", "image/png", {}),
    "WEBP": ("photo.webp", "image/webp", {"quality": 95}),
    "GIF": ("photo.gif", "image/gif", {}),
    "BMP": ("photo.bmp", "image/bmp", {}),
    "TIFF": ("photo.tiff", "image/tiff", {}),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_decodes_to_rgb_with_its_size_and_type(fmt):
    filename, content_type, options = FORMATS[fmt]
    decoded = decode_image(encode(quadrants(120, 80), fmt, **options), filename)
    assert isinstance(decoded, DecodedImage)
    assert decoded.format == fmt and decoded.content_type == content_type
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (120, 80) and (decoded.width, decoded.height) == (120, 80)
    assert close_to(decoded.image.getpixel((10, 10)), RED, tolerance=25)
    assert close_to(decoded.image.getpixel((110, 70)), BLUE, tolerance=25)


def test_decoded_image_outlives_the_upload_bytes():
    # decode_image closes what it opened; the image it returns must still hold its pixels.
    decoded = decode_image(encode(quadrants(), "PNG"), "photo.png")
    assert decoded.image.getpixel((10, 10)) == RED
    assert decoded.image.copy().tobytes() == quadrants().tobytes()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_gives_its_first_frame(fmt):
    frames = [Image.new("RGB", (40, 30), RED), Image.new("RGB", (40, 30), GREEN)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2  # really animated
    decoded = decode_image(data, f"anim.{fmt.lower()}")
    assert decoded.format == fmt and decoded.image.mode == "RGB" and decoded.image.size == (40, 30)
    assert close_to(decoded.image.getpixel((20, 15)), RED, tolerance=20)


def test_exif_orientation_6_turns_the_picture_upright():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned 90 degrees; rotate 90 clockwise to view
    data = encode(quadrants(120, 80), "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(data, "portrait.jpg")
    assert decoded.image.size == (80, 120) and (decoded.width, decoded.height) == (80, 120)
    # Rotated clockwise, the red top-left quarter ends up top-right.
    assert close_to(decoded.image.getpixel((70, 10)), RED, tolerance=25)
    assert close_to(decoded.image.getpixel((10, 10)), BLUE, tolerance=25)


def test_transparent_areas_become_white_not_black():
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # fully transparent black
    image.paste((200, 0, 0, 255), (0, 0, 20, 40))  # an opaque red left half
    decoded = decode_image(encode(image, "PNG"), "logo.png")
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((30, 20)) == (255, 255, 255)
    assert decoded.image.getpixel((10, 20)) == (200, 0, 0)


def test_half_transparent_pixels_blend_with_white():
    image = Image.new("LA", (10, 10), (0, 128))  # black at half opacity
    decoded = decode_image(encode(image, "PNG"), "shadow.png")
    assert close_to(decoded.image.getpixel((5, 5)), (127, 127, 127), tolerance=2)


def test_palette_png_with_transparent_index_becomes_white():
    image = Image.new("P", (20, 20), 0)
    image.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    image.paste(1, (0, 0, 10, 20))
    decoded = decode_image(encode(image, "PNG", transparency=0), "sprite.png")
    assert decoded.image.getpixel((15, 10)) == (255, 255, 255)
    assert decoded.image.getpixel((5, 10)) == (0, 200, 0)


def test_cmyk_jpeg_becomes_rgb():
    image = Image.new("CMYK", (30, 20), (0, 255, 255, 0))  # full magenta + yellow: red
    data = encode(image, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    decoded = decode_image(data, "print.jpg")
    assert decoded.image.mode == "RGB" and decoded.format == "JPEG"
    assert close_to(decoded.image.getpixel((15, 10)), (255, 0, 0), tolerance=20)


def test_palette_png_becomes_rgb():
    image = quadrants(60, 40).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    data = encode(image, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "P"
    decoded = decode_image(data, "icon.png")
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((5, 5)) == RED and decoded.image.getpixel((55, 35)) == BLUE


def test_greyscale_and_16_bit_greyscale_become_rgb_at_the_right_brightness():
    grey = decode_image(encode(Image.new("L", (10, 10), 100), "PNG"), "grey.png")
    assert grey.image.mode == "RGB" and grey.image.getpixel((5, 5)) == (100, 100, 100)
    # 16-bit: 32768 is mid-grey, not the white that clipping to 255 would give.
    deep = Image.new("I;16", (10, 10), 32768)
    decoded = decode_image(encode(deep, "PNG"), "deep.png")
    assert decoded.image.mode == "RGB"
    assert close_to(decoded.image.getpixel((5, 5)), (128, 128, 128), tolerance=1)


# -- rejections ---------------------------------------------------------------------------------------


def rejection(data: bytes, filename: str, error=InvalidImage, **limits) -> str:
    with pytest.raises(error) as caught:
        decode_image(data, filename, **limits)
    message = str(caught.value)
    assert filename in message
    return message


def test_empty_file():
    assert "empty" in rejection(b"", "nothing.png")


def test_random_bytes_are_not_an_image():
    message = rejection(os.urandom(4096), "noise.jpg")
    assert "not an image" in message


def test_a_text_file_is_not_an_image():
    message = rejection(b"Owls hunt small animals at night in the forest.\n" * 20, "notes.png")
    assert "not an image" in message


def test_truncated_jpeg_is_corrupt():
    data = encode(quadrants(400, 300), "JPEG", quality=95)
    message = rejection(data[: len(data) // 2], "half.jpg")
    assert "corrupt or truncated" in message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # never switched on, not even temporarily left on


def test_truncated_png_is_corrupt():
    data = encode(quadrants(400, 300), "PNG")
    assert "corrupt or truncated" in rejection(data[: len(data) // 2], "half.png")


def test_png_with_a_corrupted_idat_is_corrupt():
    data = bytearray(encode(Image.effect_noise((200, 200), 60).convert("RGB"), "PNG", compress_level=9))
    start = data.index(b"IDAT") + 4
    for offset in range(start + 20, start + 60):  # flip the bytes of the compressed pixels
        data[offset] ^= 0xFF
    assert "corrupt or truncated" in rejection(bytes(data), "flipped.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_over_the_byte_limit_is_too_large():
    data = encode(quadrants(), "PNG")
    message = rejection(data, "big.png", ImageTooLarge, max_bytes=len(data) - 1)
    assert str(len(data) - 1) in message
    assert decode_image(data, "big.png", max_bytes=len(data)).width == 120  # the limit is inclusive


def test_too_large_is_an_invalid_image_too():
    # The API answers 413 for ImageTooLarge and 400 for other InvalidImage; one except clause catches both.
    assert issubclass(ImageTooLarge, InvalidImage) and issubclass(InvalidImage, ValueError)


def test_over_the_pixel_limit_is_too_large():
    message = rejection(encode(quadrants(120, 80), "PNG"), "wide.png", ImageTooLarge, max_pixels=9599)
    assert "9599" in message and "120x80" in message
    assert decode_image(encode(quadrants(120, 80), "PNG"), "wide.png", max_pixels=9600).width == 120


@pytest.mark.parametrize("side", [8000, 20000])
def test_decompression_bomb_is_refused_before_decoding(side):
    # 8000x8000 (64 MP) passes Pillow's own check but not our 50 MP default; 20000x20000 (400 MP) trips
    # Pillow's DecompressionBombError already in Image.open. Either way: ImageTooLarge, quickly.
    data = bilevel_png(side, side)
    assert len(data) < 100_000  # small on disk
    started = time.perf_counter()
    message = rejection(data, "bomb.png", ImageTooLarge)
    assert time.perf_counter() - started < 0.5  # decoding 64-400 MP would take seconds and gigabytes
    assert "pixels" in message
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's global left as it was


def test_bomb_header_is_judged_before_any_pixel_is_read():
    # The header claims 9000x9000 (81 MP: over our limit, under Pillow's own warning level) but the pixel
    # data is garbage: had decode_image loaded pixels first, this would be "corrupt or truncated".
    data = bilevel_png(9000, 9000, idat=b"not zlib at all")
    message = rejection(data, "bomb.png", ImageTooLarge)
    assert "9000x9000" in message and "50000000" in message
    # And with a limit that allows the size, the same bytes are found corrupt: the garbage is real.
    assert "corrupt or truncated" in rejection(data, "bomb.png", max_pixels=100_000_000)


@pytest.mark.parametrize("fmt, filename", [("ICO", "favicon.ico"), ("PPM", "scan.ppm")])
def test_other_formats_pillow_reads_are_unsupported(fmt, filename):
    data = encode(quadrants(32, 32), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow itself would read it
    message = rejection(data, filename)
    assert f"unsupported image format {fmt}" in message
    assert "JPEG" in message and "PNG" in message and "WebP" in message  # says what is supported


def test_without_a_filename_the_message_says_upload():
    with pytest.raises(InvalidImage, match="^upload: not an image"):
        decode_image(b"plain text, no picture")


# -- thumbnails ---------------------------------------------------------------------------------------


def test_thumbnail_is_a_jpeg_with_longest_side_256_and_the_same_aspect():
    data = thumbnail(quadrants(1200, 800))
    assert THUMBNAIL_CONTENT_TYPE == "image/jpeg"
    assert data[:3] == b"\xff\xd8\xff"
    small = Image.open(io.BytesIO(data))
    assert small.format == "JPEG" and small.mode == "RGB"
    assert small.size == (256, 171)  # 800 * 256 / 1200 = 170.7
    assert close_to(small.getpixel((10, 10)), RED, tolerance=25)


def test_thumbnail_of_a_portrait_keeps_height_as_the_long_side():
    small = Image.open(io.BytesIO(thumbnail(quadrants(300, 900), max_side=100)))
    assert small.size == (33, 100)


def test_thumbnail_never_enlarges_a_small_image():
    small = Image.open(io.BytesIO(thumbnail(quadrants(100, 50))))
    assert small.size == (100, 50)


def test_thumbnail_leaves_the_image_alone():
    image = quadrants(1200, 800)
    thumbnail(image)
    assert image.size == (1200, 800)


def test_thumbnail_of_a_decoded_upload():
    decoded = decode_image(encode(quadrants(1024, 512), "WEBP"), "wide.webp")
    assert Image.open(io.BytesIO(thumbnail(decoded.image))).size == (256, 128)
