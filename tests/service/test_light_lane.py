"""The light lane: a single small upload is scored beside heavy work that holds every worker
thread and the admission count, instead of being refused or queued behind it. The heavy input is
a real X-ray as a 6000 px 16-bit PNG (the costliest decode the limits allow), built here."""

from __future__ import annotations

import math
import threading
import time

from service.inference.runners import LIGHT_BYTES, is_light
from tests.service.conftest import deadline_half_way_through_a_file, make_client


def test_what_is_light():
    assert is_light([b"x" * LIGHT_BYTES]) and not is_light([b"x" * (LIGHT_BYTES + 1)])
    assert not is_light([b"x", b"y"])  # a batch is never light


def _heavy_batch(heavy_png: bytes, count: int) -> list:
    return [("files", (f"{i}.png", heavy_png, "image/png")) for i in range(count)]


SETTINGS = {"decode_threads": 1, "max_upload_mb": 200, "max_inflight_upload_mb": 1024}


def test_a_small_request_is_answered_beside_heavy_work(bundled_model, heavy_png, normal_jpeg):
    with make_client(bundled_model, **SETTINGS, request_deadline_s=120) as client:
        scoring = client.app.state.scoring
        heavy: dict = {}
        worker = threading.Thread(target=lambda: heavy.update(
            response=client.post("/predict/batch", files=_heavy_batch(heavy_png, 3))))
        worker.start()
        deadline = time.monotonic() + 30
        while scoring.queued_images < 3 and time.monotonic() < deadline:  # the batch holds the only thread
            time.sleep(0.005)
        small = client.post("/predict", content=normal_jpeg.read_bytes(), headers={"Content-Type": "image/jpeg"})
        still_heavy = worker.is_alive()
        worker.join()
        assert small.status_code == 200, small.text
        assert still_heavy  # answered while the heavy batch (3 x ~2 s of decoding) was still running
        assert heavy["response"].status_code == 200


def test_a_small_request_is_admitted_while_every_thread_finishes_overdue_work(bundled_model, heavy_png,
                                                                              heavy_decode_s, normal_jpeg):
    # the deadline falls inside a file (its thread is still decoding when the 503 comes), with
    # files to spare after it; a small request takes well under it even on a loaded machine
    deadline = deadline_half_way_through_a_file(heavy_decode_s)
    count = math.ceil(deadline / heavy_decode_s) + 3
    with make_client(bundled_model, **SETTINGS, request_deadline_s=deadline) as client:
        scoring = client.app.state.scoring
        overdue = client.post("/predict/batch", files=_heavy_batch(heavy_png, count))
        assert overdue.json()["error"]["code"] == "deadline_exceeded", (overdue.text, heavy_decode_s)
        assert scoring.full and scoring.overdue == 1  # its thread is still decoding it
        assert client.get("/health/ready").status_code == 503
        refused = client.post("/predict", content=heavy_png)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
        small = client.post("/predict", content=normal_jpeg.read_bytes(), headers={"Content-Type": "image/jpeg"})
        assert small.status_code == 200, small.text  # admitted and scored beside it
