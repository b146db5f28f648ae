"""Real servers on 127.0.0.1 for tests: the service as a subprocess (as operators run it), or
an app under uvicorn in a background thread (to wrap it, e.g. in a flaky front)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.conftest import REPO_ROOT

START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environ(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a server a test starts: this process's, less every CXR_* setting of the
    developer's shell (a test states the settings it runs with), plus `env`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CXR_")}, **(env or {})}


def start_service(log: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m service ARGS`; its output (JSON log lines) goes to `log`."""
    with open(log, "w") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "service", *args], cwd=REPO_ROOT,
            env=server_environ(env), stdout=output, stderr=subprocess.STDOUT,
        )


def wait_ready(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    pytest.fail("server did not become ready")


@contextmanager
def running_service(log: Path, model: Path, env: dict[str, str] | None = None, port: int | None = None):
    """The service in a subprocess on `port` (default: a free one); yields (url, process)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_service(log, "--port", str(port), "--model", str(model), env=env)
    try:
        wait_ready(process, url, log)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


@contextmanager
def running_app(app):
    """The app under uvicorn in this process, configured as the service configures it (its
    protocol limits and timeouts from the app's settings); yields its URL."""
    from service.process.server import uvicorn_config

    port = free_port()
    inner = app
    while not hasattr(inner, "state") and hasattr(inner, "app"):  # through ASGI wrappers
        inner = inner.app
    settings = inner.state.settings.model_copy(update={"host": "127.0.0.1", "port": port})
    server = uvicorn.Server(uvicorn_config(settings, app))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("in-process server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
