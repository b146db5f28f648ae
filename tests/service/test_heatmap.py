"""?heatmap=true: the pneumonia map as a grid and as a PNG over the upload, upright, at most 512 px;
without it the answer is unchanged. The map's faithfulness is tested in
tests/model_export/test_faithfulness.py."""

from __future__ import annotations

import base64
import io

import numpy as np
import onnx
import pytest
from PIL import Image

from cxr_common.model_metadata import CAM_OUTPUT
from service.inference.heatmap import MAX_SIDE, cam_to_values
from service.inputs.decoding import decode_upload
from tests.conftest import dicom_sample
from tests.service.conftest import assert_error, make_client


def _png(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    assert image.format == "PNG"
    return image


def _check_heatmap(heatmap: dict, width: int, height: int) -> np.ndarray:
    values = np.array(heatmap["values"])
    assert values.shape == (9, 9)  # the network's own resolution
    assert values.min() >= 0 and values.max() <= 1
    overlay, xray = _png(heatmap["png"]), _png(heatmap["xray_png"])
    assert overlay.size == xray.size and max(overlay.size) <= MAX_SIDE
    assert overlay.mode == "RGB" and xray.mode == "L"
    assert overlay.size[0] / overlay.size[1] == pytest.approx(width / height, rel=0.01)  # not squashed
    return values


def test_raw_and_multipart_heatmaps(client, pneumonia_jpeg):
    data = pneumonia_jpeg.read_bytes()
    raw = client.post("/predict?heatmap=true", content=data, headers={"Content-Type": "image/jpeg"})
    multipart = client.post("/predict?heatmap=true", files={"file": ("x.jpeg", data, "image/jpeg")})
    for response in (raw, multipart):
        assert response.status_code == 200, response.text
        body = response.json()
        values = _check_heatmap(body["heatmap"], body["input"]["width"], body["input"]["height"])
        assert body["label"] == "pneumonia" and values.max() == 1.0  # the strongest cell is the scale
    assert raw.json()["heatmap"] == multipart.json()["heatmap"]


def test_without_the_parameter_nothing_changes(client, pneumonia_jpeg):
    data = pneumonia_jpeg.read_bytes()
    plain = client.post("/predict", content=data, headers={"Content-Type": "image/jpeg"}).json()
    mapped = client.post("/predict?heatmap=true", content=data, headers={"Content-Type": "image/jpeg"}).json()
    assert "heatmap" not in plain
    assert {k: v for k, v in mapped.items() if k not in ("heatmap", "request_id", "elapsed_ms")} == {
        k: v for k, v in plain.items() if k not in ("request_id", "elapsed_ms")}
    assert decode_upload(data, 300, 36_000_000).preview is None  # no preview decoded either


def test_batch_heatmaps_per_file(client, val_images):
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in val_images[:2]]
    files.append(("files", ("bad.jpeg", b"\xff\xd8\xff broken", "image/jpeg")))
    body = client.post("/predict/batch?heatmap=true", files=files).json()
    assert [item["error"] is None for item in body["results"]] == [True, True, False]
    for item in body["results"][:2]:
        _check_heatmap(item["result"]["heatmap"], item["result"]["input"]["width"], item["result"]["input"]["height"])
    plain = client.post("/predict/batch", files=files[:1]).json()
    assert "heatmap" not in plain["results"][0]["result"]


def test_the_map_follows_exif_orientation(client, pneumonia_jpeg):
    # the same X-ray stored sideways with EXIF "rotate 90" must give the upright map and PNG
    with Image.open(pneumonia_jpeg) as image:
        upright = image.convert("L")
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera would store
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    buffers = {}
    for name, image, extra in (("upright", upright, {}), ("sideways", sideways, {"exif": exif.tobytes()})):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95, **extra)
        buffers[name] = buffer.getvalue()
    maps = {name: client.post("/predict?heatmap=true", content=data).json() for name, data in buffers.items()}
    for body in maps.values():
        heatmap = body["heatmap"]
        assert _png(heatmap["png"]).size[0] > _png(heatmap["png"]).size[1]  # landscape, like the X-ray
    assert np.abs(np.array(maps["upright"]["heatmap"]["values"])
                  - np.array(maps["sideways"]["heatmap"]["values"])).max() < 0.1


def test_dicom_heatmap_is_drawn_over_the_inverted_image(client):
    # RG1_UNCR is MONOCHROME1: the PNG under the map must show air dark, as the model saw it
    data = dicom_sample("RG1_UNCR.dcm").read_bytes()
    body = client.post("/predict?heatmap=true", content=data, headers={"Content-Type": "application/dicom"}).json()
    xray = np.asarray(_png(body["heatmap"]["xray_png"]), dtype=np.float32)
    pixels = decode_upload(data, 300, 36_000_000).pixels.astype(np.float32)
    small = np.asarray(Image.fromarray(xray).resize((300, 300), Image.Resampling.BILINEAR))
    assert np.corrcoef(small.ravel(), pixels.ravel())[0, 1] > 0.95


def test_values_are_the_positive_evidence_scaled_by_the_strongest_cell():
    cam = np.array([[-3.0, 0.0], [1.0, 4.0]])
    assert cam_to_values(cam).tolist() == [[0.0, 0.0], [0.25, 1.0]]
    assert cam_to_values(-np.ones((2, 2))).tolist() == [[0.0, 0.0], [0.0, 0.0]]  # nothing for pneumonia


def test_a_model_without_a_cam_refuses_heatmaps_and_still_scores(bundled_model, normal_jpeg, tmp_path):
    model = onnx.load(str(bundled_model))
    kept = [o for o in model.graph.output if o.name != CAM_OUTPUT]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    without = tmp_path / "no-cam.onnx"
    onnx.save(model, str(without))
    with make_client(without) as client:
        data = normal_jpeg.read_bytes()
        assert_error(client.post("/predict?heatmap=true", content=data), 400, "heatmap_unavailable")
        assert client.post("/predict", content=data).status_code == 200


def test_a_malformed_parameter_is_a_400(client, normal_jpeg):
    data = normal_jpeg.read_bytes()
    single = assert_error(client.post("/predict?heatmap=maybe", content=data), 400, "bad_request")
    # /predict reads its flag itself (service.http.lean_route), /predict/batch through FastAPI: the same words
    batch = assert_error(client.post("/predict/batch?heatmap=maybe", files=[("files", ("a.jpeg", data, "image/jpeg"))]),
                         400, "bad_request")
    assert single["error"]["message"] == batch["error"]["message"]
    assert "query.heatmap" in single["error"]["message"]


@pytest.mark.parametrize("value", ["true", "1", "yes", "on", "True"])
def test_the_heatmap_flag_reads_as_fastapi_reads_it(client, normal_jpeg, value):
    answer = client.post(f"/predict?heatmap={value}", content=normal_jpeg.read_bytes())
    assert answer.status_code == 200 and answer.json()["heatmap"]["png"]
