"""Several worker processes on one port (`CXR_WORKERS`): metrics add up across them, a worker
that dies is replaced, and the server goes on answering meanwhile."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from service.memory import keep_freed_memory
from service.server import CRASH_LOOP_S, SCHEDULING_POLICY
from tests.servers import running_service


def _workers(pid: int) -> list[int]:
    """The server's worker processes (not multiprocessing's resource tracker)."""
    children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _predict(url: str, data: bytes) -> httpx.Response:
    # a new connection each time, so the kernel can hand it to either worker
    return httpx.post(f"{url}/predict", content=data, headers={"Content-Type": "image/jpeg"}, timeout=30)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker pids from /proc")
def test_two_workers_share_metrics_and_survive_a_crash(bundled_model, normal_jpeg, tmp_path):
    data = normal_jpeg.read_bytes()
    with running_service(tmp_path / "server.log", bundled_model, env={"CXR_WORKERS": "2"}) as (url, process):
        started = time.monotonic()
        while len(_workers(process.pid)) < 2 and time.monotonic() < started + 60:
            time.sleep(0.1)
        workers = _workers(process.pid)
        assert len(workers) == 2
        for worker in workers:  # every thread, the model's and the event loop's, inherited the policy
            threads = [int(t) for t in os.listdir(f"/proc/{worker}/task")]
            assert {os.sched_getscheduler(t) for t in threads} == {SCHEDULING_POLICY}
        for _ in range(20):
            assert _predict(url, data).status_code == 200
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        served = re.search(r'^cxr_requests_total\{method="POST",route="/predict",status="200"\} (\S+)$',
                           metrics, re.M)
        assert served and float(served.group(1)) == 20  # the sum over both processes
        assert 'cxr_model_info{name="' in metrics

        time.sleep(max(0.0, started + CRASH_LOOP_S + 0.5 - time.monotonic()))  # a crash, not a start-up failure
        os.kill(workers[0], signal.SIGKILL)
        assert all(_predict(url, data).status_code == 200 for _ in range(5))  # the other one answers
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replaced = _workers(process.pid)
            if len(replaced) == 2 and workers[0] not in replaced:
                break
            time.sleep(0.2)
        assert len(replaced) == 2 and workers[0] not in replaced
        assert process.poll() is None


def test_allocator_settings_apply_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory()
