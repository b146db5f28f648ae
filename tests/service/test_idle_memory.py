"""Memory a burst of work left behind goes back to the kernel once a worker is idle, and not
between requests that keep coming (their buffers are reused: page faults cost CPU)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
import time

import pytest

from service.inference import scoring
from tests.conftest import REPO_ROOT
from tests.service.conftest import make_client

GROWN_MB = 200


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim and mallopt are glibc's")
def test_an_idle_worker_hands_back_what_it_kept():
    # in its own process: the allocator settings are process-wide
    script = textwrap.dedent(f"""
        from service.process.memory import MemoryWatermark, keep_freed_memory, resident_bytes
        assert keep_freed_memory()
        watermark = MemoryWatermark()
        buffers = [bytearray(1024 * 1024) for _ in range({GROWN_MB})]  # heap blocks, like decode buffers
        del buffers
        kept = resident_bytes() - watermark.baseline
        print(kept >> 20, watermark.after_request(), watermark.when_idle(), (resident_bytes() - watermark.baseline) >> 20)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    kept_mb, after_request, when_idle, left_mb = int(out[0]), out[1], out[2], int(out[3])
    assert kept_mb > GROWN_MB * 0.8  # the settings keep freed memory for the next requests...
    assert after_request == "False"  # ...which a request's end leaves alone below 512 MB...
    assert when_idle == "True" and left_mb < 16, out  # ...and an idle worker hands back


def test_memory_is_handed_back_once_the_worker_is_idle_not_between_requests(bundled_model, normal_jpeg,
                                                                          monkeypatch):
    monkeypatch.setattr(scoring, "IDLE_AFTER_S", 0.5)
    body = normal_jpeg.read_bytes()
    with make_client(bundled_model) as client:
        memory = client.app.state.scoring.runner._memory
        calls = []
        real = memory.when_idle
        monkeypatch.setattr(memory, "when_idle", lambda: calls.append(time.monotonic()) or real())
        for _ in range(6):  # back to back, each well within the idle time of the one before
            assert client.post("/predict", content=body).status_code == 200
        assert calls == []
        last = time.monotonic()
        time.sleep(1.5)
        assert len(calls) == 1 and calls[0] - last >= 0.4  # once, after the idle time
