"""Web and API hygiene: what every answer carries, who may call, what the metrics show."""

from __future__ import annotations

import pytest

from service.config import Settings
from tests.service.conftest import assert_error, make_client


def test_only_a_leading_hash_makes_a_key_file_line_a_comment(tmp_path, bundled_model):
    keys = tmp_path / "keys"
    keys.write_text("# operators' keys\n  Tr0ub4dor#3xYz-long-key  \n\n   # an indented comment\nsecond-key\n")
    settings = Settings(model_path=bundled_model, api_keys_file=keys)
    assert [key.get_secret_value() for key in settings.all_api_keys()] == ["Tr0ub4dor#3xYz-long-key", "second-key"]


@pytest.fixture(scope="module")
def keyed(bundled_model):
    with make_client(bundled_model, api_keys="k-1234567890") as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/", "/ui/index.html", "/docs", "/redoc"])
def test_every_page_carries_its_security_headers(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "object-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_answers_with_patient_content_are_not_stored(client, normal_jpeg):
    data = normal_jpeg.read_bytes()
    answer = client.post("/predict?heatmap=true", content=data, headers={"Content-Type": "image/jpeg"})
    assert answer.status_code == 200 and answer.json()["heatmap"]["png"]
    batch = client.post("/predict/batch", files=[("files", ("a.jpg", data, "image/jpeg"))])
    refused = client.post("/predict", content=b"not an image", headers={"Content-Type": "image/jpeg"})
    for response in (answer, batch, refused, client.get("/model"), client.get("/metrics")):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
    asset = client.get("/ui/page.js")
    assert asset.status_code == 200 and asset.headers["cache-control"] == "no-cache"  # revalidated


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "127.0.0.1.nip.io", ""])
def test_a_foreign_host_is_refused(client, host):
    response = client.get("/model", headers={"Host": host})
    assert_error(response, 400, "host_not_allowed")
    assert client.get("/health/ready", headers={"Host": host}).status_code == 200  # probes by pod IP


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST"])
def test_loopback_names_are_answered(client, host):
    assert client.get("/model", headers={"Host": host}).status_code == 200


def test_hosts_allowed_by_setting(bundled_model):
    assert Settings(model_path=bundled_model).hosts_allowed() == ["localhost", "127.0.0.1", "::1"]
    beyond = Settings(model_path=bundled_model, host="0.0.0.0", allow_anonymous=True)
    assert beyond.hosts_allowed() == ["*"]  # keys are required there; the Service name varies
    named = Settings(model_path=bundled_model, allowed_hosts="cxr-pneumonia, cxr-pneumonia.default.svc")
    assert named.hosts_allowed() == ["cxr-pneumonia", "cxr-pneumonia.default.svc"]
    with make_client(bundled_model, allowed_hosts="cxr-pneumonia") as client:
        assert client.get("/model", headers={"Host": "cxr-pneumonia:8000"}).status_code == 200
        assert_error(client.get("/model", headers={"Host": "localhost"}), 400, "host_not_allowed")
    with make_client(bundled_model, allowed_hosts="*") as client:
        assert client.get("/model", headers={"Host": "anything.example"}).status_code == 200


def _scored(client) -> float:
    line = next(line for line in client.get("/metrics").text.splitlines() if line.startswith("cxr_predictions_total"))
    return float(line.split()[-1])


def test_a_cross_origin_post_is_refused_before_any_work(client, normal_jpeg):
    before = _scored(client)
    files = [("files", ("a.jpg", normal_jpeg.read_bytes(), "image/jpeg"))]
    response = client.post("/predict/batch?heatmap=true", files=files, headers={"Origin": "https://attacker.example"})
    assert_error(response, 403, "origin_not_allowed")
    assert_error(client.post("/predict", content=b"x", headers={"Origin": "null"}), 403, "origin_not_allowed")
    assert _scored(client) == before
    same = client.post("/predict/batch", files=files, headers={"Origin": "http://localhost"})
    assert same.status_code == 200  # the page at / posting to its own service
    assert _scored(client) == before + 1


def test_allowed_origins_by_setting(bundled_model, normal_jpeg):
    with make_client(bundled_model, allowed_origins="https://viewer.hospital.example") as client:
        response = client.post("/predict", content=normal_jpeg.read_bytes(),
                               headers={"Origin": "https://viewer.hospital.example", "Content-Type": "image/jpeg"})
        assert response.status_code == 200


def test_metrics_need_the_key_when_keys_are_set(keyed, normal_jpeg):
    assert_error(keyed.get("/metrics"), 401, "unauthorized")
    headers = {"X-API-Key": "k-1234567890"}
    before = keyed.get("/metrics", headers=headers).text
    scored = keyed.post("/predict", content=normal_jpeg.read_bytes(), headers={**headers, "Content-Type": "image/jpeg"})
    assert scored.status_code == 200
    after = keyed.get("/metrics", headers={"Authorization": "Bearer k-1234567890"}).text
    # no series names a predicted label: the counters say how many, never which answer
    assert "label=" not in before + after
    assert scored.json()["label"] not in {line.split("{")[0] for line in after.splitlines()}
