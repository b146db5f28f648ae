"""Real chest X-rays wrapped as DICOM files, in the transfer syntaxes and layouts hospitals send.

The pixels are a real radiograph (an official val image); the attributes are those of a CR
chest PA study, with any of them changed or removed by the caller.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def chest_dataset(image_path: Path, bits: int = 12, monochrome1: bool = False, **attributes) -> pydicom.Dataset:
    """A CR chest PA dataset holding the X-ray at `image_path` as `bits`-bit values in 16 bits.
    Keyword arguments set attributes; a value of None removes it."""
    with Image.open(image_path) as image:
        gray = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    stored = np.rint(gray * (2**bits - 1)).astype(np.uint16)
    if monochrome1:
        stored = (2**bits - 1 - stored).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = CR_STORAGE, meta.MediaStorageSOPInstanceUID
    dataset.Modality, dataset.BodyPartExamined, dataset.ViewPosition = "CR", "CHEST", "PA"
    dataset.PatientName = "Test^Patient"
    dataset.Rows, dataset.Columns = stored.shape
    dataset.SamplesPerPixel, dataset.PixelRepresentation = 1, 0
    dataset.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, bits, bits - 1
    dataset.PixelData = stored.tobytes()
    for keyword, value in attributes.items():
        if value is None:
            if keyword in dataset:
                delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    return dataset


def to_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def as_jpeg_baseline(dataset: pydicom.Dataset) -> pydicom.Dataset:
    """The pixels as an 8-bit baseline JPEG frame (as many CR exports are)."""
    pixels = dataset.pixel_array.astype(np.float64)
    eight = np.rint(pixels / pixels.max() * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(eight, "L").save(buffer, format="JPEG", quality=90)
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
    dataset.PixelData = encapsulate([buffer.getvalue()])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return dataset


def encoded(image_path: Path, syntax: UID | str, **attributes) -> bytes:
    """The chest X-ray as a DICOM file in transfer syntax `syntax`."""
    dataset = chest_dataset(image_path, **attributes)
    if syntax == JPEGBaseline8Bit:
        dataset = as_jpeg_baseline(dataset)
    elif syntax in (RLELossless, JPEG2000Lossless):
        dataset.compress(syntax)
    elif syntax == DeflatedExplicitVRLittleEndian:
        dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return to_bytes(dataset)
