"""The autoscaler's gauges on /metrics: cxr_requests_in_flight (scoring requests held, their
upload included) and cxr_images_queued (images admitted and not yet scored), summed over the
worker processes, and no longer counting a worker that was killed with its requests."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import threading
import time

import httpx
import pytest
from PIL import Image

from service.config import Settings
from tests.servers import running_service
from tests.service.test_workers import _wait_for_workers, needs_proc

pytestmark = [pytest.mark.slow, needs_proc]  # multi-process services


def gauge(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text  # a GET: not itself in flight
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, f"{name} is not on /metrics"
    return float(found.group(1))


def wait_for(url: str, name: str, value: float, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (seen := gauge(url, name)) != value:
        assert time.monotonic() < deadline, f"{name} stayed at {seen}, expected {value}"
        time.sleep(0.05)


def held_upload(port: int, data: bytes) -> socket.socket:
    """A POST /predict whose body stops half way: in flight until the socket closes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(data) + data[: len(data) // 2])
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False  # nothing to read: still open
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


@pytest.mark.parametrize("workers", [1, 2])
def test_requests_in_flight_are_summed_over_live_workers(bundled_model, normal_jpeg, tmp_path, workers):
    data = normal_jpeg.read_bytes()
    with running_service(tmp_path / "server.log", bundled_model, env={"CXR_WORKERS": str(workers)}) as (url, process):
        port = int(url.rsplit(":", 1)[1])
        if workers > 1:
            _wait_for_workers(process.pid, workers)
        assert gauge(url, "cxr_requests_in_flight") == 0
        held = [held_upload(port, data) for _ in range(6)]  # the kernel spreads them over the workers
        wait_for(url, "cxr_requests_in_flight", 6)
        assert gauge(url, "cxr_images_queued") == 0  # still uploading: nothing admitted yet
        for sock in held[:2]:  # two clients give up
            sock.close()
        wait_for(url, "cxr_requests_in_flight", 4)
        if workers > 1:
            # a worker killed with its requests: they no longer count, the others still do
            victim = _wait_for_workers(process.pid, workers)[0]
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while not any(closed_by_server(s) for s in held[2:]) and time.monotonic() < deadline:
                time.sleep(0.05)
            survivors = [s for s in held[2:] if not closed_by_server(s)]
            wait_for(url, "cxr_requests_in_flight", len(survivors))
            _wait_for_workers(process.pid, workers, not_in=(victim,))  # replaced, counting from 0
            assert gauge(url, "cxr_requests_in_flight") == len(survivors)
        for sock in held:
            sock.close()
        wait_for(url, "cxr_requests_in_flight", 0)


def test_images_queued_counts_admitted_images_until_scored(bundled_model, normal_jpeg, tmp_path):
    # the largest X-ray the service decodes, one decode thread per worker: each image takes a
    # second or more, so the ones behind it wait their turn in the queue
    side = int(Settings.model_fields["max_pixels"].default ** 0.5)
    with Image.open(normal_jpeg) as image:
        buffer = io.BytesIO()
        image.convert("L").resize((side, side)).save(buffer, "PNG", compress_level=1)
    big = buffer.getvalue()
    env = {"CXR_WORKERS": "2", "CXR_DECODE_THREADS": "1"}
    with running_service(tmp_path / "server.log", bundled_model, env=env) as (url, process):
        _wait_for_workers(process.pid, 2)
        statuses: list[int] = []

        def post() -> None:  # a new connection each: the kernel spreads them over the workers
            statuses.append(httpx.post(f"{url}/predict", content=big, headers={"Content-Type": "image/png"},
                                       timeout=60).status_code)

        threads = [threading.Thread(target=post) for _ in range(4)]
        for thread in threads:
            thread.start()
        peak, deadline = 0.0, time.monotonic() + 60
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            peak = max(peak, gauge(url, "cxr_images_queued"))
            time.sleep(0.02)
        for thread in threads:
            thread.join(10)
        assert statuses == [200] * 4
        assert peak == 4, peak  # all four admitted before the first was scored, over both workers
        wait_for(url, "cxr_images_queued", 0)
        wait_for(url, "cxr_requests_in_flight", 0)
