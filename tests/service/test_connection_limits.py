"""Slow, huge and vanishing clients against the real server on loopback, over raw sockets
(an HTTP client library would not misbehave on purpose): each limit answers in the contract,
within its time, and the metrics count no 5xx for what clients did."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest

from service.config import Settings
from service.http.app import create_app
from tests.servers import running_app

SHORT = {"header_timeout_s": 1.5, "body_idle_timeout_s": 1.0, "keep_alive_s": 1.0, "max_connections": 8}


@pytest.fixture(scope="module")
def url(bundled_model):
    with running_app(create_app(Settings(model_path=bundled_model, **SHORT))) as address:
        yield address


OPENED: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets():
    yield
    while OPENED:
        OPENED.pop().close()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    OPENED.append(sock)
    return sock


def _read_answer(sock: socket.socket, timeout: float = 10) -> tuple[int | None, dict | None, float]:
    """(status, JSON body, seconds) once the server answers or closes; (None, None, s) if it
    closed without an answer."""
    sock.settimeout(timeout)
    started, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head, re.I)
            if length and len(body) >= int(length.group(1)):
                break
    except ConnectionResetError:
        pass
    elapsed = time.monotonic() - started
    if not data:
        return None, None, elapsed
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else None, elapsed


def _closed(sock: socket.socket, timeout: float = 5) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _status_counts(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for status, value in re.findall(r'^cxr_requests_total\{[^}]*status="(\d+)"\} (\S+)$', text, re.M):
        counts[status] = counts.get(status, 0) + float(value)
    return counts


def test_a_one_megabyte_header_is_refused_with_431(url):
    sock = _connect(url)
    started = time.monotonic()
    try:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 1024 * 1024 + b"\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before the whole megabyte is written
    status, body, _ = _read_answer(sock)
    assert status == 431 and body["error"]["code"] == "request_header_fields_too_large"
    assert time.monotonic() - started < 5 and _closed(sock)


def test_headers_sent_a_byte_at_a_time_are_cut_off(url):
    sock = _connect(url)
    started = time.monotonic()
    request = b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100
    for byte in request:  # 4 bytes a second, until the server gives up on it
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(0.25)
        if time.monotonic() - started > SHORT["header_timeout_s"] + 1:
            break
    status, body, _ = _read_answer(sock)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert time.monotonic() - started < SHORT["header_timeout_s"] + 2
    assert Settings.model_fields["header_timeout_s"].default <= 75  # the default cuts off within 75 s


def test_an_idle_connection_is_closed_silently_and_kept_alive_ones_idle_out(url):
    idle = _connect(url)  # never sends a byte
    assert _read_answer(idle, timeout=SHORT["header_timeout_s"] + 2)[0] is None  # closed, no answer
    kept = _connect(url)
    kept.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert _read_answer(kept)[0] == 200
    assert _closed(kept, timeout=SHORT["keep_alive_s"] + 2)


def test_an_upload_that_stalls_gets_408(url, normal_jpeg):
    data = normal_jpeg.read_bytes()
    sock = _connect(url)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(data) + data[:1000])
    status, body, elapsed = _read_answer(sock)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert elapsed < SHORT["body_idle_timeout_s"] + 2 and _closed(sock)
    assert httpx.post(f"{url}/predict", content=data, timeout=30).status_code == 200  # others unaffected
    assert _status_counts(url).get("408", 0) >= 1  # counted as what the client got, not as a 499


def test_connections_past_the_cap_are_closed_at_once(url):
    held = [_connect(url) for _ in range(SHORT["max_connections"])]
    time.sleep(0.2)
    try:
        extra = _connect(url)
        assert _closed(extra, timeout=2)
        extra.close()
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(f"{url}/health/live", timeout=10).status_code == 200  # room again


def test_clients_that_vanish_are_counted_apart_from_5xx(url, normal_jpeg):
    data = normal_jpeg.read_bytes()
    before = _status_counts(url)
    for cut in (len(data) // 2, len(data)):  # mid-upload, and while it is being scored
        sock = _connect(url)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(data) + data[:cut])
        time.sleep(0.05)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset, as a dropped network link looks
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = _status_counts(url)
        if after.get("499", 0) - before.get("499", 0) >= 1:
            break
        time.sleep(0.1)
    assert not any(status.startswith("5") and after[status] > before.get(status, 0) for status in after), after
    assert after.get("499", 0) - before.get("499", 0) >= 1
