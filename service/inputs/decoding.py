"""Uploaded bytes -> the model's uint8 pixels, via the shared preprocessing definition.

The format is recognised from the bytes themselves (magic numbers), not trusted from the
Content-Type header or a file name: integration scripts often send application/octet-stream.
Raises only service.inputs.errors (mapped to HTTP once, in service.http.errors); whatever a library
raises on hostile data becomes ImageDecodeError here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from cxr_common.preprocessing import open_image, oriented_grayscale, squash
from service.inference.heatmap import preview
from service.inputs.cost import CostLimits, check_jpeg
from service.inputs.dicom_policy import DicomPolicy, is_dicom
from service.inputs.errors import (
    EmptyUploadError,
    ImageDecodeError,
    NotChestXrayError,
    UnsupportedImageError,
)
from service.inputs.shape import check_shape

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (S, S) uint8, the shared preprocessing's output
    format: str  # jpeg | png | dicom
    width: int  # of the upload, before resizing
    height: int
    preview: Image.Image | None = None  # the upright grayscale upload, small, when a heatmap is wanted


def sniff_format(data: bytes) -> str | None:
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    if is_dicom(data):
        return "dicom"
    return None


def _decode(data: bytes, kind: str, size: int, max_pixels: int, policy: DicomPolicy,
            with_preview: bool, cost: CostLimits) -> DecodedImage:
    if kind == "dicom":
        # pydicom and its codecs load with a worker's first DICOM (service.inputs.dicom_policy)
        from service.inputs.dicom import read_dicom

        image, width, height = read_dicom(data, max_pixels, min_side=size, policy=policy, cost=cost)
        gray = oriented_grayscale(image, size)
    else:
        if kind == "jpeg":
            check_jpeg(data, cost)  # before Pillow reads a byte of the scans
        with open_image(data, max_pixels=max_pixels) as opened:
            width, height = opened.size
            check_shape(width, height)
            gray = oriented_grayscale(opened, size)
    return DecodedImage(squash(gray, size), kind, width, height, preview(gray) if with_preview else None)


def decode_upload(data: bytes, size: int, max_pixels: int, policy: DicomPolicy = DicomPolicy(),
                  with_preview: bool = False, cost: CostLimits = CostLimits()) -> DecodedImage:
    """Raise EmptyUploadError, UnsupportedImageError, NotChestXrayError or an ImageDecodeError
    (too large, too costly, bad shape, unsupported DICOM, corrupt) when the upload cannot be
    scored. `with_preview`: keep a small upright copy of the image to draw its heatmap over;
    `cost`: the limits on decoding work beyond the pixel count (service.inputs.cost)."""
    if not data:
        raise EmptyUploadError("the uploaded file is empty")
    kind = sniff_format(data)
    if kind is None:
        raise UnsupportedImageError("the file is not a JPEG, PNG or DICOM image")
    try:
        return _decode(data, kind, size, max_pixels, policy, with_preview, cost)
    except (ImageDecodeError, NotChestXrayError):
        raise
    except UnsupportedImageError:
        # the magic number said JPEG/PNG, so a file Pillow cannot identify is a corrupt one
        raise ImageDecodeError(f"cannot decode this {kind.upper()} file") from None
    except (Exception, RecursionError) as exc:  # Pillow and the codecs raise many kinds on bad data
        raise ImageDecodeError(f"cannot decode this {kind.upper()} file ({type(exc).__name__})") from None
