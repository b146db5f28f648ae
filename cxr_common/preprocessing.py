"""Decode an X-ray, make it grayscale and square, and scale it for the model.

Pipeline (the published experiment's, plus what real uploads need):
  bytes/path -> decode (JPEG at a reduced DCT scale when large) -> EXIF orientation
  -> 8-bit grayscale -> uniform borders removed -> squash to IMAGE_SIZE x IMAGE_SIZE -> uint8 pixels
  -> float32 in 0..1 with a channel axis, i.e. (N, IMAGE_SIZE, IMAGE_SIZE, 1).
Training caches the uint8 pixels; serving feeds them straight to the model.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxr_common.image_errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError

# Bump whenever any step below changes: cached arrays and exported models carry it, and the
# service refuses a model whose preprocessing version differs from its own.
# 2: uniform borders and letterboxes removed before the squash (version 1 squashed everything).
PREPROCESSING_VERSION = "2"
IMAGE_SIZE = 300  # the published experiment's square input

# Bilinear in Pillow is area-aware when shrinking (its support widens with the scale), so a
# 2000 px radiograph is averaged down rather than aliased.
RESAMPLE = Image.Resampling.BILINEAR


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


# A border line (row or column) spans at most this many grey levels: a black or white frame or
# letterbox bar stays within a few levels even after JPEG compression, while any line through
# a radiograph's anatomy or its detector noise spans far more.
BORDER_LINE_RANGE = 12
# At most this share of each dimension is removed in all; an image that is nearly all border is
# left alone (it is the image check's to refuse, not ours to blow up).
BORDER_MAX_SHARE = 0.5


def _border_lines(line_min: np.ndarray, line_max: np.ndarray) -> int:
    """How many lines from the start form one uniform border (one grey level, within BORDER_LINE_RANGE)."""
    uniform = (line_max - line_min) <= BORDER_LINE_RANGE
    if not uniform[0]:
        return 0
    level_low, level_high = np.minimum.accumulate(line_min), np.maximum.accumulate(line_max)
    same_level = (level_high - level_low) <= BORDER_LINE_RANGE  # the border does not drift in colour
    stops = np.flatnonzero(~(uniform & same_level))
    return int(stops[0]) if len(stops) else len(uniform)


def remove_uniform_border(gray: Image.Image) -> Image.Image:
    """An 'L' image without the uniform frame or letterbox bars around it (black, white or any
    single grey), so that what surrounds the chest does not decide the label (a 5 % black frame
    turned 7 of 17 pneumonias normal in model v2). Unchanged when there is none."""
    values = np.asarray(gray)
    height, width = values.shape
    rows_min, rows_max = values.min(axis=1), values.max(axis=1)
    cols_min, cols_max = values.min(axis=0), values.max(axis=0)
    top, bottom = _border_lines(rows_min, rows_max), _border_lines(rows_min[::-1], rows_max[::-1])
    left, right = _border_lines(cols_min, cols_max), _border_lines(cols_min[::-1], cols_max[::-1])
    if top + bottom == 0 and left + right == 0:
        return gray
    if top + bottom > BORDER_MAX_SHARE * height or left + right > BORDER_MAX_SHARE * width:
        return gray
    return gray.crop((left, top, width - right, height - bottom))


def oriented_grayscale(image: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """A decoded (or lazily opened) image -> 8-bit grayscale, upright (EXIF), uniform borders
    removed, at its own aspect: the image as the model sees it before squashing (and what a
    heatmap is drawn over)."""
    try:
        if image.format == "JPEG":
            # Decode at 1/2, 1/4 or 1/8 scale when the result is still >= size on both sides:
            # several times faster for full-resolution radiographs, same result after resizing.
            image.draft("L", (size, size))
        image = ImageOps.exif_transpose(image)
        gray = _to_grayscale_8bit(image)  # convert() decodes, so corrupt data raises here
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt data
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    return remove_uniform_border(gray)


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
