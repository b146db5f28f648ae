"""POST /predict and /predict/batch with real X-rays: JPEG, PNG in every mode, DICOM."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

from tests.conftest import dicom_sample
from tests.service.conftest import assert_error, png_bytes


def _check_prediction(body: dict, fmt: str):
    p = body["probabilities"]
    assert body["label"] == ("pneumonia" if p["pneumonia"] >= body["threshold"] else "normal")
    assert body["model"]["name"] and body["model"]["version"] and len(body["model"]["sha256"]) == 64
    assert body["input"]["format"] == fmt and body["elapsed_ms"] >= 0


def test_multipart_jpeg(client, normal_jpeg):
    response = client.post("/predict", files={"file": ("x.jpeg", normal_jpeg.read_bytes(), "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    _check_prediction(body, "jpeg")
    with Image.open(normal_jpeg) as image:
        assert (body["input"]["width"], body["input"]["height"]) == image.size
    assert body["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream", None])
def test_raw_body_gives_the_same_answer(client, pneumonia_jpeg, content_type):
    data = pneumonia_jpeg.read_bytes()
    multipart = client.post("/predict", files={"file": ("x", data, "image/jpeg")})
    raw = client.post("/predict", content=data, headers={"Content-Type": content_type} if content_type else {})
    assert raw.status_code == 200 and raw.headers["content-type"] == multipart.headers["content-type"]
    timing = {"request_id", "elapsed_ms"}
    assert {k: v for k, v in raw.json().items() if k not in timing} == {
        k: v for k, v in multipart.json().items() if k not in timing}


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16"])
def test_png_modes(client, normal_jpeg, mode):
    with Image.open(normal_jpeg) as image:
        gray = image.convert("L")
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)
    else:
        converted = gray.convert(mode)
    response = client.post("/predict", content=png_bytes(converted), headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    _check_prediction(response.json(), "png")
    reference = client.post("/predict", content=png_bytes(gray), headers={"Content-Type": "image/png"}).json()
    assert response.json()["probabilities"]["pneumonia"] == pytest.approx(
        reference["probabilities"]["pneumonia"], abs=0.05)


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG1_J2KR.dcm"])
def test_dicom_chest_cr_monochrome1(client, name):
    response = client.post("/predict", content=dicom_sample(name).read_bytes(),
                           headers={"Content-Type": "application/dicom"})
    assert response.status_code == 200, response.text
    body = response.json()
    _check_prediction(body, "dicom")
    assert (body["input"]["width"], body["input"]["height"]) == (1841, 1955)


def test_monochrome1_is_inverted_so_that_air_is_dark():
    # MONOCHROME1 stores air (the darkest part of a radiograph) as the highest values: the
    # service's pixels must follow the inverted stored values, not the stored ones
    import pydicom

    from service.inputs.decoding import decode_upload

    path = dicom_sample("RG1_UNCR.dcm")
    stored = pydicom.dcmread(path).pixel_array.astype(np.float32)
    assert pydicom.dcmread(path).PhotometricInterpretation == "MONOCHROME1"
    pixels = decode_upload(path.read_bytes(), 300, 36_000_000).pixels.astype(np.float32)
    small = np.asarray(Image.fromarray(stored).resize((300, 300), Image.Resampling.BILINEAR))
    correlation = np.corrcoef(pixels.ravel(), small.ravel())[0, 1]
    assert correlation < -0.9, correlation


def test_dicom_uncompressed_and_jpeg2000_agree(client):
    answers = [
        client.post("/predict", content=dicom_sample(n).read_bytes(),
                    headers={"Content-Type": "application/dicom"}).json()["probabilities"]["pneumonia"]
        for n in ("RG1_UNCR.dcm", "RG1_J2KR.dcm")
    ]
    assert answers[0] == pytest.approx(answers[1], abs=1e-6)  # lossless: the same pixels


def test_monochrome1_and_monochrome2_of_one_xray_score_alike(client, normal_jpeg):
    from tests.dicoms import encoded

    answers = [client.post("/predict", content=encoded(normal_jpeg, ExplicitVRLittleEndian, monochrome1=m),
                           headers={"Content-Type": "application/dicom"}).json()["probabilities"]["pneumonia"]
               for m in (False, True)]
    assert answers[0] == pytest.approx(answers[1], abs=0.02)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless,
                                    JPEG2000Lossless, JPEGBaseline8Bit], ids=lambda s: s.name)
def test_chest_dicoms_in_every_transfer_syntax_score_like_the_jpeg(client, normal_jpeg, syntax):
    from tests.dicoms import encoded

    # sent as octet-stream: the DICM preamble is enough to recognise it
    response = client.post("/predict", content=encoded(normal_jpeg, syntax),
                           headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    assert response.json()["input"]["format"] == "dicom"
    jpeg = client.post("/predict", content=normal_jpeg.read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert response.json()["label"] == jpeg.json()["label"]


@pytest.mark.parametrize(
    "name", ["JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEG-LL.dcm", "SC_rgb_jpeg_dcmtk.dcm",
             "emri_small.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm"],
    ids=["jpeg-lossless-8bit", "jpeg-lossless-16bit", "jpeg-baseline-rgb", "multi-frame", "12-bit"],
)
def test_dicom_transfer_syntaxes_and_layouts_decode(name):
    # other modalities, refused by the service; decoded here with the attribute checks off
    from service.inputs.dicom import DicomPolicy, read_dicom

    image, width, height = read_dicom(dicom_sample(name).read_bytes(), policy=DicomPolicy(check=False))
    assert image.mode == "L" and image.size == (width, height) and np.asarray(image).std() > 0


def test_dicom_bits_stored_are_honoured():
    from service.inputs.dicom import DicomPolicy, read_dicom

    # 12 bits stored in 16: stretched over its own range, not a dark 1/16th of 16-bit range
    image, _, _ = read_dicom(dicom_sample("MR-SIEMENS-DICOM-WithOverlays.dcm").read_bytes(),
                             policy=DicomPolicy(check=False))
    assert np.asarray(image).max() == 255


def _with_view(name: str, view) -> bytes:
    dataset = pydicom.dcmread(dicom_sample(name))
    dataset.ViewPosition = view
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("view", ["LL", "RL", "LATERAL", ["LL", "PA"], ["PA", "RL"]])
def test_lateral_dicom_is_refused(client, view):
    response = client.post("/predict", content=_with_view("RG1_UNCR.dcm", view),
                           headers={"Content-Type": "application/dicom"})
    body = assert_error(response, 422, "not_chest_xray")
    assert "ViewPosition" in body["error"]["message"]


def test_frontal_dicom_with_view_is_scored(client):
    response = client.post("/predict", content=_with_view("RG1_UNCR.dcm", "AP"),
                           headers={"Content-Type": "application/dicom"})
    assert response.status_code == 200


def test_batch_keeps_order_and_scores_around_a_bad_file(client, val_images):
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in val_images[:3]]
    files.insert(1, ("files", ("bad.jpeg", b"\xff\xd8\xff\xe0 broken", "image/jpeg")))
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert results[1]["error"]["code"] == "undecodable_image" and results[1]["result"] is None
    for i, path in zip((0, 2, 3), val_images[:3]):
        single = client.post("/predict", content=path.read_bytes(), headers={"Content-Type": "image/jpeg"})
        assert results[i]["result"]["probabilities"]["pneumonia"] == pytest.approx(
            single.json()["probabilities"]["pneumonia"], abs=1e-5)


def test_dicom_reduced_decoding_matches_full_resolution():
    from cxr_common.preprocessing import image_to_pixels
    from service.inputs.dicom import read_dicom

    data = dicom_sample("RG1_UNCR.dcm").read_bytes()
    reduced = image_to_pixels(read_dicom(data, min_side=300)[0])
    full = image_to_pixels(read_dicom(data)[0])
    assert np.abs(reduced.astype(int) - full).mean() < 2.0


@pytest.mark.parametrize("dtype", ["<u2", "<i2", "u1"])
def test_dicom_box_reduction_is_the_same_for_every_stored_type(dtype):
    # 16-bit unsigned values take Pillow's in-place path, the others a float copy: same averages
    from service.inputs.dicom import reduce_stored as _reduce

    high = {"<u2": 4096, "<i2": 2048, "u1": 256}[dtype]
    stored = np.random.default_rng(0).integers(0, high, size=(1200, 1304)).astype(dtype)
    expected = np.rint(stored.astype(np.float64).reshape(300, 4, 326, 4).mean(axis=(1, 3)))
    reduced = _reduce(stored, min_side=300)
    assert reduced.dtype == stored.dtype and reduced.shape == (300, 326)
    assert np.abs(reduced.astype(np.int64) - expected).max() <= 1  # float32 vs float64 rounding
