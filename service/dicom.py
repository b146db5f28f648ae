"""DICOM -> 8-bit grayscale image, ready for the shared preprocessing.

Decoders (all with permissive licences): pydicom itself for uncompressed data, Pillow for JPEG
baseline, pylibjpeg-openjpeg (MIT, OpenJPEG BSD-2) for JPEG 2000, and GDCM (python-gdcm,
BSD-3) for JPEG lossless. pylibjpeg-libjpeg is GPL-3 and deliberately not used.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from cxr_common.preprocessing import ImageDecodeError, ImageTooLargeError

# DICOM ViewPosition defined terms for lateral projections (LL/RL), plus spellings seen in the
# wild. Decubitus (LLD/RLD) and oblique views are not lateral and are let through.
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLAT", "RLAT"}


class LateralViewError(ValueError):
    """The DICOM says it is a lateral view; the model only knows frontal views."""


def is_dicom(data: bytes) -> bool:
    """Part 10 files carry 'DICM' after a 128-byte preamble."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def read_dicom(data: bytes, max_pixels: int | None = None) -> tuple[Image.Image, int, int]:
    """DICOM bytes -> (8-bit 'L' image of the first frame, width, height)."""
    with warnings.catch_warnings():
        # pydicom warns about non-conformant files, quoting element values (patient data):
        # they must not reach logs. What matters surfaces as the errors below.
        warnings.simplefilter("ignore")
        return _read_dicom(data, max_pixels)


def _read_dicom(data: bytes, max_pixels: int | None) -> tuple[Image.Image, int, int]:
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        raise ImageDecodeError(f"cannot parse DICOM: {exc}") from exc
    view = str(dataset.get("ViewPosition", "") or "").strip().upper()
    if view in LATERAL_VIEWS:
        raise LateralViewError(f"DICOM ViewPosition is '{view}' (lateral); only frontal views are supported")
    if "PixelData" not in dataset:
        raise ImageDecodeError("DICOM has no pixel data")
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    if max_pixels is not None and rows * columns > max_pixels:
        raise ImageTooLargeError(f"DICOM is {columns}x{rows} = {rows * columns} pixels, more than the {max_pixels} allowed")
    try:
        if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
            dataset.pixel_array_options(index=0)  # decode the first frame only
        pixels = dataset.pixel_array  # masked to BitsStored by pydicom: 12-in-16 stays 12-bit
        if pixels.ndim == 3 and pixels.shape[-1] == 3:  # colour (e.g. secondary capture)
            return Image.fromarray(pixels.astype(np.uint8), "RGB").convert("L"), columns, rows
        values = apply_modality_lut(pixels, dataset)  # stored values -> e.g. Hounsfield / OD
        values = apply_voi_lut(values, dataset)  # the window the sender chose, when any
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, KeyError, TypeError) as exc:
        raise ImageDecodeError(f"cannot decode DICOM pixel data: {exc}") from exc
    values = np.asarray(values, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        scaled = 1.0 - scaled  # MONOCHROME1: low values are white; the model was trained on bone = bright
    return Image.fromarray(np.round(scaled * 255).astype(np.uint8), "L"), columns, rows
