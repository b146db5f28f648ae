"""Both runners: concurrent requests get their own answers; with batching they share
onnxruntime runs, and a lone request never waits for companions."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.http.app import create_app
from service.inference.runners import BatchingRunner, DirectRunner
from tests.servers import running_app


def _scores(url: str, images, concurrency: int) -> dict[str, float]:
    def one(path):
        response = httpx.post(f"{url}/predict", content=path.read_bytes(),
                              headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert response.status_code == 200, response.text
        return path.name, response.json()["probabilities"]["pneumonia"]

    with ThreadPoolExecutor(concurrency) as pool:
        return dict(pool.map(one, images))


def _batch_sizes(url: str) -> tuple[int, float]:
    text = httpx.get(f"{url}/metrics").text
    count = float(re.search(r"^cxr_inference_batch_size_count (\S+)$", text, re.M).group(1))
    total = float(re.search(r"^cxr_inference_batch_size_sum (\S+)$", text, re.M).group(1))
    return int(count), total


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_get_their_own_answers(bundled_model, val_images, batching):
    settings = Settings(model_path=bundled_model, batching=batching, batch_max_wait_ms=20)
    with running_app(create_app(settings)) as url:
        one_by_one = _scores(url, val_images, concurrency=1)
        runs_before, images_before = _batch_sizes(url)
        together = _scores(url, val_images * 2, concurrency=16)
        runs, images = _batch_sizes(url)
    assert together.keys() == one_by_one.keys()
    for name, p in together.items():
        assert p == pytest.approx(one_by_one[name], abs=1e-5)
    assert images - images_before == 32  # every image went through exactly one run
    if batching:
        assert runs - runs_before < 32  # ...and several shared a run
    else:
        assert runs - runs_before == 32


def test_a_lone_request_does_not_wait_for_companions(bundled_model, normal_jpeg):
    # batching on, with a huge max wait: a lone request must still be answered at once, not after 2 s
    import time

    settings = Settings(model_path=bundled_model, batching=True, batch_max_wait_ms=2000)
    app = create_app(settings)
    with running_app(app) as url:
        assert type(app.state.scoring.runner) is BatchingRunner
        with httpx.Client(base_url=url, timeout=30) as client:
            client.post("/predict", content=normal_jpeg.read_bytes(), headers={"Content-Type": "image/jpeg"})
            started = time.perf_counter()
            response = client.post("/predict", content=normal_jpeg.read_bytes(),
                                   headers={"Content-Type": "image/jpeg"})
            elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert elapsed < 1.0


@pytest.mark.parametrize(("batching", "runner"), [(None, DirectRunner), (True, BatchingRunner), (False, DirectRunner)])
def test_batching_is_on_with_cuda_only_unless_set(bundled_model, batching, runner):
    # the CPU provider here: unset means no batching (it buys little on a CPU, see runners.py)
    with TestClient(create_app(Settings(model_path=bundled_model, batching=batching)),
                    base_url="http://localhost") as client:
        assert type(client.app.state.scoring.runner) is runner


def test_a_lone_request_may_use_more_threads_with_the_same_scores(bundled_model, val_images):
    from cxr_common.preprocessing import load_pixels
    from service.inference.classifier import Classifier

    classifier = Classifier(bundled_model, intra_op_threads=1, solo_threads=2)
    assert classifier._solo_session is not None
    assert Classifier(bundled_model, intra_op_threads=2, solo_threads=2)._solo_session is None
    pixels = np.stack([load_pixels(path) for path in val_images[:4]])
    shared = [p.probability for p in classifier.predict(pixels)]
    alone = [p.probability for p in classifier.predict(pixels, alone=True)]
    assert alone == pytest.approx(shared, abs=1e-5)
