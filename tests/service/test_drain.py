"""The drain on SIGTERM (service/process/drain.py): /health/ready turns 503 at once while new
connections are still accepted and answered for CXR_DRAIN_S, then the listener closes; a
second signal skips the rest of the drain. With one worker (as in a Kubernetes pod) and with
the supervisor, which passes the signal on to each worker."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.servers import running_service

DRAIN_S = 5.0  # the default


def _ready_status(url: str) -> int:
    return httpx.get(f"{url}/health/ready", timeout=5).status_code  # a new connection each time


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_sigterm_drains_before_the_listener_closes(bundled_model, normal_jpeg, tmp_path, workers):
    data = normal_jpeg.read_bytes()
    with running_service(tmp_path / "server.log", bundled_model, env={"CXR_WORKERS": str(workers)}) as (url, process):
        assert _ready_status(url) == 200
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # every worker hears it at once: each new connection, whichever worker takes it, is told 503
        deadline = signalled + 1.0
        while _ready_status(url) != 503:
            assert time.monotonic() < deadline, "/health/ready did not turn 503 after SIGTERM"
            time.sleep(0.05)
        assert [_ready_status(url) for _ in range(6)] == [503] * 6
        assert httpx.get(f"{url}/health/live", timeout=5).status_code == 200

        time.sleep(max(0.0, signalled + 2.0 - time.monotonic()))  # a request 2 s into the drain
        answer = httpx.post(f"{url}/predict", content=data, headers={"Content-Type": "image/jpeg"}, timeout=15)
        assert answer.status_code == 200 and answer.json()["label"] in ("normal", "pneumonia")

        exit_status = process.wait(timeout=DRAIN_S + 30)
        stopped = time.monotonic() - signalled
        assert exit_status in (0, -signal.SIGTERM)
        assert DRAIN_S <= stopped < DRAIN_S + 10, stopped
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health/ready", timeout=5)
    assert "draining" in (tmp_path / "server.log").read_text()


def test_a_second_signal_skips_the_drain(bundled_model, tmp_path):
    with running_service(tmp_path / "server.log", bundled_model, env={"CXR_DRAIN_S": "60"}) as (url, process):
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert _ready_status(url) == 503
        second = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        assert time.monotonic() - second < 10


def test_no_drain_when_it_is_zero(bundled_model, tmp_path):
    with running_service(tmp_path / "server.log", bundled_model, env={"CXR_DRAIN_S": "0"}) as (url, process):
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        assert time.monotonic() - signalled < 5
    assert "draining" not in (tmp_path / "server.log").read_text()
