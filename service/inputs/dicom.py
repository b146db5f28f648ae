"""DICOM -> 8-bit grayscale image, ready for the shared preprocessing, at a bounded cost.

Order, so that a hostile or wrong file costs little: parse (deflated data inflated with a cap)
-> attributes that say it is not a frontal chest radiograph (cxr_common.dicom_rules), before any pixel is
decoded -> the declared size, and for compressed data the size in the frame's own header,
checked against the budget -> decode the first frame -> palette, modality LUT, VOI LUT ->
stretched to 8 bits, MONOCHROME1 inverted.

Decoders (all with permissive licences): pydicom itself for uncompressed data, Pillow for JPEG
baseline, pylibjpeg-openjpeg (MIT, OpenJPEG BSD-2) for JPEG 2000, and GDCM (python-gdcm,
BSD-3) for JPEG lossless. pylibjpeg-libjpeg is GPL-3 and deliberately not used.

Every failure is one of service.inputs.errors; messages name attributes, never their values
(except coded values such as Modality), and library exception texts (which can quote element
values, i.e. patient data) are reduced to their type's name.
"""

from __future__ import annotations

import io
import warnings
import zlib

import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut  # type: ignore[attr-defined]
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from cxr_common.dicom_rules import values_of
from service.inputs.cost import CostLimits, check_frame
from service.inputs.dicom_policy import DicomPolicy as DicomPolicy  # re-exported: callers import both from here
from service.inputs.dicom_policy import is_dicom as is_dicom
from service.inputs.errors import (
    ImageDecodeError,
    ImageTooLargeError,
    NotChestXrayError,
    UnsupportedDicomError,
)
from service.inputs.frame_decoder import decode_first_frame
from service.inputs.frame_headers import frame_size
from service.inputs.shape import DEFAULT_MAX_PIXELS, check_shape

BYTES_PER_PIXEL_BUDGET = 8  # inflated deflate data allowed per pixel allowed (16-bit RGB + room)


def read_dicom(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None,
               policy: DicomPolicy = DicomPolicy(), cost: CostLimits = CostLimits()) -> tuple[Image.Image, int, int]:
    """DICOM bytes -> (8-bit 'L' image of the first frame, width, height of the original).

    With `min_side`, the stored values are first averaged down by the largest power of two that
    keeps both sides >= min_side (as JPEG draft decoding does): the LUTs then run on up to 16x
    fewer pixels, several times faster, with the same result after resizing."""
    with warnings.catch_warnings():
        # pydicom warns about non-conformant files, quoting element values (patient data):
        # they must not reach logs. What matters surfaces as the errors below.
        warnings.simplefilter("ignore")
        dataset = _parse(data, max_pixels * BYTES_PER_PIXEL_BUDGET)
        check_attributes(dataset, policy)
        rows, columns = _size(dataset, max_pixels, policy.check, cost)
        return _pixels(dataset, min_side, data), columns, rows


def _parse(data: bytes, max_inflated: int) -> pydicom.Dataset:
    try:
        stream = io.BytesIO(data)
        read_preamble(stream, False)
        meta = _read_file_meta_info(stream)
        if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            stream = io.BytesIO(_inflated(meta, data[stream.tell():], max_inflated))
        else:
            stream.seek(0)
        return pydicom.dcmread(stream)
    except ImageDecodeError:
        raise
    except (Exception, RecursionError) as exc:  # pydicom raises many kinds; none may escape
        raise ImageDecodeError(f"cannot parse DICOM ({type(exc).__name__})") from None


def _inflated(meta: pydicom.dataset.FileMetaDataset, deflated: bytes, max_inflated: int) -> bytes:
    """The deflated dataset inflated to at most `max_inflated` bytes, as an explicit-VR file."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        body = inflater.decompress(deflated, max_inflated + 1)
    except zlib.error:
        raise ImageDecodeError("cannot parse DICOM (deflated data is corrupt)") from None
    if len(body) > max_inflated:
        raise ImageTooLargeError(
            f"deflated DICOM data inflates to more than the {max_inflated} bytes allowed")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    header = io.BytesIO()
    header.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(header, meta, enforce_standard=False)  # type: ignore[arg-type]  # any binary stream does
    return header.getvalue() + body


def check_attributes(dataset: pydicom.Dataset, policy: DicomPolicy) -> None:
    """Refuse, before any pixel is decoded, what the attributes say is no frontal chest radiograph."""
    refused = policy.rules.refused_by(dataset) if policy.check else None
    if refused is not None:
        raise NotChestXrayError(refused.reason, refused.attribute)


def _int(dataset: pydicom.Dataset, keyword: str, default: int | None = None) -> int:
    """A single whole-number element (US or IS), or ImageDecodeError naming it."""
    try:
        value = dataset.get(keyword, default)
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) or value is None or value == "":
            raise ValueError
        number = int(value)
    except Exception:
        raise ImageDecodeError(f"DICOM {keyword} is missing or not a single whole number") from None
    if number < 0:
        raise ImageDecodeError(f"DICOM {keyword} is negative")
    return number


def _size(dataset: pydicom.Dataset, max_pixels: int, check: bool = True,
          cost: CostLimits = CostLimits()) -> tuple[int, int]:
    """Rows, Columns, checked: declared size, shape, and a compressed frame's own header and
    decoding cost (scans, tiles, layers: service.inputs.cost)."""
    if "PixelData" not in dataset:
        raise ImageDecodeError("DICOM has no pixel data")
    rows, columns = _int(dataset, "Rows"), _int(dataset, "Columns")
    samples = _int(dataset, "SamplesPerPixel", 1)
    if rows * columns * max(1, samples) > max_pixels:
        raise ImageTooLargeError(
            f"DICOM is {columns}x{rows} x {samples} samples, more than the {max_pixels} pixels allowed")
    if check:
        check_shape(columns, rows)
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    if syntax is not None and UID(syntax).is_compressed:
        _check_frame_header(dataset, rows, columns, max_pixels, cost)
    return rows, columns


def _check_frame_header(dataset: pydicom.Dataset, rows: int, columns: int, max_pixels: int,
                        cost: CostLimits) -> None:
    try:
        frames = _int(dataset, "NumberOfFrames", 1) or 1
        first = next(generate_frames(dataset.PixelData, number_of_frames=frames))
    except ImageDecodeError:
        raise
    except Exception:
        raise ImageDecodeError("cannot parse DICOM (encapsulated pixel data is malformed)") from None
    size = frame_size(first[:65536])
    if size is None:
        if first[:2] in (b"\xff\xd8", b"\xff\x4f") or first[4:8] == b"jP  ":
            raise ImageDecodeError("DICOM frame header is truncated or malformed")
        return  # RLE and other codecs: no size in the frame; the decoder allocates the declared one
    if size.width * size.height * max(1, size.components) > max_pixels:
        raise ImageTooLargeError(
            f"DICOM frame is {size.width}x{size.height} x {size.components} components, "
            f"more than the {max_pixels} pixels allowed")
    if (size.width, size.height) != (columns, rows):
        raise UnsupportedDicomError(
            f"DICOM frame header says {size.width}x{size.height} but Rows/Columns say {columns}x{rows}")
    check_frame(first, cost)


def reduce_stored(pixels: np.ndarray, min_side: int | None) -> np.ndarray:
    """Block-average (rows, cols) stored values by 2, 4 or 8 while both sides stay >= min_side;
    rounded back to integers, since LUT tables are indexed by stored value."""
    factor = 1
    while min_side and min(pixels.shape[:2]) // (factor * 2) >= min_side and factor < 8:
        factor *= 2
    if factor == 1:
        return pixels
    # Pillow's box reduction in float: 3x faster than numpy's strided mean, and off the GIL
    if pixels.dtype == np.dtype("<u2") and pixels.flags.c_contiguous:
        # the usual 16-bit case: Pillow reads the array in place and converts it itself,
        # sparing two full-size copies (4.4 -> 2.4 ms on a 1841x1955 CR, same result)
        image = Image.frombuffer("I;16", pixels.shape[::-1], pixels, "raw", "I;16", 0, 1).convert("F")
    else:
        image = Image.fromarray(pixels.astype(np.float32), "F")
    reduced: np.ndarray = np.rint(np.asarray(image.reduce(factor))).astype(pixels.dtype)
    return reduced


def _is_compressed(dataset: pydicom.Dataset) -> bool:
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    return syntax is not None and UID(syntax).is_compressed


def _pixels(dataset: pydicom.Dataset, min_side: int | None, data: bytes) -> Image.Image:
    photometric = (values_of(dataset, "PhotometricInterpretation") or ["MONOCHROME2"])[0]
    compressed = _is_compressed(dataset)
    try:
        if compressed:  # in a child process: the decoders hold the GIL (service.inputs.frame_decoder)
            pixels = decode_first_frame(data, min_side, reduce=photometric.startswith("MONOCHROME"))
        else:
            if _int(dataset, "NumberOfFrames", 1) > 1:
                dataset.pixel_array_options(index=0)  # decode the first frame only
            pixels = dataset.pixel_array  # masked to BitsStored by pydicom: 12-in-16 stays 12-bit
        if photometric == "PALETTE COLOR":
            pixels = apply_color_lut(pixels, dataset)  # indices -> RGB; the indices mean nothing
        if pixels.ndim == 3 and pixels.shape[-1] == 3:  # colour (palette, secondary capture, YBR)
            rgb = pixels if pixels.dtype == np.uint8 else (pixels >> 8).astype(np.uint8)
            return Image.fromarray(np.ascontiguousarray(rgb), "RGB").convert("L")
        if pixels.ndim != 2:
            raise UnsupportedDicomError(f"DICOM pixel data has {pixels.ndim} dimensions; one grayscale frame is needed")
        if not compressed:  # the child reduced them already
            pixels = reduce_stored(pixels, min_side)
        values = apply_modality_lut(pixels, dataset)  # stored values -> e.g. Hounsfield / OD
        values = apply_voi_lut(values, dataset)  # the window the sender chose, when any
        values = np.asarray(values, dtype=np.float32)
    except ImageDecodeError:
        raise
    except (Exception, RecursionError) as exc:  # decoders and LUTs fail in many ways on bad data
        raise ImageDecodeError(f"cannot decode DICOM pixel data ({type(exc).__name__})") from None
    if values.shape != pixels.shape or not np.isfinite(values).all():
        raise ImageDecodeError("DICOM LUTs produced no usable image")
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled  # MONOCHROME1: low values are white; the model was trained on bone = bright
    return Image.fromarray(np.round(scaled * 255).astype(np.uint8), "L")
