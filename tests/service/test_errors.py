"""Every error path: exact status, JSON body with code and request id, and the next good
request still succeeds."""

from __future__ import annotations

import io
import re

import numpy as np
import pydicom
import pytest
from PIL import Image

from service.http.errors import ANSWERS, DOMAIN_CODES
from tests.conftest import REPO_ROOT, dicom_sample
from tests.service.conftest import assert_error, make_client, png_bytes


@pytest.fixture(scope="module")
def small_client(bundled_model):
    """Tight limits so the size and pixel guards can be hit with real files."""
    with make_client(bundled_model, max_upload_mb=1, max_pixels=3_000_000, max_batch_files=3) as client:
        yield client


def _good(client, jpeg) -> None:
    response = client.post("/predict", content=jpeg.read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text


def _truncated(jpeg) -> bytes:
    return jpeg.read_bytes()[: len(jpeg.read_bytes()) // 3]


def _dicom_without_pixels() -> bytes:
    dataset = pydicom.dcmread(dicom_sample("RG1_UNCR.dcm"))
    del dataset.PixelData
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


CASES = {
    # name: (request kwargs builder, status, code)
    "no body": (lambda j: {}, 400, "missing_file"),
    "multipart without field": (lambda j: {"files": {"other": ("x", b"123", "image/jpeg")}}, 400, "missing_file"),
    "multipart without boundary": (lambda j: {"content": b"--zzz\r\nbroken", "headers": {
        "Content-Type": "multipart/form-data"}}, 400, "bad_request"),
    "multipart cut short": (lambda j: {"content": b"--zzz\r\nbroken", "headers": {
        "Content-Type": "multipart/form-data; boundary=zzz"}}, 400, "missing_file"),
    "json body": (lambda j: {"json": {"image": "base64..."}}, 415, "unsupported_media_type"),
    "text as jpeg": (lambda j: {"content": b"hello", "headers": {"Content-Type": "image/jpeg"}},
                     415, "unsupported_media_type"),
    "gif": (lambda j: {"content": b"GIF89a" + bytes(100), "headers": {"Content-Type": "image/png"}},
            415, "unsupported_media_type"),
    "truncated jpeg": (lambda j: {"content": _truncated(j), "headers": {"Content-Type": "image/jpeg"}},
                       422, "undecodable_image"),
    "corrupt png": (lambda j: {"content": b"\x89PNG\r\n\x1a\n" + bytes(64), "headers": {
        "Content-Type": "image/png"}}, 422, "undecodable_image"),
    "corrupt dicom": (lambda j: {"content": bytes(128) + b"DICM" + b"\x02\x00garbage" * 10, "headers": {
        "Content-Type": "application/dicom"}}, 422, "undecodable_image"),
    "dicom without pixels": (lambda j: {"content": _dicom_without_pixels(), "headers": {
        "Content-Type": "application/dicom"}}, 422, "undecodable_image"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_a_clear_4xx(client, normal_jpeg, case):
    build, status, code = CASES[case]
    assert_error(client.post("/predict", **build(normal_jpeg)), status, code)
    _good(client, normal_jpeg)


def test_upload_over_the_limit_is_413(small_client, normal_jpeg):
    big = np.random.default_rng(0).integers(0, 255, (1200, 1200), dtype=np.uint8)  # ~1.4 MB PNG
    data = png_bytes(Image.fromarray(big))
    assert len(data) > 1024 * 1024
    assert_error(small_client.post("/predict", content=data, headers={"Content-Type": "image/png"}),
                 413, "payload_too_large")
    assert_error(small_client.post("/predict", files={"file": ("big.png", data, "image/png")}),
                 413, "payload_too_large")
    _good(small_client, normal_jpeg)


def test_upload_over_the_limit_without_content_length_is_413(small_client, normal_jpeg):
    # a chunked upload declares no length: the limit is enforced while reading
    def chunks():
        for _ in range(40):
            yield bytes(64 * 1024)

    response = small_client.post("/predict", content=chunks(), headers={"Content-Type": "image/jpeg"})
    assert_error(response, 413, "payload_too_large")
    _good(small_client, normal_jpeg)


def test_decompression_bomb_is_422(small_client, normal_jpeg):
    # a 3000x3000 single-colour PNG is a few KB but decodes to 9M pixels (> 3M allowed here)
    bomb = png_bytes(Image.new("L", (3000, 3000)))
    assert len(bomb) < 100_000
    body = assert_error(small_client.post("/predict", content=bomb, headers={"Content-Type": "image/png"}),
                        422, "image_too_large")
    assert "9000000" in body["error"]["message"]
    _good(small_client, normal_jpeg)


def test_dicom_over_the_pixel_limit_is_422(bundled_model, normal_jpeg):
    # RG1 is 1841x1955 = 3.6M pixels, checked from its header before any decoding
    with make_client(bundled_model, max_pixels=3_000_000) as client:
        response = client.post("/predict", content=dicom_sample("RG1_UNCR.dcm").read_bytes(),
                               headers={"Content-Type": "application/dicom"})
        assert_error(response, 422, "image_too_large")
        _good(client, normal_jpeg)


def test_too_many_batch_files_is_400(small_client, val_images):
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in val_images[:4]]
    body = assert_error(small_client.post("/predict/batch", files=files), 400, "bad_request")
    assert "3" in body["error"]["message"]
    ok = small_client.post("/predict/batch", files=files[:3])
    assert ok.status_code == 200 and len(ok.json()["results"]) == 3


def test_batch_needs_multipart(client):
    assert_error(client.post("/predict/batch", content=b"x", headers={"Content-Type": "image/jpeg"}),
                 415, "unsupported_media_type")
    assert_error(client.post("/predict/batch", files={"file": ("x", b"1", "image/jpeg")}), 400, "missing_file")


def test_unknown_route_and_method(client):
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/predict"), 405, "method_not_allowed")


def test_unexpected_error_is_a_json_500_with_the_request_id(bundled_model, normal_jpeg):
    with make_client(bundled_model) as client:
        async def broken(files, heatmap, stop):
            raise RuntimeError("a bug")

        client.app.state.scoring.runner.score = broken
        data = normal_jpeg.read_bytes()
        for sent in ({"content": data, "headers": {"Content-Type": "image/jpeg"}},  # raw body
                     {"files": {"file": ("x.jpeg", data, "image/jpeg")}}):  # multipart
            response = client.post("/predict", **sent)
            assert response.status_code == 500 and response.headers["content-type"] == "application/json"
            body = response.json()
            assert body["error"]["code"] == "internal_error" and "a bug" not in body["error"]["message"]
            assert len(body["request_id"]) == 32  # the id the log line carries, to find the traceback
            assert response.headers["x-request-id"] == body["request_id"]
            assert response.headers["connection"] == "close"  # never a silent close mid-answer


def _readme_error_rows() -> dict[str, tuple[int, int | None]]:
    """code -> (status, Retry-After) as the README's error table states them."""
    rows: dict[str, tuple[int, int | None]] = {}
    for line in (REPO_ROOT / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit() and "`" in cells[1]:
            retry = int(cells[2]) if cells[2] else None
            rows.update({code: (int(cells[0]), retry) for code in re.findall(r"`([a-z_]+)`", cells[1])})
    return rows


def test_the_readme_error_table_is_the_services():
    stated = _readme_error_rows()
    assert stated == {code: (answer.status, answer.retry_after_s) for code, answer in ANSWERS.items()}


def test_no_module_outside_the_http_edge_names_a_status():
    # statuses are decided in service/http/errors.py; inside, code and prose name error codes
    statuses = "|".join(str(status) for status in sorted({answer.status for answer in ANSWERS.values()}))
    pattern = re.compile(rf"(?<![\w.,])({statuses})(?!\w|,\d)")  # not 1,500 or 5.03
    found = [f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
             for path in sorted((REPO_ROOT / "service").rglob("*.py")) if "http" not in path.parts
             for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)


def test_every_domain_error_has_an_answer():
    assert {code for _, code in DOMAIN_CODES} <= set(ANSWERS)
