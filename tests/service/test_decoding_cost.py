"""Decoding work bounded before any decoder runs (service.inputs.cost), and coded DICOM values
quoted only when they are coded values. Every input is built here: a real X-ray re-encoded as a
progressive JPEG, a scan bomb with thousands of refinement scans, JPEG 2000 frames cut into
thousands of tiles or layers."""

from __future__ import annotations

import io
import struct
import time
import warnings

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless

from benchmarks.hostile_inputs import progressive_jpeg as progressive
from benchmarks.hostile_inputs import scan_bomb
from cxr_common.dicom_rules import DEFAULT_RULES, shown
from service.inputs.cost import (
    DEFAULT_MAX_JPEG_SCANS,
    CostLimits,
    ImageTooCostlyError,
    J2kLayout,
    check_j2k,
    j2k_layout,
    jpeg_scans,
)
from service.inputs.decoding import decode_upload
from tests.dicoms import chest_dataset, to_bytes
from tests.service.conftest import assert_error, make_client

SIDE = 6000  # the largest image CXR_MAX_PIXELS lets through


@pytest.fixture(scope="module")
def big_xray(val_images) -> Image.Image:
    with Image.open(val_images[0]) as image:
        return image.convert("L").resize((SIDE, SIDE))


def test_the_shared_xrays_have_one_scan(val_images):
    assert {jpeg_scans(path.read_bytes()) for path in val_images} == {1}


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_real_progressive_jpegs_at_6000_px_pass_the_scan_limit(client, big_xray, mode):
    data = progressive(big_xray.convert(mode), quality=90)
    assert 1 < jpeg_scans(data) <= 10 < DEFAULT_MAX_JPEG_SCANS  # libjpeg's scripts: 6 gray, 10 colour
    response = client.post("/predict", content=data, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text


def test_a_scan_bomb_is_refused_before_decoding(client, big_xray, val_images):
    bomb = scan_bomb(big_xray, 4000)
    assert len(bomb) < 3_500_000 and jpeg_scans(bomb) == 4006
    started = time.process_time()
    response = client.post("/predict", content=bomb, headers={"Content-Type": "image/jpeg"})
    spent = time.process_time() - started
    body = assert_error(response, 422, "image_too_large")
    assert "4006 scans" in body["error"]["message"] and "CXR_MAX_JPEG_SCANS" in body["error"]["message"]
    assert spent < 0.5  # counted, not decoded (decoding it costs ~10 s of CPU here)
    ok = client.post("/predict", content=val_images[0].read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert ok.status_code == 200


def test_the_scan_limit_is_a_setting(big_xray):
    small = big_xray.resize((512, 512))
    bomb = scan_bomb(small, 20)
    decode_upload(bomb, 224, 36_000_000)  # 26 scans: within the default
    with pytest.raises(ImageTooCostlyError, match="26 scans"):
        decode_upload(bomb, 224, 36_000_000, cost=CostLimits(max_jpeg_scans=8))


def test_an_embedded_thumbnail_is_not_counted(big_xray):
    thumbnail = progressive(big_xray.resize((160, 160)))
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + len(thumbnail)) + thumbnail
    data = progressive(big_xray.resize((512, 512)))
    assert jpeg_scans(data[:2] + app1 + data[2:]) == jpeg_scans(data) == 6


def _j2k(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG2000", no_jp2=True, **options)
    return buffer.getvalue()


def test_j2k_tiles_and_layers_are_read_from_the_markers(big_xray):
    image = big_xray.resize((1024, 1024))
    assert j2k_layout(_j2k(image)) == J2kLayout(1, 1)
    layered = _j2k(image, quality_mode="rates", quality_layers=[80, 40, 20])
    assert j2k_layout(layered) == J2kLayout(1, 3)
    tiled = _j2k(image, tile_size=(32, 32), num_resolutions=2)
    assert j2k_layout(tiled) == J2kLayout(1024, 1)
    check_j2k(tiled, CostLimits())
    with pytest.raises(ImageTooCostlyError, match="1024 tiles"):
        check_j2k(tiled, CostLimits(max_j2k_tiles=1023))
    with pytest.raises(ImageTooCostlyError, match="3 quality layers"):
        check_j2k(layered, CostLimits(max_j2k_layers=2))


def test_a_dicom_j2k_frame_cut_into_thousands_of_tiles_is_refused(client, tmp_path, big_xray):
    image = big_xray.resize((2048, 2048))
    frame = _j2k(image, tile_size=(32, 32), num_resolutions=2)  # 4,096 tiles
    path = tmp_path / "xray.png"
    image.save(path)
    dataset = chest_dataset(path, bits=8)
    dataset.BitsAllocated, dataset.HighBit = 8, 7
    dataset.PixelData = encapsulate([frame])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = JPEG2000Lossless
    started = time.perf_counter()
    response = client.post("/predict", content=to_bytes(dataset), headers={"Content-Type": "application/dicom"})
    body = assert_error(response, 422, "image_too_large")
    assert "4096 tiles" in body["error"]["message"] and time.perf_counter() - started < 2


@pytest.mark.parametrize("value", ["MRN-PHI-778899", "X" * 200_000, "chest of John Smith"])
def test_a_coded_value_that_is_no_code_is_not_echoed(client, tmp_path, big_xray, value):
    path = tmp_path / "xray.png"
    big_xray.resize((512, 512)).save(path)
    for keyword in ("BodyPartExamined", "ViewPosition"):
        with warnings.catch_warnings():  # pydicom warns that the value is no valid CS: the point
            warnings.simplefilter("ignore")
            data = to_bytes(chest_dataset(path, **{keyword: value}))
        response = client.post("/predict", content=data, headers={"Content-Type": "application/dicom"})
        body = assert_error(response, 422, "not_chest_xray")
        assert value.upper() not in response.text and len(response.text) < 1000
        assert keyword in body["error"]["message"]


def test_a_short_coded_value_is_still_named():
    dataset = pydicom.Dataset()
    dataset.BodyPartExamined = "KNEE"
    assert DEFAULT_RULES.refusal(dataset) == "DICOM BodyPartExamined is 'KNEE', not the chest"
    assert shown("ABDOMEN_PELVIS") == "'ABDOMEN_PELVIS'" and "not shown" in shown("A" * 17)
    assert np.all([shown(v) != f"'{v}'" for v in ("MRN-1", "a b", "")])


def test_cxr_max_jpeg_scans_reaches_the_service(bundled_model, big_xray):
    bomb = scan_bomb(big_xray.resize((512, 512)), 20)  # 26 scans
    with make_client(bundled_model, max_jpeg_scans=8) as strict:
        response = strict.post("/predict", content=bomb, headers={"Content-Type": "image/jpeg"})
    assert "26 scans; at most 8" in assert_error(response, 422, "image_too_large")["error"]["message"]
