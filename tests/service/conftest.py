"""The real app on the bundled model, through TestClient (lifespan runs)."""

from __future__ import annotations

import io
import math
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.config import Settings
from service.http.app import create_app
from service.inputs.decoding import decode_upload


def make_client(bundled_model, **settings) -> TestClient:
    # addressed as localhost: a loopback service answers only to loopback Host names
    return TestClient(create_app(Settings(model_path=bundled_model, **settings)), raise_server_exceptions=False,
                      base_url="http://localhost")


@pytest.fixture(scope="module")
def client(request, bundled_model):
    """The app on the bundled model, started, with the test module's CLIENT_SETTINGS if any."""
    with make_client(bundled_model, **getattr(request.module, "CLIENT_SETTINGS", {})) as test_client:
        yield test_client


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.fixture(scope="module")
def heavy_png(val_images) -> bytes:
    """A real X-ray as a 6000 px 16-bit PNG: the costliest decode the limits allow."""
    with Image.open(val_images[1]) as image:
        big = image.convert("L").resize((6000, 6000)).convert("I;16")
    buffer = io.BytesIO()
    big.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def heavy_decode_s(heavy_png) -> float:
    """What decoding `heavy_png` costs on this machine now, warm (0.7 s to 2 s across machines
    seen): tests that need work to outlast a deadline size the deadline from it, not a constant."""
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        decode_upload(heavy_png, 300, 6000 * 6000)
        timings.append(time.perf_counter() - started)
    return min(timings[1:])


def deadline_half_way_through_a_file(decode_s: float) -> float:
    """A request deadline that falls half-way through one of several heavy files decoded one after
    another (the third or a later one), and never under 1 s, what a small request may need on a
    loaded machine."""
    files_before = max(2, math.ceil(1.0 / decode_s - 0.5))
    return (files_before + 0.5) * decode_s
