"""The light lane: a single small upload is scored beside heavy work that holds every worker
thread and the admission count, instead of being refused or queued behind it. The heavy input is
a real X-ray as a 6000 px 16-bit PNG (the costliest decode the limits allow), built here."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image

from service.inference.runners import LIGHT_BYTES, is_light
from tests.service.conftest import make_client


@pytest.fixture(scope="module")
def heavy_png(val_images) -> bytes:
    with Image.open(val_images[1]) as image:
        big = image.convert("L").resize((6000, 6000)).convert("I;16")
    buffer = io.BytesIO()
    big.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def test_what_is_light():
    assert is_light([b"x" * LIGHT_BYTES]) and not is_light([b"x" * (LIGHT_BYTES + 1)])
    assert not is_light([b"x", b"y"])  # a batch is never light


def test_a_small_request_is_answered_beside_heavy_work(bundled_model, heavy_png, normal_jpeg):
    with make_client(bundled_model, decode_threads=1, max_upload_mb=100) as client:
        heavy: dict = {}
        worker = threading.Thread(target=lambda: heavy.update(response=client.post("/predict", content=heavy_png)))
        worker.start()
        time.sleep(0.3)  # the heavy upload is in and holds the only worker thread
        small = client.post("/predict", content=normal_jpeg.read_bytes(), headers={"Content-Type": "image/jpeg"})
        still_heavy = worker.is_alive()
        worker.join()
        assert small.status_code == 200, small.text
        assert still_heavy  # answered while the heavy upload was still being decoded
        assert heavy["response"].status_code == 200


def test_a_small_request_is_admitted_while_every_thread_finishes_overdue_work(bundled_model, heavy_png,
                                                                              normal_jpeg):
    settings = {"decode_threads": 1, "max_upload_mb": 100, "request_deadline_s": 1.0}  # the heavy decode takes ~2 s
    with make_client(bundled_model, **settings) as client:
        scoring = client.app.state.scoring
        assert client.post("/predict", content=heavy_png).json()["error"]["code"] == "deadline_exceeded"
        assert scoring.full and scoring.overdue == 1  # its thread is still decoding it
        assert client.get("/health/ready").status_code == 503
        refused = client.post("/predict", content=heavy_png)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
        small = client.post("/predict", content=normal_jpeg.read_bytes(), headers={"Content-Type": "image/jpeg"})
        assert small.status_code == 200, small.text  # admitted and scored beside it
