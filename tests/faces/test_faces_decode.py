"""Decoding untrusted bytes: every bad input gets its own clear ImageError, every odd-but-real image works."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from immray.faces import ImageError, decode_image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG of a few dozen bytes that declares width x height RGB pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def expect_error(data: bytes, code: str, *fragments: str, **kwargs) -> ImageError:
    with pytest.raises(ImageError) as caught:
        decode_image(data, **kwargs)
    error = caught.value
    assert error.code == code, error.reason
    for fragment in fragments:
        assert fragment in str(error)
    assert error.reason == f"[{code}] {error}"
    return error


def test_empty_file():
    expect_error(b"", "InvalidImage", "empty file")


def test_text_file_is_not_an_image():
    expect_error(b"name,identity\nalice,1\n" * 20, "InvalidImage", "not an image")


def test_truncated_jpeg(group_bytes):
    expect_error(group_bytes[: len(group_bytes) // 2], "InvalidImage", "truncated JPEG")
    expect_error(group_bytes[:300], "InvalidImage", "truncated image header")


def test_corrupt_png_data(portrait_bytes):
    damaged = bytearray(portrait_bytes)
    idat = damaged.index(b"IDAT")
    damaged[idat + 40 : idat + 60] = bytes(20)  # breaks the chunk's CRC and its deflate stream
    expect_error(bytes(damaged), "InvalidImage", "PNG")


def test_formats_outside_the_photo_whitelist_are_named():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    expect_error(eps, "UnsupportedImage", "EPS")


def test_png_bomb_is_refused_from_its_header():
    bomb = png_declaring(30000, 30000)
    assert len(bomb) < 100
    expect_error(bomb, "ImageTooLarge", "decompression bomb")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest resets our filter
def test_declared_size_over_the_budget_is_refused_before_decoding():
    # 120 Mpx: under Pillow's own hard limit, over immray's default budget of 100 Mpx
    error = expect_error(png_declaring(12000, 10000), "ImageTooLarge", "12000x10000", "100.0 Mpx")
    assert "120.0 Mpx" in str(error)


def test_budget_is_configurable(astronaut_bytes):
    expect_error(astronaut_bytes, "ImageTooLarge", "512x512", max_pixels=100_000)
    assert decode_image(astronaut_bytes, max_pixels=512 * 512).width == 512


def test_rgb_png(astronaut_bytes):
    decoded = decode_image(astronaut_bytes)
    assert (decoded.width, decoded.height, decoded.content_type) == (512, 512, "image/png")
    assert decoded.pixels.shape == (512, 512, 3) and decoded.pixels.dtype == np.uint8


def test_exif_orientation_is_applied(astronaut_bytes):
    upright = Image.open(io.BytesIO(astronaut_bytes)).crop((0, 0, 512, 300))  # landscape, 512x300
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes: 300x512
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = decode_image(encode(stored, "PNG", exif=exif.tobytes()))
    assert (decoded.width, decoded.height) == (512, 300)
    assert np.array_equal(decoded.pixels, np.asarray(upright))


def test_cmyk_jpeg_becomes_rgb(astronaut_bytes):
    rgb = Image.open(io.BytesIO(astronaut_bytes)).convert("RGB")
    data = encode(rgb.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    decoded = decode_image(data)
    assert decoded.content_type == "image/jpeg"
    difference = np.abs(decoded.pixels.astype(int) - np.asarray(rgb).astype(int))
    assert difference.mean() < 4


def test_16_bit_greyscale_png_is_scaled_not_clipped(astronaut_bytes):
    grey8 = np.asarray(Image.open(io.BytesIO(astronaut_bytes)).convert("L"))
    grey16 = Image.fromarray(grey8.astype(np.uint16) * 257)  # full 16-bit range
    data = encode(grey16, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    decoded = decode_image(data)
    assert np.array_equal(decoded.pixels, np.repeat(grey8[:, :, None], 3, axis=2))


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    pixels = decode_image(encode(image, "PNG")).pixels
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[4, 4]) == (255, 0, 0)


def test_palette_and_bilevel_images_become_rgb(astronaut_bytes):
    photo = Image.open(io.BytesIO(astronaut_bytes))
    for converted in (photo.convert("P"), photo.convert("1"), photo.convert("L")):
        decoded = decode_image(encode(converted, "PNG"))
        assert decoded.pixels.shape == (512, 512, 3)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((200, 0, 0), (0, 0, 200))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    decoded = decode_image(data)
    assert decoded.content_type == "image/gif"
    assert tuple(decoded.pixels[16, 16]) == (200, 0, 0)


def test_heic(astronaut_bytes):
    photo = Image.open(io.BytesIO(astronaut_bytes)).convert("RGB")
    buffer = io.BytesIO()
    pillow_heif.from_pillow(photo).save(buffer, quality=90)
    decoded = decode_image(buffer.getvalue())
    assert (decoded.width, decoded.height, decoded.content_type) == (512, 512, "image/heif")
    assert np.abs(decoded.pixels.astype(int) - np.asarray(photo).astype(int)).mean() < 6
