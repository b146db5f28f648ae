"""The real server: `python -m service` under uvicorn on 127.0.0.1, driven with httpx."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, running_service, start_service, wait_ready


@pytest.fixture(scope="module")
def server(bundled_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_service(log, bundled_model, env={"CXR_MAX_UPLOAD_MB": "2"}) as running:
        yield running


def test_real_server_scores_real_xrays(server, val_images):
    url, _ = server
    with httpx.Client(base_url=url, timeout=30) as client:
        for path in (val_images[0], val_images[-1]):
            response = client.post("/predict", files={"file": (path.name, path.read_bytes(), "image/jpeg")})
            assert response.status_code == 200, response.text
            assert response.json()["label"] in ("normal", "pneumonia")
        batch = client.post("/predict/batch",
                            files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in val_images[6:10]])
        assert batch.status_code == 200, batch.text
        assert [r["result"]["label"] for r in batch.json()["results"]] == [
            r.json()["label"] for r in (client.post("/predict", files={"file": p.read_bytes()})
                                        for p in val_images[6:10])]


def test_real_server_refuses_a_streamed_oversized_upload(server, normal_jpeg):
    url, _ = server

    def body():
        for _ in range(100):  # 6.4 MB in 64 KB chunks, no Content-Length: chunked encoding
            yield bytes(64 * 1024)

    with httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/predict", content=body(), headers={"Content-Type": "image/jpeg"})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        good = client.post("/predict", content=normal_jpeg.read_bytes(), headers={"Content-Type": "image/jpeg"})
        assert good.status_code == 200


def test_sigterm_answers_accepted_requests_before_exit(bundled_model, normal_jpeg, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    process = start_service(log, "--port", str(port), "--model", str(bundled_model))
    wait_ready(process, url, log)
    data = normal_jpeg.read_bytes()
    first_chunk_sent = threading.Event()
    result: dict = {}

    def slow_body():
        yield data[:1000]
        first_chunk_sent.set()
        time.sleep(1.5)  # SIGTERM arrives while this request is being received
        yield data[1000:]

    def client():
        try:
            result["response"] = httpx.post(f"{url}/predict", content=slow_body(),
                                            headers={"Content-Type": "image/jpeg"}, timeout=30)
        except httpx.HTTPError as exc:
            result["error"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    assert first_chunk_sent.wait(10)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    thread.join(30)
    assert "error" not in result, result.get("error")
    assert result["response"].status_code == 200
    assert result["response"].json()["label"] in ("normal", "pneumonia")
    # uvicorn re-raises the signal once it has shut down cleanly, hence -SIGTERM
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    log_text = log.read_text()
    assert "Shutting down" in log_text and "Finished server process" in log_text


@pytest.mark.parametrize("case", ["missing", "corrupt", "cuda"])
def test_bad_model_or_device_stops_startup(case, tmp_path, bundled_model):
    model = {"missing": tmp_path / "nope.onnx", "corrupt": tmp_path / "corrupt.onnx", "cuda": bundled_model}[case]
    if case == "corrupt":
        Path(model).write_bytes(b"\x08\x01this is not an onnx model" * 100)
    env = {"CXR_DEVICE": "cuda"} if case == "cuda" else {}
    log = tmp_path / "server.log"
    process = start_service(log, "--port", str(free_port()), "--model", str(model), env=env)
    process.wait(timeout=60)
    output = log.read_text()
    assert process.returncode == 1, output
    expected = {"missing": "does not exist", "corrupt": "not a loadable ONNX model",
                "cuda": "CUDA execution provider is not active"}[case]
    assert expected in output and "cannot start" in output
    assert "Traceback" not in output
