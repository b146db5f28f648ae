"""The Open Inference Protocol through the real Triton client (tritonclient[http]) against the
service in its own process: health, metadata, and infer, whose answer must equal /predict's
for the same bytes; refusals and errors with /predict's statuses and codes, in the protocol's
shape."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from tests.conftest import dicom_sample
from tests.dicoms import encoded
from tests.servers import running_service

http = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the dev extra)")
from tritonclient.utils import InferenceServerException  # noqa: E402

API_KEY = "oip-test-key"
KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def service(bundled_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("oip") / "server.log"
    with running_service(log, bundled_model, env={"CXR_API_KEYS": API_KEY, "CXR_MAX_BATCH_FILES": "4"}) as (url, _):
        model = httpx.get(f"{url}/model", timeout=10).json()
        yield url, model


@pytest.fixture(scope="module")
def client(service):
    url, _ = service
    triton = http.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
    yield triton
    triton.close()


def infer(client, name: str, images: list[bytes], binary_outputs: bool = True, outputs: list[str] | None = None):
    tensor = http.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))  # binary data: tritonclient's default
    requested = [http.InferRequestedOutput(o, binary_data=binary_outputs) for o in outputs] if outputs else None
    # a copy: tritonclient adds its own headers to the dict it is given
    return client.infer(name, [tensor], outputs=requested, headers=dict(KEY), request_id="req-1")


def predict(url: str, data: bytes) -> dict:
    response = httpx.post(f"{url}/predict", content=data, headers={**KEY, "Content-Type": "application/octet-stream"},
                          timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_health_and_metadata(service, client):
    _, model = service
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "cxr-pneumonia"
    assert client.is_model_ready(model["name"])
    assert client.is_model_ready(model["name"], model_version=model["version"])
    metadata = client.get_model_metadata(model["name"])
    assert metadata["name"] == model["name"] and metadata["versions"] == [model["version"]]
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    names = [o["name"] for o in metadata["outputs"]]
    assert names[:3] == ["pneumonia_probability", "label", "threshold"]
    assert ("viral_probability" in names) == ("viral_probability" in model["outputs"])
    with pytest.raises(InferenceServerException) as refused:
        client.get_model_metadata("no-such-model")
    assert refused.value.status() == "404" and model["name"] in refused.value.message()


@pytest.mark.parametrize("binary_outputs", [True, False])
def test_infer_answers_what_predict_answers(service, client, val_images, binary_outputs):
    url, model = service
    images = [val_images[0].read_bytes(), val_images[-1].read_bytes(),
              encoded(val_images[-2], JPEG2000Lossless), encoded(val_images[1], ExplicitVRLittleEndian)]
    names = [o["name"] for o in client.get_model_metadata(model["name"])["outputs"]]
    result = infer(client, model["name"], images, binary_outputs, outputs=names)
    answer = result.get_response()
    assert answer["model_name"] == model["name"] and answer["model_version"] == model["version"]
    assert answer["id"] == "req-1"
    for i, data in enumerate(images):
        expected = predict(url, data)
        assert result.as_numpy("pneumonia_probability")[i] == expected["probabilities"]["pneumonia"]
        assert text(result.as_numpy("label")[i]) == expected["label"]
        assert result.as_numpy("threshold")[i] == expected["threshold"]
        if expected.get("pneumonia_type"):
            kind = expected["pneumonia_type"]
            assert text(result.as_numpy("pneumonia_type")[i]) == kind["label"]
            assert result.as_numpy("viral_probability")[i] == kind["probabilities"]["viral"]
            assert result.as_numpy("bacterial_probability")[i] == kind["probabilities"]["bacterial"]
    labels = {text(v) for v in result.as_numpy("label")}
    assert labels == {"normal", "pneumonia"}  # the val images span both classes


def test_outputs_asked_for_are_the_outputs_answered(service, client, normal_jpeg):
    _, model = service
    result = infer(client, model["name"], [normal_jpeg.read_bytes()], outputs=["label"])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert result.as_numpy("pneumonia_probability") is None


@pytest.mark.parametrize(("images", "status", "code"), [
    ([b"this is no image"], "415", "unsupported_media_type"),
    ([b""], "400", "empty_file"),
    (["ct"], "422", "not_chest_xray"),
    (["xray"] * 5, "400", "bad_request"),  # over CXR_MAX_BATCH_FILES
])
def test_refusals_have_predicts_status_and_code(service, client, normal_jpeg, images, status, code):
    _, model = service
    named = {"ct": dicom_sample("CT_small.dcm").read_bytes(), "xray": normal_jpeg.read_bytes()}
    with pytest.raises(InferenceServerException) as refused:
        infer(client, model["name"], [named.get(i, i) if isinstance(i, str) else i for i in images])
    assert refused.value.status() == status, refused.value.message()


def test_error_shape_is_the_protocols_with_the_code_and_request_id(service, normal_jpeg):
    url, model = service
    infer_url = f"{url}/v2/models/{model['name']}/infer"
    # no key: 401 before the body is read
    response = httpx.post(infer_url, content=b"{}", timeout=10)
    body = response.json()
    assert response.status_code == 401 and body["code"] == "unauthorized"
    assert isinstance(body["error"], str) and body["request_id"] == response.headers["x-request-id"]
    # an image as JSON text cannot be decoded: the binary extension is required
    response = httpx.post(infer_url, headers=KEY, timeout=10, json={"inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [1], "data": ["not binary"]}]})
    assert response.status_code == 400 and response.json()["code"] == "bad_request"
    assert "binary" in response.json()["error"]
    # sizes that do not add up
    header = b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 9}}]}'
    response = httpx.post(infer_url, content=header + b"\x10\x00\x00\x00abcde", timeout=10,
                          headers={**KEY, "Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400 and "element 0 says 16 bytes" in response.json()["error"]
    # a route that does not exist under /v2 answers in the protocol's shape too
    response = httpx.get(f"{url}/v2/nothing-here", timeout=10)
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    # and /predict keeps its own shape
    response = httpx.post(f"{url}/predict", content=b"", timeout=10)
    assert response.json()["error"]["code"] == "unauthorized"
