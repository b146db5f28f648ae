"""Health, model info, metrics, request ids, API keys, logs and the OpenAPI page."""

from __future__ import annotations

import io
import json
import logging
import re

import pydicom
import pytest
from fastapi import Depends, Request

from service.config import Settings
from service.http.lean_route import LeanRoute
from service.process.logs import JsonFormatter
from tests.conftest import REPO_ROOT, dicom_sample
from tests.service.conftest import assert_error, make_client


def test_health(client):
    assert client.get("/health/live").json() == {"status": "ok"}
    assert client.get("/health/ready").json() == {"status": "ready"}


def test_not_ready_before_startup(bundled_model):
    client = make_client(bundled_model)  # lifespan not entered: no model loaded yet
    response = client.get("/health/ready")
    assert response.status_code == 503 and response.json() == {"status": "not_ready"}
    assert client.get("/health/live").status_code == 200


def test_model_info(client):
    info = client.get("/model").json()
    assert info["labels"] == ["normal", "pneumonia"]
    assert 0 < info["threshold"] < 1 and info["input_size"] > 0 and len(info["sha256"]) == 64
    assert info["execution_provider"] == "CPUExecutionProvider"  # no GPU on this machine
    assert {"accuracy", "roc_auc", "sensitivity", "specificity"} <= set(info["metrics"])


def test_metrics_count_requests_and_batches(client, normal_jpeg):
    client.post("/predict", content=normal_jpeg.read_bytes(), headers={"Content-Type": "image/jpeg"})
    client.post("/predict", content=b"nope", headers={"Content-Type": "image/jpeg"})
    text = client.get("/metrics").text
    assert 'cxr_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'cxr_requests_total{method="POST",route="/predict",status="415"}' in text
    assert 'cxr_request_latency_seconds_bucket{le="0.5",route="/predict"}' in text
    assert "cxr_inference_batch_size_count" in text
    assert 'cxr_model_info{name="' in text


def test_metrics_can_be_switched_off(bundled_model):
    with make_client(bundled_model, metrics_enabled=False) as client:
        assert client.get("/metrics").status_code == 404


def test_client_request_id_is_echoed(client, normal_jpeg):
    response = client.post("/predict", content=normal_jpeg.read_bytes(),
                           headers={"Content-Type": "image/jpeg", "X-Request-ID": "pacs-42.7"})
    assert response.headers["x-request-id"] == "pacs-42.7" and response.json()["request_id"] == "pacs-42.7"
    odd = client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert odd.headers["x-request-id"] != "bad id\twith spaces" and len(odd.headers["x-request-id"]) == 32


@pytest.fixture(scope="module")
def keyed_client(bundled_model, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text("# integration keys\nfile-key-1\n")
    with make_client(bundled_model, api_keys="env-key-1, env-key-2", api_keys_file=key_file) as client:
        yield client


@pytest.mark.parametrize("headers", [
    {"X-API-Key": "env-key-2"}, {"Authorization": "Bearer file-key-1"}, {"X-API-Key": "file-key-1"},
])
def test_api_keys_accepted(keyed_client, normal_jpeg, headers):
    response = keyed_client.post("/predict", content=normal_jpeg.read_bytes(),
                                 headers={"Content-Type": "image/jpeg", **headers})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer env-key-1x"}])
def test_api_keys_refused(keyed_client, normal_jpeg, headers):
    response = keyed_client.post("/predict", content=normal_jpeg.read_bytes(),
                                 headers={"Content-Type": "image/jpeg", **headers})
    assert_error(response, 401, "unauthorized")
    multipart = keyed_client.post("/predict", files={"file": ("x", normal_jpeg.read_bytes())}, headers=headers)
    assert_error(multipart, 401, "unauthorized")
    batch = keyed_client.post("/predict/batch", files={"files": ("x", normal_jpeg.read_bytes())}, headers=headers)
    assert_error(batch, 401, "unauthorized")


def test_health_and_model_stay_open_with_keys(keyed_client):
    assert keyed_client.get("/health/ready").status_code == 200
    assert keyed_client.get("/model").status_code == 200


def test_settings_from_an_environment(tmp_path):
    environ = {"CXR_PORT": "9123", "CXR_API_KEYS": "a, b", "cxr_device": "cpu", "CXR_CACHE_DIR": "/elsewhere",
               "HOME": "/root"}
    settings = Settings.from_env(environ, host="::1")
    assert (settings.host, settings.port, settings.device.value) == ("::1", 9123, "cpu")
    assert [key.get_secret_value() for key in settings.api_keys] == ["a", "b"]
    assert "'a'" not in repr(settings) and "'b'" not in repr(settings)  # keys are secrets
    assert Settings.from_env({}) == Settings()  # nothing from the process's own environment
    with pytest.raises(ValueError, match="CXR_API_KEYS_FILE"):
        Settings(api_keys_file=tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="port"):
        Settings.from_env({"CXR_PORT": "not a number"})


def test_the_readme_configuration_table_names_every_setting():
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `CXR_")]
    named = {name.lower() for row in rows for name in re.findall(r"`CXR_([A-Z0-9_]+)`", row)}
    assert named == set(Settings.model_fields)


def test_logs_are_json_without_patient_data(client, caplog, normal_jpeg):
    caplog.set_level(logging.INFO)
    dataset = pydicom.dcmread(dicom_sample("RG1_UNCR.dcm"))
    dataset.PatientName = "DOE^JANE"
    dataset.PatientID = "MRN-99999"
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    client.post("/predict", files={"file": ("secret-name-1234.dcm", buffer.getvalue(), "application/dicom")})
    client.post("/predict", files={"file": ("secret-name-1234.jpeg", b"broken", "image/jpeg")})
    lines = [JsonFormatter().format(record) for record in caplog.records]
    access = [json.loads(line) for line in lines if '"service.access"' in line]
    assert {a["status"] for a in access} >= {200, 415}
    assert all({"request_id", "route", "status", "latency_ms"} <= set(a) for a in access)
    everything = "\n".join(lines)
    for secret in ("DOE", "JANE", "MRN-99999", "secret-name-1234"):
        assert secret not in everything


def test_openapi_documents_every_route(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for route in ("/predict", "/predict/batch", "/health/live", "/health/ready", "/model", "/metrics"):
        assert route in paths, route
    predict = paths["/predict"]["post"]
    assert {"200", "400", "401", "413", "415", "422"} <= set(predict["responses"])
    assert {"multipart/form-data", "image/jpeg", "application/dicom"} <= set(predict["requestBody"]["content"])
    assert predict["responses"]["422"]["content"]["application/json"]["example"]["error"]["code"]
    assert client.get("/docs").status_code == 200


def test_a_lean_route_refuses_what_it_would_not_run():
    async def needs_key(request: Request) -> None: ...

    async def with_parameter(request: Request, heatmap: bool = False): ...

    async def plain(request: Request): ...

    with pytest.raises(TypeError):
        LeanRoute("/x", plain, dependencies=[Depends(needs_key)])  # would skip the key check
    with pytest.raises(TypeError):
        LeanRoute("/x", with_parameter)  # would never receive the parameter
    assert LeanRoute("/x", plain).get_route_handler() is plain
