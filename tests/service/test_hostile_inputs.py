"""Hostile and broken uploads, one test per way they hurt the service before: each is answered
with a 4xx in bounded time and memory, names no element value, and leaves the service serving.
Every input is built here, from real X-rays and real DICOM samples."""

from __future__ import annotations

import io
import logging
import resource
import struct
import time

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit

from service.inputs.dicom import DicomPolicy, read_dicom
from service.inputs.frame_headers import frame_size, j2k_size, jpeg_size
from tests.conftest import dicom_sample
from tests.dicoms import chest_dataset, encoded, to_bytes
from tests.service.conftest import assert_error, png_bytes

MAX_PIXELS = 3_000_000  # small, so that bombs can be built quickly; the rules are the same
SECRET = "Secret^Name"  # a patient name that must never come back in an answer or a log


CLIENT_SETTINGS = {"max_pixels": MAX_PIXELS}  # for the `client` fixture


@pytest.fixture(scope="module")
def small_xray(val_images) -> Image.Image:
    with Image.open(val_images[0]) as image:
        return image.convert("L").resize((640, 512))


def _post(client, data: bytes):
    started = time.perf_counter()
    response = client.post("/predict", content=data, headers={"Content-Type": "application/octet-stream"})
    return response, time.perf_counter() - started


def _still_serves(client, val_images):
    response = client.post("/predict", content=val_images[-1].read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _small_chest(tmp_path, small_xray, **attributes) -> pydicom.Dataset:
    path = tmp_path / "small.png"
    small_xray.save(path)
    return chest_dataset(path, **attributes)


def test_deflate_bomb_is_refused_before_it_inflates(client, tmp_path, small_xray, val_images):
    dataset = _small_chest(tmp_path, small_xray)
    dataset.add_new(0x00091010, "OB", bytes(400 * 1024 * 1024))  # 400 MB of zeros: ~400 KB deflated
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    bomb = to_bytes(dataset)
    assert len(bomb) < 2_000_000
    before = _peak_mb()
    response, seconds = _post(client, bomb)
    assert_error(response, 422, "image_too_large")
    assert seconds < 5 and _peak_mb() - before < 150  # never the 400 MB
    _still_serves(client, val_images)


def test_a_deflated_chest_xray_is_read(client, val_images):
    response, _ = _post(client, encoded(val_images[0], DeflatedExplicitVRLittleEndian))
    assert response.status_code == 200, response.text


def _j2k_header(width: int, height: int) -> bytes:
    """SOC, SIZ (one 8-bit component, one tile) and a few bytes of junk after it."""
    siz = struct.pack(">HHIIIIIIIIH", 41, 0, width, height, 0, 0, width, height, 0, 0, 1) + b"\x07\x01\x01"
    return b"\xff\x4f\xff\x51" + siz + b"\xff\x52" + bytes(64)


def _with_frame(tmp_path, small_xray, frame: bytes, syntax) -> bytes:
    dataset = _small_chest(tmp_path, small_xray, bits=8)
    dataset.BitsAllocated, dataset.HighBit = 8, 7
    dataset.PixelData = encapsulate([frame])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = syntax
    return to_bytes(dataset)


def test_a_j2k_frame_larger_than_its_rows_and_columns_is_refused_from_its_header(client, tmp_path, small_xray):
    data = _with_frame(tmp_path, small_xray, _j2k_header(20000, 20000), JPEG2000Lossless)
    before = _peak_mb()
    response, seconds = _post(client, data)
    assert_error(response, 422, "image_too_large")
    assert seconds < 2 and _peak_mb() - before < 50


def test_a_frame_that_disagrees_with_rows_and_columns_is_refused(client, tmp_path, small_xray):
    response, _ = _post(client, _with_frame(tmp_path, small_xray, _j2k_header(1000, 900), JPEG2000Lossless))
    assert_error(response, 422, "unsupported_dicom")


def _jpeg_claiming(width: int, height: int, image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_a_huge_baseline_jpeg_frame_is_refused_from_its_header(client, tmp_path, small_xray):
    frame = _jpeg_claiming(9000, 9000, small_xray)
    assert jpeg_size(frame) == (9000, 9000, 3)
    response, seconds = _post(client, _with_frame(tmp_path, small_xray, frame, JPEGBaseline8Bit))
    assert_error(response, 422, "image_too_large")
    assert seconds < 2


@pytest.mark.parametrize("size", [(2_000_000, 1), (1, 20_000), (100, 100), (3000, 200)])
def test_shapes_no_radiograph_has_are_refused_from_the_header(client, size):
    before = _peak_mb()
    response, seconds = _post(client, png_bytes(Image.new("L", size, 0)))
    assert_error(response, 422, "unsupported_image_shape")
    assert seconds < 2 and _peak_mb() - before < 100


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: setattr(d, "Rows", [512, 512]), "undecodable_image"),  # multi-valued
    (lambda d: d.__setitem__("Rows", pydicom.DataElement(0x00280010, "US", None)), "undecodable_image"),
    (lambda d: d.__setitem__("Rows", pydicom.DataElement(0x00280010, "IS", "512")), None),  # IS text: read
    (lambda d: (setattr(d, "Rows", 1), setattr(d, "Columns", 1)), "unsupported_image_shape"),
    (lambda d: (setattr(d, "ModalityLUTSequence", Sequence([_lut(b"\x01\x00")]))), "undecodable_image"),
    (lambda d: (setattr(d, "VOILUTSequence", Sequence([_lut(b"\x01")]))), "undecodable_image"),
])
def test_malformed_dicom_elements_are_4xx(client, tmp_path, small_xray, val_images, mutate, expected):
    dataset = _small_chest(tmp_path, small_xray, PatientName=SECRET)
    mutate(dataset)
    response, _ = _post(client, to_bytes(dataset))
    if expected is None:
        assert response.status_code == 200, response.text
    else:
        assert_error(response, 422, expected)
        assert "Secret" not in response.text
    _still_serves(client, val_images)


def _lut(data: bytes) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.LUTDescriptor = [4096, 0, 16]  # declares 4096 entries...
    item.add_new(0x00283006, "OW", data)  # ...and holds one
    item.ModalityLUTType = "US"
    return item


def test_deeply_nested_sequences_are_4xx(client, tmp_path, small_xray, val_images):
    data = to_bytes(_small_chest(tmp_path, small_xray))
    depth = 20_000  # private sequences of undefined length, each holding the next, spliced by hand
    opening = b"\x09\x00\x11\x10SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    at = data.index(b"\x10\x00\x10\x00PN")  # before PatientName, keeping tags in order
    response, seconds = _post(client, data[:at] + opening * depth + closing * depth + data[at:])
    assert_error(response, 422, "undecodable_image")
    assert seconds < 10
    _still_serves(client, val_images)


def test_a_malformed_patient_name_stays_out_of_answers_and_logs(client, tmp_path, small_xray, caplog):
    dataset = _small_chest(tmp_path, small_xray)
    dataset.add_new(0x00100010, "PN", SECRET)
    data = to_bytes(dataset)
    rows = b"\x28\x00\x10\x00US\x02\x00"  # (0028,0010) US, length 2: made one byte long by hand
    at = data.index(rows)
    data = data[:at] + b"\x28\x00\x10\x00US\x01\x00" + data[at + 8 : at + 9] + data[at + 10 :]
    caplog.set_level(logging.DEBUG)
    response, _ = _post(client, data)
    assert 400 <= response.status_code < 500
    assert "Secret" not in response.text and "Secret" not in caplog.text


def test_palette_colour_is_applied():
    data = dicom_sample("OBXXXX1A.dcm").read_bytes()
    image, _, _ = read_dicom(data, policy=DicomPolicy(check=False))
    dataset = pydicom.dcmread(dicom_sample("OBXXXX1A.dcm"))
    from pydicom.pixels import apply_color_lut
    rgb = apply_color_lut(dataset.pixel_array, dataset)
    rgb = rgb if rgb.dtype == np.uint8 else (rgb >> 8).astype(np.uint8)
    expected = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    assert np.array_equal(np.asarray(image), expected)
    assert not np.array_equal(np.asarray(image), dataset.pixel_array.astype(np.uint8))  # not the indices


def test_a_batch_with_a_broken_dicom_scores_its_good_files(client, val_images, tmp_path, small_xray):
    broken = to_bytes(_small_chest(tmp_path, small_xray))[:-5000]  # pixel data cut short
    files = [("files", ("a.jpeg", val_images[0].read_bytes(), "image/jpeg")),
             ("files", ("b.dcm", broken, "application/dicom")),
             ("files", ("c.jpeg", val_images[-1].read_bytes(), "image/jpeg"))]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["result"] and results[2]["result"]
    assert results[1]["error"]["code"] == "undecodable_image"


def test_frame_header_parsers_read_real_streams(val_images, tmp_path, small_xray):
    with Image.open(val_images[0]) as image:
        assert jpeg_size(val_images[0].read_bytes())[:2] == image.size
    assert j2k_size(_j2k_header(321, 123)) == (321, 123, 1)
    assert frame_size(b"\x00" * 100) is None and jpeg_size(b"\xff\xd8\xff") is None
