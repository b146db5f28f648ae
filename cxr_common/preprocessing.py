"""Decode an X-ray, make it grayscale and square, and scale it for the model.

Pipeline (the published experiment's, plus what real uploads need):
  bytes/path -> decode (JPEG at a reduced DCT scale when large) -> EXIF orientation
  -> 8-bit grayscale -> squash to IMAGE_SIZE x IMAGE_SIZE (no crop) -> uint8 pixels
  -> float32 in 0..1 with a channel axis, i.e. (N, IMAGE_SIZE, IMAGE_SIZE, 1).
Training caches the uint8 pixels; serving feeds them straight to the model.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Bump whenever any step below changes: cached arrays and exported models carry it, and the
# service refuses a model whose preprocessing version differs from its own.
PREPROCESSING_VERSION = "1"
IMAGE_SIZE = 300  # the published experiment's square input

# Bilinear in Pillow is area-aware when shrinking (its support widens with the scale), so a
# 2000 px radiograph is averaged down rather than aliased.
RESAMPLE = Image.Resampling.BILINEAR


class ImageDecodeError(ValueError):
    """The bytes are a known image type that could not be decoded."""


class ImageTooLargeError(ImageDecodeError):
    """The image decodes to more pixels than allowed (decompression-bomb guard)."""


class UnsupportedImageError(ValueError):
    """The bytes are no image format we read."""


def open_image(source: bytes | str | Path, max_pixels: int | None = None) -> Image.Image:
    """Open (lazily) a JPEG or PNG; refuse anything else and anything over `max_pixels`."""
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=("JPEG", "PNG"))
    except UnidentifiedImageError as exc:
        raise UnsupportedImageError("not a JPEG or PNG image") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated header, bad chunk, ...
        raise ImageDecodeError(f"cannot read image header: {exc}") from exc
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels, more than the {max_pixels} allowed"
        )
    return image


def _to_grayscale_8bit(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'L'. High bit-depth images are stretched over their own range,
    because a 12-bit image stored in 16 bits would otherwise come out nearly black."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    if image.mode == "P":  # palette: resolve colours (and any transparency) first
        image = image.convert("RGBA")
    if image.mode in ("LA", "RGBA", "PA"):
        # Transparent pixels become black, which is what an X-ray background is.
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("L")


def oriented_grayscale(image: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """A decoded (or lazily opened) image -> 8-bit grayscale, upright (EXIF), at its own aspect:
    the image as the model sees it before squashing (and what a heatmap is drawn over)."""
    try:
        if image.format == "JPEG":
            # Decode at 1/2, 1/4 or 1/8 scale when the result is still >= size on both sides:
            # several times faster for full-resolution radiographs, same result after resizing.
            image.draft("L", (size, size))
        image = ImageOps.exif_transpose(image)
        return _to_grayscale_8bit(image)  # convert() decodes, so corrupt data raises here
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt data
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc


def squash(gray: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """An 'L' image -> (size, size) uint8, squashed, not cropped."""
    return np.asarray(gray.resize((size, size), RESAMPLE), dtype=np.uint8)


def image_to_pixels(image: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """A decoded (or lazily opened) image -> (size, size) uint8 grayscale, squashed, not cropped."""
    return squash(oriented_grayscale(image, size), size)


def load_pixels(
    source: bytes | str | Path, size: int = IMAGE_SIZE, max_pixels: int | None = None
) -> np.ndarray:
    """JPEG/PNG bytes or path -> (size, size) uint8 grayscale pixels."""
    with open_image(source, max_pixels=max_pixels) as image:
        return image_to_pixels(image, size)


def to_model_input(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels (H, W) or (N, H, W) -> float32 (N, H, W, 1) in 0..1, the model's input."""
    batch = pixels[np.newaxis] if pixels.ndim == 2 else pixels
    return (batch.astype(np.float32) / 255.0)[..., np.newaxis]
