"""The shared preprocessing definition on real X-rays in every mode we accept."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cxr_common.preprocessing import (
    IMAGE_SIZE,
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedImageError,
    load_pixels,
    remove_uniform_border,
    squash,
    to_model_input,
)
from model_export.borders import framed, letterboxed


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def xray(normal_jpeg) -> Image.Image:
    with Image.open(normal_jpeg) as image:
        return image.convert("L")


@pytest.fixture(scope="module")
def reference(xray) -> np.ndarray:
    return load_pixels(_encode(xray, "PNG"))


def test_output_is_square_uint8(normal_jpeg):
    pixels = load_pixels(normal_jpeg)
    assert pixels.shape == (IMAGE_SIZE, IMAGE_SIZE) and pixels.dtype == np.uint8
    assert 20 < pixels.mean() < 235  # a real radiograph, not blank


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA"])
def test_png_modes_agree(xray, reference, mode):
    converted = xray.convert(mode)
    pixels = load_pixels(_encode(converted, "PNG"))
    assert np.abs(pixels.astype(int) - reference).mean() < 1.5


def test_16bit_png_uses_its_range(xray, reference):
    # 12-bit data in a 16-bit container: must not come out black
    twelve_bit = (np.asarray(xray, dtype=np.uint16) * 16).astype(np.uint16)
    pixels = load_pixels(_encode(Image.fromarray(twelve_bit), "PNG"))
    stretched = (reference.astype(float) - reference.min()) / (reference.max() - reference.min()) * 255
    assert np.abs(pixels - stretched).mean() < 3


def test_exif_orientation_is_honoured(xray):
    rotated_pixels = xray.rotate(90, expand=True)  # what the camera stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": undoes the CCW rotation above
    tagged = load_pixels(_encode(rotated_pixels, "JPEG", exif=exif, quality=95))
    upright = load_pixels(_encode(xray, "JPEG", quality=95))
    assert np.abs(tagged.astype(int) - upright).mean() < 3
    untagged = load_pixels(_encode(rotated_pixels, "JPEG", quality=95))
    assert np.abs(untagged.astype(int) - upright).mean() > 10  # the tag really mattered


def test_draft_decoding_matches_full_decoding(normal_jpeg):
    # draft mode decodes at reduced DCT scale; the resized result must be nearly the same
    with Image.open(normal_jpeg) as image:
        full = np.asarray(image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR))
    assert np.abs(load_pixels(normal_jpeg).astype(int) - full).mean() < 2.0


def test_model_input_shape_and_range(normal_jpeg):
    batch = to_model_input(np.stack([load_pixels(normal_jpeg)] * 2))
    assert batch.shape == (2, IMAGE_SIZE, IMAGE_SIZE, 1) and batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0


def test_errors_are_typed(normal_jpeg):
    with pytest.raises(UnsupportedImageError):
        load_pixels(b"GIF89a not an x-ray")
    with pytest.raises(ImageDecodeError):
        load_pixels(normal_jpeg.read_bytes()[:5000])  # truncated
    with pytest.raises(ImageTooLargeError):
        load_pixels(normal_jpeg, max_pixels=1000)


@pytest.mark.parametrize("make", [
    pytest.param(lambda x: framed(x, 0.05, 0), id="5% black frame"),
    pytest.param(lambda x: framed(x, 0.05, 255), id="5% white frame"),
    pytest.param(lambda x: framed(x, 0.10, 128), id="10% grey frame"),
    pytest.param(lambda x: letterboxed(x, 1.8, 1.0), id="letterbox 1.8x wide"),
    pytest.param(lambda x: letterboxed(x, 1.0, 1.2), id="letterbox 1.2x tall"),
])
def test_uniform_borders_do_not_reach_the_model(xray, reference, make):
    bordered = make(xray)
    pixels = load_pixels(_encode(bordered, "JPEG", quality=90))
    # close to the X-ray alone (JPEG and resampling leave a few grey levels), far from what
    # version 1 gave: the whole picture squashed, bars included
    assert np.abs(pixels.astype(int) - reference).mean() < 3
    assert np.abs(squash(bordered).astype(int) - reference).mean() > 8


def test_images_without_a_border_are_untouched():
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (120, 90), dtype=np.uint8))
    assert remove_uniform_border(noisy) is noisy


def test_an_image_that_is_mostly_border_is_left_alone():
    mostly_black = np.zeros((100, 100), dtype=np.uint8)
    mostly_black[45:55, 45:55] = np.random.default_rng(1).integers(0, 256, (10, 10))
    image = Image.fromarray(mostly_black)
    assert remove_uniform_border(image) is image
