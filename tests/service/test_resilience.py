"""Admission control, readiness under load, refusals from the headers, the shutdown answer and
secure-by-default start-up, against the real server on loopback."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from service.config import Settings
from service.http.app import create_app
from tests.conftest import REPO_ROOT
from tests.servers import free_port, running_app, running_service, start_service, wait_ready
from tests.service.conftest import assert_error, make_client


def _batch(paths) -> list:
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def test_work_past_the_queue_limit_is_refused_at_once_and_readiness_follows(bundled_model, val_images, tmp_path):
    # the real service in its own process (the test's client must not share its GIL)
    env = {"CXR_WORKERS": "1", "CXR_MAX_QUEUED_IMAGES": "16", "CXR_MAX_BATCH_FILES": "32"}
    with running_service(tmp_path / "server.log", bundled_model, env=env) as (url, _):
        # more files than the whole queue takes: refused at once, with Retry-After
        too_many = httpx.post(f"{url}/predict/batch", files=_batch(val_images * 2), timeout=30)
        assert too_many.status_code == 503 and too_many.json()["error"]["code"] == "overloaded"
        assert too_many.headers["retry-after"] == "1"

        # a batch that fills the queue: while it is scored, readiness says 503 (fast); afterwards
        # it recovers (a request refused meanwhile: test_a_request_while_the_queue_is_full_is_refused)
        result: dict = {}
        worker = threading.Thread(target=lambda: result.update(
            full=httpx.post(f"{url}/predict/batch", files=_batch(val_images), timeout=60)))
        ready_answers = []
        worker.start()
        # a kept-alive connection, as a load balancer's health check has; timed around the
        # request alone (building an httpx client costs more CPU than the answer)
        with httpx.Client(base_url=url, timeout=5) as probe:
            while worker.is_alive():
                started = time.monotonic()
                ready = probe.get("/health/ready")
                ready_answers.append((ready.status_code, time.monotonic() - started))
        worker.join()
        assert result["full"].status_code == 200
        assert 503 in [status for status, _ in ready_answers], ready_answers
        # answered from the event loop, not behind the scoring; this client shares the two cores
        # with the server, so the bound is on the 95th percentile
        latencies = sorted(seconds for _, seconds in ready_answers)
        assert latencies[int(0.95 * (len(latencies) - 1))] < 0.1, latencies[-5:]
        assert httpx.get(f"{url}/health/ready", timeout=5).status_code == 200


def test_a_request_while_the_queue_is_full_is_refused(bundled_model, val_images):
    # the queue held full by a batch whose scoring waits at a gate: what comes meanwhile is
    # refused at once, and readiness says so; once the batch is through, both recover
    with make_client(bundled_model, max_queued_images=2) as client:
        scoring = client.app.state.scoring
        score, gate = scoring.runner.score, threading.Event()

        async def held(files, heatmap, stop):
            await asyncio.to_thread(gate.wait, 30)
            return await score(files, heatmap, stop)

        scoring.runner.score = held
        result: dict = {}
        batch = threading.Thread(target=lambda: result.update(
            full=client.post("/predict/batch", files=_batch(val_images[:2]))))
        batch.start()
        deadline = time.monotonic() + 10
        while not scoring.full and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            refused = client.post("/predict", content=val_images[0].read_bytes())
            assert_error(refused, 503, "overloaded")
            assert refused.headers["retry-after"] == "1"
            assert client.get("/health/ready").status_code == 503
        finally:
            gate.set()
            batch.join()
        assert result["full"].status_code == 200
        assert client.get("/health/ready").status_code == 200
        assert client.post("/predict", content=val_images[0].read_bytes()).status_code == 200


def test_an_unauthenticated_upload_is_refused_from_its_headers(bundled_model):
    with running_app(create_app(Settings(model_path=bundled_model, api_keys="k1"))) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            # 45 MB announced, 64 KB sent: the answer must not wait for the rest
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\n"
                         b"Content-Length: %d\r\n\r\n" % (45 * 1024 * 1024) + bytes(64 * 1024))
            started = time.monotonic()
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
            assert time.monotonic() - started < 2
            head = answer.split(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.1 401") and b"connection: close" in head


def test_requests_past_the_shutdown_timeout_get_the_json_503(bundled_model, normal_jpeg, tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    process = start_service(log, "--port", str(port), "--model", str(bundled_model),
                            env={"CXR_GRACEFUL_SHUTDOWN_S": "0.5", "CXR_BODY_IDLE_TIMEOUT_S": "30"})
    wait_ready(process, f"http://127.0.0.1:{port}", log)
    data = normal_jpeg.read_bytes()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(data) + data[:1000])  # the rest never comes
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), answer[:200]
    assert b"application/json" in head.lower()
    assert json.loads(body)["error"]["code"] == "shutting_down"
    process.wait(timeout=30)


@pytest.mark.parametrize(("extra", "starts"), [
    ({}, False),
    ({"CXR_ALLOW_ANONYMOUS": "true"}, True),
    ({"CXR_API_KEYS": "a-key"}, True),
])
def test_listening_beyond_loopback_needs_keys_or_a_stated_choice(bundled_model, tmp_path, extra, starts):
    if not starts:
        with pytest.raises(ValueError, match="CXR_ALLOW_ANONYMOUS"):
            Settings(host="0.0.0.0")
        result = subprocess.run([sys.executable, "-m", "service", "--host", "0.0.0.0", "--port", str(free_port())],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "CXR_ALLOW_ANONYMOUS" in result.stderr
        return
    port = free_port()
    log = tmp_path / "server.log"
    # bound to every interface; the test still talks to it over loopback only
    process = start_service(log, "--host", "0.0.0.0", "--port", str(port), "--model", str(bundled_model), env=extra)
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        process.wait(timeout=30)
