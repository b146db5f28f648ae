"""The gateway's world for its tests, all real and all in one private network namespace:
Orthanc as the PACS, the scoring service with the bundled model, and the gateway as operators
start it (`python -m gateway`, the `cxr-gateway` command)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.gateway import netns, orthanc
from tests.servers import free_port, running_service, server_environ

GATEWAY_AE = "CXR_AI"


@pytest.fixture(scope="module")
def network() -> Iterator[None]:
    reason = netns.unavailable() or orthanc.unavailable()
    if reason:
        pytest.skip(reason)
    with netns.private_network():
        yield


@pytest.fixture(scope="module")
def pacs(network, tmp_path_factory) -> Iterator[orthanc.Orthanc]:
    with orthanc.running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture(scope="module")
def service(network, tmp_path_factory, bundled_model) -> Iterator[str]:
    log = tmp_path_factory.mktemp("service") / "service.log"
    with running_service(log, bundled_model) as (url, _process):
        yield url


class GatewayProcess:
    """`python -m gateway` in a subprocess; its JSON log in `log`."""

    def __init__(self, state: Path, service: str, *extra: str, port: int | None = None):
        self.state, self.port = state, port or free_port()
        self.log = state.parent / f"{state.name}.log"
        self.args = ["--listen", f"127.0.0.1:{self.port}", "--ae-title", GATEWAY_AE, "--service", service,
                     "--state", str(state), "--quiet-s", "1", "--metrics", "off", *extra]
        self.process: subprocess.Popen[bytes] | None = None
        self.offset = 0

    def start(self) -> GatewayProcess:
        self.offset = len(self.lines())  # a restart on the same state appends to the same log
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "gateway", *self.args], cwd=REPO_ROOT,
                                            stdout=log, stderr=subprocess.STDOUT, env=server_environ())
        deadline = time.monotonic() + 30
        while not self.events("started"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gateway did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def lines(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def events(self, name: str) -> list[dict]:
        """This process's log lines of event `name`."""
        return [line for line in self.lines()[self.offset:] if line.get("event") == name]

    def command(self, *args: str) -> list[dict]:
        """`cxr-gateway jobs|retry ...` on this gateway's state; its JSON lines."""
        done = subprocess.run([sys.executable, "-m", "gateway", *args, "--state", str(self.state)], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=True)
        return [json.loads(line) for line in done.stdout.splitlines()]

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(timeout=60)


@pytest.fixture
def gateways(tmp_path) -> Iterator[list[GatewayProcess]]:
    """Gateways a test starts, stopped at its end whatever happens."""
    started: list[GatewayProcess] = []
    yield started
    for gateway in started:
        gateway.stop(signal.SIGKILL)
