"""Uploads against the real service in its own process, over raw sockets: refused before their
bodies when the worker's upload budget is spent (small requests still answered), cut off when
they trickle, bounded in memory when many large ones are held, and never written to disk."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from service.metrics import MULTIPROCESS_DIR_PREFIX
from tests.servers import running_service

BUDGET_MB = 16


@pytest.fixture(scope="module")
def service(bundled_model, tmp_path_factory):
    spool = tmp_path_factory.mktemp("tmpdir")  # where Starlette would spool a multipart upload
    log = tmp_path_factory.mktemp("log") / "service.log"
    env = {"CXR_WORKERS": "1", "CXR_MAX_INFLIGHT_UPLOAD_MB": str(BUDGET_MB), "CXR_UPLOAD_TIMEOUT_S": "4",
           "TMPDIR": str(spool)}
    with running_service(log, bundled_model, env=env) as (url, process):
        yield url, process, spool


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=15)


def _start_upload(url: str, declared: int, first: bytes = b"", media_type: str = "image/jpeg") -> socket.socket:
    sock = _connect(url)
    sock.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {media_type}\r\n"
                 f"Content-Length: {declared}\r\n\r\n".encode() + first)
    return sock


def _answer(sock: socket.socket, timeout: float = 15) -> tuple[int | None, dict | None, dict[str, str]]:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head, re.I)
            if length and len(body) >= int(length.group(1)):
                break
    except (ConnectionResetError, TimeoutError):
        pass
    if not data:
        return None, None, {}
    head, _, body = data.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().lower().split("\r\n")[1:])
    return int(head.split()[1]), json.loads(body), headers


def _rss_mb(process) -> float:
    """Resident memory of the service: its process and the worker it started."""
    return sum(int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
               for pid in [process.pid, *_children(process.pid)]) / 1024


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_an_upload_past_the_budget_is_refused_before_its_body(service, normal_jpeg):
    url, _, _ = service
    large = 9 * 2**20  # two of these are over the 16 MB budget; neither is small
    first = _start_upload(url, large, b"\xff\xd8\xff" + bytes(100_000))
    try:
        time.sleep(0.3)
        started = time.monotonic()
        second = _start_upload(url, large)  # headers only: refused before any byte of its body
        status, body, headers = _answer(second)
        second.close()
        assert status == 503 and body["error"]["code"] == "overloaded", body
        assert "CXR_MAX_INFLIGHT_UPLOAD_MB" in body["error"]["message"] and headers["retry-after"] == "1"
        assert time.monotonic() - started < 2
        # a small upload still gets through: small ones have a reserve of their own
        assert httpx.post(f"{url}/predict", content=normal_jpeg.read_bytes(), timeout=15).status_code == 200
    finally:
        first.close()


def test_readiness_turns_503_while_the_budget_is_spent(service):
    url, _, _ = service
    held = _start_upload(url, BUDGET_MB * 2**20, b"\xff\xd8\xff")
    try:
        time.sleep(0.3)
        assert httpx.get(f"{url}/health/ready", timeout=5).status_code == 503
    finally:
        held.close()
    deadline = time.monotonic() + 5
    while httpx.get(f"{url}/health/ready", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the budget was not given back"
        time.sleep(0.1)


def test_a_trickling_upload_is_cut_off_at_the_total_time(service, normal_jpeg):
    url, _, _ = service
    data = normal_jpeg.read_bytes()
    sock = _start_upload(url, len(data), data[:10])
    started = time.monotonic()
    try:
        for byte in data[10:40]:  # one byte every 0.5 s: the idle timeout (30 s) never fires
            sock.sendall(bytes([byte]))
            time.sleep(0.5)
            sock.settimeout(0.01)
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except (TimeoutError, BlockingIOError):
                pass
        status, body, _ = _answer(sock)
    finally:
        sock.close()
    assert status == 408 and body["error"]["code"] == "request_timeout" and "CXR_UPLOAD_TIMEOUT_S" in body["error"]["message"]
    assert 3.5 < time.monotonic() - started < 8  # CXR_UPLOAD_TIMEOUT_S=4


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "cxr-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_a_multipart_upload_never_touches_the_disk(service, normal_jpeg):
    url, process, spool = service
    with Image.open(normal_jpeg) as image:  # a real X-ray as a ~6 MB PNG: well past Starlette's 1 MB spool
        buffer = io.BytesIO()
        image.convert("L").resize((2600, 2400)).save(buffer, "PNG", compress_level=0)
    body, media_type = _multipart(buffer.getvalue())
    assert len(body) > 5 * 2**20
    sock = _start_upload(url, len(body), body[: len(body) - 1000], media_type)
    try:
        time.sleep(0.5)  # all but the last KB is in: a spooled file would be open now
        assert _files_open_in(process, spool) == []
        sock.sendall(body[len(body) - 1000 :])
        status, answer, _ = _answer(sock)
    finally:
        sock.close()
    assert status == 200 and answer["input"]["width"] == 2600, answer


def _files_open_in(process, folder) -> list[str]:
    """Files the service's processes hold open in `folder` (a spooled upload is an unnamed
    O_TMPFILE there: it shows only among the process's descriptors)."""
    found = []
    for pid in [process.pid, *_children(process.pid)]:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            # the metrics' per-process files live there too (service.metrics), never an upload
            if target.startswith(str(folder)) and f"/{MULTIPROCESS_DIR_PREFIX}" not in target:
                found.append(target)
    return found


def test_many_held_large_uploads_stay_within_the_budget(service, normal_jpeg):
    url, process, _ = service
    before = _rss_mb(process)
    chunk = b"\xff\xd8\xff" + bytes(2**20 - 3)
    held, refused = [], 0
    try:
        for _ in range(40):  # 40 x 9 MB declared: 360 MB if each were read
            sock = _start_upload(url, 9 * 2**20)
            try:
                for _ in range(8):
                    sock.sendall(chunk)
            except OSError:  # refused: the server ended the connection
                pass
            held.append(sock)
        time.sleep(0.5)
        grown = _rss_mb(process) - before
        small = httpx.post(f"{url}/predict", content=normal_jpeg.read_bytes(), timeout=15)
        for sock in held:
            status, body, _ = _answer(sock, timeout=0.2)
            refused += status == 503
    finally:
        for sock in held:
            sock.close()
    assert small.status_code == 200
    assert refused >= 38  # one fits in the 16 MB budget (two do not)
    assert grown < 2 * BUDGET_MB + 40, f"{grown:.0f} MB"  # the budget, the refused bodies' lingering reads
