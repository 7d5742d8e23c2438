"""Image bytes -> 8-bit RGB pixels as displayed, or a clear ImageError.

Everything that can go wrong with an untrusted file is settled here, before any model sees it: the declared
size is checked against the pixel budget BEFORE the pixels are decoded (so a 30000x30000 PNG of a few bytes
never allocates), EXIF orientation is applied so that every coordinate downstream is in displayed pixels,
and every pixel mode Pillow can produce is brought to plain 8-bit RGB.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from immray.faces.errors import ImageError

pillow_heif.register_heif_opener()
Image.init()

# Only photo formats are opened. Pillow's other plugins (EPS runs Ghostscript, PSD, FITS, ...) are attack
# surface without use for a photo library, so they are recognised only to name them in the error.
_PHOTO_FORMATS = tuple(
    fmt
    for fmt in ("JPEG", "MPO", "PNG", "HEIF", "AVIF", "WEBP", "GIF", "TIFF", "BMP", "PPM")
    if fmt in Image.OPEN
)
# Multi-picture JPEGs (most phone cameras) are JPEG files; callers should see them as such.
_MIME_OVERRIDES = {"MPO": "image/jpeg", "HEIF": "image/heif", "AVIF": "image/avif"}
# Errors Pillow and its plugins raise on corrupt data, besides OSError.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    zlib.error,
    RuntimeError,
)
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}

# Pillow warns (and above twice its limit refuses) on large declared sizes. The budget is ours to enforce
# with a clear error, so the warning is noise; Pillow's hard refusal is still caught below.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image as displayed: ``image`` is an 8-bit RGB Pillow image after EXIF rotation."""

    image: Image.Image
    content_type: str

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    @cached_property
    def pixels(self) -> np.ndarray:
        """(height, width, 3) uint8, C-contiguous: what dlib takes."""
        return np.asarray(self.image)


def decode_image(data: bytes, *, max_pixels: int = 100_000_000) -> DecodedImage:
    """Decode ``data`` into displayed 8-bit RGB, refusing anything over ``max_pixels`` before decoding.

    Pillow's own hard limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``, about 179 Mpx) still applies on top of
    ``max_pixels``. Animated images give their first frame.
    """
    if not data:
        raise ImageError("InvalidImage", "empty file")
    image = _open(data)
    fmt = image.format or "image"
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            "ImageTooLarge",
            f"{fmt} image is {width}x{height} ({width * height / 1e6:.1f} Mpx), over the limit of "
            f"{max_pixels / 1e6:.1f} Mpx",
        )
    content_type = _MIME_OVERRIDES.get(fmt) or image.get_format_mimetype() or "application/octet-stream"
    _load_first_frame(image, fmt)
    _apply_exif_orientation(image)
    return DecodedImage(image=_to_rgb8(image), content_type=content_type)


def _open(data: bytes) -> Image.Image:
    """Read the header only: format, mode and declared size; no pixels yet."""
    try:
        return Image.open(io.BytesIO(data), formats=_PHOTO_FORMATS)
    except Image.DecompressionBombError as exc:
        detail = str(exc).split(", could be")[0]  # "Image size (N pixels) exceeds limit of M pixels"
        raise ImageError("ImageTooLarge", f"refused as a decompression bomb: {detail}") from None
    except UnidentifiedImageError:
        other = _recognised_other_format(data)
        if other:
            raise ImageError("UnsupportedImage", f"{other} files are not supported") from None
        raise ImageError("InvalidImage", "not an image (unrecognised file format)") from None
    except _DECODE_ERRORS as exc:
        if "truncated" in str(exc).lower():
            raise ImageError("InvalidImage", "truncated image header") from None
        raise ImageError("InvalidImage", f"corrupt image header: {exc}") from None


def _recognised_other_format(data: bytes) -> str | None:
    """The name of a format Pillow knows but we do not open, for a helpful message."""
    prefix = data[:16]
    for fmt, (_factory, accept) in Image.OPEN.items():
        if fmt in _PHOTO_FORMATS or accept is None:
            continue
        try:
            if accept(prefix):
                return fmt
        except Exception:  # noqa: BLE001 - a plugin's sniffing must never break error reporting
            continue
    return None


def _load_first_frame(image: Image.Image, fmt: str) -> None:
    try:
        image.load()  # Image.open leaves animated images on their first frame
    except Image.DecompressionBombError as exc:
        raise ImageError("ImageTooLarge", f"decompression bomb: {exc}") from None
    except MemoryError:
        raise ImageError("ImageTooLarge", f"{fmt} image does not fit in memory") from None
    except _DECODE_ERRORS as exc:
        if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
            raise ImageError("InvalidImage", f"truncated {fmt}") from None
        raise ImageError("InvalidImage", f"corrupt {fmt} data: {exc}") from None


def _apply_exif_orientation(image: Image.Image) -> None:
    """Rotate to the displayed orientation; a malformed EXIF block leaves the image as stored."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except _DECODE_ERRORS + (KeyError, TypeError):
        pass


def _to_rgb8(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _wide_grey_to_rgb8(image)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageError("UnsupportedImage", f"{mode} pixels cannot be converted to RGB: {exc}") from None


def _wide_grey_to_rgb8(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale scaled (not clipped) to 8 bits: Pillow's own convert saturates them."""
    values = np.asarray(image).astype(np.float32)
    if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and values.max(initial=0) > 255):
        values /= 257.0
    elif image.mode == "F" and values.max(initial=0) <= 1.0:
        values *= 255.0
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))
