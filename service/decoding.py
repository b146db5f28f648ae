"""Uploaded bytes -> the model's uint8 pixels, via the shared preprocessing definition.

The format is recognised from the bytes themselves (magic numbers), not trusted from the
Content-Type header or a file name: integration scripts often send application/octet-stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxr_common.preprocessing import (
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedImageError,
    image_to_pixels,
    open_image,
)
from service.dicom import LateralViewError, is_dicom, read_dicom
from service.errors import ApiError

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (S, S) uint8, the shared preprocessing's output
    format: str  # jpeg | png | dicom
    width: int  # of the upload, before resizing
    height: int


def sniff_format(data: bytes) -> str | None:
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    if is_dicom(data):
        return "dicom"
    return None


def decode_upload(data: bytes, size: int, max_pixels: int) -> DecodedImage:
    """Raise ApiError 400/415/422 for empty, unknown, undecodable, oversized or lateral input."""
    if not data:
        raise ApiError(400, "empty_file", "the uploaded file is empty")
    kind = sniff_format(data)
    if kind is None:
        raise ApiError(415, "unsupported_media_type", "the file is not a JPEG, PNG or DICOM image")
    try:
        if kind == "dicom":
            image, width, height = read_dicom(data, max_pixels, min_side=size)
            return DecodedImage(image_to_pixels(image, size), kind, width, height)
        with open_image(data, max_pixels=max_pixels) as image:
            width, height = image.size
            return DecodedImage(image_to_pixels(image, size), kind, width, height)
    except LateralViewError as exc:
        raise ApiError(422, "lateral_view", str(exc)) from exc
    except ImageTooLargeError as exc:
        raise ApiError(422, "image_too_large", str(exc)) from exc
    except (ImageDecodeError, UnsupportedImageError) as exc:
        # the magic number said JPEG/PNG, so a file Pillow cannot identify is a corrupt one
        raise ApiError(422, "undecodable_image", f"cannot decode this {kind.upper()} file: {exc}") from exc
