"""What is not a frontal chest X-ray is refused, with a reason; real chest X-rays of every format
we read pass. Real inputs only: pydicom-data's other modalities, the sample images that
scikit-image, scikit-learn and matplotlib ship, synthetic images, and the shared X-rays."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from model_export.ood import package_images, synthetic_images
from tests.conftest import dicom_sample
from tests.dicoms import encoded
from tests.service.conftest import assert_error, make_client, png_bytes


def _post(client, data: bytes):
    return client.post("/predict", content=data, headers={"Content-Type": "application/octet-stream"})


@pytest.mark.parametrize("name, attribute", [
    ("693_UNCR.dcm", "Modality"), ("MR2_UNCR.dcm", "Modality"), ("US1_UNCR.dcm", "Modality"),
    ("JPEG-LL.dcm", "Modality"), ("SC_rgb.dcm", "Modality"), ("RG3_UNCR.dcm", "BodyPartExamined"),
])
def test_other_modalities_and_body_parts_are_refused_by_their_attributes(client, name, attribute):
    body = assert_error(_post(client, dicom_sample(name).read_bytes()), 422, "not_chest_xray")
    assert attribute in body["error"]["message"]


def test_secondary_capture_is_refused_unless_configured(bundled_model, normal_jpeg):
    data = encoded(normal_jpeg, ExplicitVRLittleEndian, SOPClassUID="1.2.840.10008.5.1.4.1.1.7")
    with make_client(bundled_model) as client:
        body = assert_error(_post(client, data), 422, "not_chest_xray")
        assert "SOPClassUID" in body["error"]["message"] and "Secondary Capture" in body["error"]["message"]
    with make_client(bundled_model, dicom_extra_sop_classes="1.2.840.10008.5.1.4.1.1.7") as client:
        assert _post(client, data).status_code == 200


def _without_attributes(name: str) -> bytes:
    dataset = pydicom.dcmread(dicom_sample(name))
    for keyword in ("Modality", "BodyPartExamined"):
        if keyword in dataset:
            delattr(dataset, keyword)
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # and claiming to be CR
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["693_UNCR.dcm", "MR2_UNCR.dcm"])
def test_a_dicom_whose_attributes_lie_is_caught_by_the_image_check(client, name):
    body = assert_error(_post(client, _without_attributes(name)), 422, "not_chest_xray")
    assert "image check" in body["error"]["message"] and "threshold" in body["error"]["message"]


@pytest.fixture(scope="module")
def photographs() -> dict[str, bytes]:
    found = package_images()
    return {name: found[name] for name in ("skimage astronaut", "skimage page", "sklearn china",
                                           "matplotlib grace_hopper")}


def test_photographs_and_documents_are_refused_by_the_image_check(client, photographs):
    for name, data in photographs.items():
        body = assert_error(_post(client, data), 422, "not_chest_xray")
        assert "image check" in body["error"]["message"], name


def test_synthetic_images_are_refused(client, normal_jpeg):
    found = synthetic_images(normal_jpeg)
    for name in ("black", "white", "uniform noise", "horizontal gradient", "checkerboard 32 px", "text page",
                 "chest X-ray negative"):
        assert_error(_post(client, found[name]), 422, "not_chest_xray")


def test_real_chest_xrays_pass_in_every_format(client, val_images, shared_data):
    for path in val_images:  # full-resolution originals
        assert _post(client, path.read_bytes()).status_code == 200, path.name
    copies = sorted((shared_data / "train" / "NORMAL").glob("IM-01*.jpeg"))[:4]  # some are 224 px copies
    for path in copies:
        assert _post(client, path.read_bytes()).status_code == 200, path.name
    with Image.open(val_images[0]) as image:
        sixteen = Image.fromarray((np.asarray(image.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    assert _post(client, png_bytes(sixteen)).status_code == 200
    for data in (encoded(val_images[0], ExplicitVRLittleEndian, monochrome1=True),
                 encoded(val_images[-1], JPEG2000Lossless), dicom_sample("RG1_UNCR.dcm").read_bytes()):
        assert _post(client, data).status_code == 200


def test_flag_mode_scores_with_a_warning_and_off_mode_without(bundled_model, photographs, normal_jpeg):
    photo = photographs["sklearn china"]
    with make_client(bundled_model, input_check="flag") as client:
        body = _post(client, photo).json()
        assert body["label"] in ("normal", "pneumonia") and "image check" in body["warning"]
        assert _post(client, normal_jpeg.read_bytes()).json()["warning"] is None
    with make_client(bundled_model, input_check="off") as client:
        body = _post(client, photo).json()
        assert body["label"] in ("normal", "pneumonia") and body["warning"] is None
        # the DICOM attributes still apply
        assert_error(_post(client, dicom_sample("693_UNCR.dcm").read_bytes()), 422, "not_chest_xray")


def test_a_batch_refuses_per_file_and_metrics_count_by_reason(client, photographs, val_images):
    files = [("files", ("a.jpeg", val_images[0].read_bytes(), "image/jpeg")),
             ("files", ("photo.jpg", photographs["sklearn china"], "image/jpeg")),
             ("files", ("ct.dcm", dicom_sample("693_UNCR.dcm").read_bytes(), "application/dicom")),
             ("files", ("b.jpeg", val_images[-1].read_bytes(), "image/jpeg"))]
    results = client.post("/predict/batch", files=files).json()["results"]
    assert results[0]["result"] and results[3]["result"]
    assert results[1]["error"]["code"] == results[2]["error"]["code"] == "not_chest_xray"
    metrics = client.get("/metrics").text
    assert 'cxr_refusals_total{reason="image_check"}' in metrics
    assert 'cxr_refusals_total{reason="Modality"}' in metrics
