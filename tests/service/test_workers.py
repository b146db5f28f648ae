"""Several worker processes on one port (`CXR_WORKERS`): metrics add up across them, a worker
that dies is replaced, and the server goes on answering meanwhile."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.process.memory import keep_freed_memory
from service.process.server import SCHEDULING_POLICY, WORKER_NAME
from tests.conftest import REPO_ROOT
from tests.servers import running_service, server_environ

pytestmark = pytest.mark.slow  # starts several multi-process services


def _workers(pid: int) -> list[int]:
    """The server's worker processes (not the child that checks the model at start-up)."""
    children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if _name(c) == WORKER_NAME.decode()]


def _name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:  # it has just exited
        return None


def _predict(url: str, data: bytes) -> httpx.Response:
    # a new connection each time, so the kernel can hand it to either worker
    return httpx.post(f"{url}/predict", content=data, headers={"Content-Type": "image/jpeg"}, timeout=30)


def _wait_for_workers(pid: int, count: int, not_in: tuple[int, ...] = (), timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = _workers(pid)
        if len(workers) == count and not set(workers) & set(not_in):
            return workers
        time.sleep(0.1)
    pytest.fail(f"expected {count} workers (not {not_in}), have {_workers(pid)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has died


needs_proc = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker pids from /proc")


@needs_proc
def test_two_workers_share_metrics_and_survive_crashes(bundled_model, normal_jpeg, tmp_path):
    data = normal_jpeg.read_bytes()
    with running_service(tmp_path / "server.log", bundled_model, env={"CXR_WORKERS": "2"}) as (url, process):
        workers = _wait_for_workers(process.pid, 2)
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

        # what the OOM killer does: kill one worker, then the other 2 s later (its peer's
        # replacement may still be loading): the service answers throughout and replaces both
        os.kill(workers[0], signal.SIGKILL)
        # SIGKILL takes effect a moment later (longer on a loaded machine): until the process has
        # died its listening socket still takes its share of new connections, which it then resets
        deadline = time.monotonic() + 10
        while _alive(workers[0]) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(_predict(url, data).status_code == 200 for _ in range(5))  # the other one answers
        time.sleep(2)
        os.kill(workers[1], signal.SIGKILL)
        replaced = _wait_for_workers(process.pid, 2, not_in=tuple(workers))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if _predict(url, data).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert _predict(url, data).status_code == 200
        assert process.poll() is None and len(replaced) == 2
    log = (tmp_path / "server.log").read_text()
    assert log.count("a worker process exited with status -9") == 2


@needs_proc
def test_workers_die_with_their_supervisor_and_the_port_is_free_again(bundled_model, normal_jpeg, tmp_path):
    with running_service(tmp_path / "first.log", bundled_model, env={"CXR_WORKERS": "2"}) as (url, process):
        workers = _wait_for_workers(process.pid, 2)
        port = url.rsplit(":", 1)[1]
        # a second instance on the same port refuses to start, rather than splitting the traffic
        second = subprocess.run([sys.executable, "-m", "service", "--port", port, "--model", str(bundled_model)],
                                env=server_environ({"CXR_WORKERS": "2"}), cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert "already served or taken" in second.stdout + second.stderr
        assert _predict(url, normal_jpeg.read_bytes()).status_code == 200

        process.kill()  # SIGKILL: no chance to stop the workers itself
        process.wait(10)
        deadline = time.monotonic() + 40
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "orphaned workers kept serving"
    # and a new instance can take the port
    with running_service(tmp_path / "again.log", bundled_model, env={"CXR_WORKERS": "2"}, port=int(port)):
        assert _predict(url, normal_jpeg.read_bytes()).status_code == 200


def test_allocator_settings_apply_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory()


def test_the_supervisor_loads_no_serving_library():
    """The supervisor only starts and replaces workers, which it forks: onnxruntime threads must
    not be forked, and prometheus-client must load in the worker, after the supervisor has set
    where the per-process metric files go. The model, the app and the imaging libraries load in
    the workers too (the supervisor's RSS counts once per service: 103 -> 18 MB measured)."""
    serving = ("pydantic", "numpy", "PIL", "onnxruntime", "fastapi", "uvicorn", "pydicom", "prometheus_client")
    probe = ("import sys, service.__main__, service.process.server; "
             f"print(' '.join(m for m in {serving!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=server_environ(),
                            capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []

