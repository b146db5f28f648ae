"""A kept-alive connection after an early answer, and malformed HTTP, over raw sockets against
the real server on loopback: an answer given before its body had arrived ends the connection
(no part of that body is ever read as the next request), and what httptools cannot parse is
answered in the JSON contract with a request id."""

from __future__ import annotations

import json
import re
import socket

import pytest

from service.config import Settings
from service.http.app import create_app
from tests.servers import running_app


@pytest.fixture(scope="module")
def url(bundled_model):
    with running_app(create_app(Settings(model_path=bundled_model))) as address:
        yield address


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _answers(sock: socket.socket, quiet_s: float = 3) -> list[tuple[int, dict | None]]:
    """Every answer the server sends until it closes the connection (or goes quiet)."""
    sock.settimeout(quiet_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    answers = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        body, data = rest[:length], rest[length:]
        content_json = b"application/json" in head.lower()
        answers.append((int(head.split()[1]), json.loads(body) if content_json else None))
    return answers


PARTIAL_BODY = b"\x00" * 20_000  # of a declared 1 MB: the client is still sending when it is answered
FOLLOW_UP = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.parametrize("request_line, headers", [
    (b"POST /predict HTTP/1.1", b"Content-Type: text/plain\r\n"),  # 415 before the body is read
    (b"POST /nowhere HTTP/1.1", b"Content-Type: image/png\r\n"),  # 404
    (b"PUT /predict HTTP/1.1", b"Content-Type: image/png\r\n"),  # 405
    (b"POST /predict/batch HTTP/1.1", b"Content-Type: image/png\r\n"),  # 415 on the batch route
])
def test_no_follow_up_request_gets_a_stray_answer_after_an_early_answer(url, request_line, headers):
    sock = _connect(url)
    try:
        sock.sendall(request_line + b"\r\nHost: 127.0.0.1\r\n" + headers + b"Content-Length: 1000000\r\n\r\n"
                     + PARTIAL_BODY)
        # the rest of the body, laid out as if it were a request, then a real follow-up request
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n" + b"A" * 70_000 + FOLLOW_UP)
        answers = _answers(sock)
    finally:
        sock.close()
    assert len(answers) == 1, answers  # the early answer, then the end of the connection
    status, body = answers[0]
    assert status in (404, 405, 415) and body is not None and body["request_id"]


def test_a_request_whose_body_was_read_keeps_its_connection(url):
    sock = _connect(url)
    try:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: 0\r\n\r\n" + FOLLOW_UP)
        answers = _answers(sock, quiet_s=1)
    finally:
        sock.close()
    assert [status for status, _ in answers] == [415, 200]


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),  # a TLS hello on the plain port
    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
])
def test_malformed_http_is_answered_in_the_json_contract(url, raw):
    sock = _connect(url)
    try:
        sock.sendall(raw)
        answers = _answers(sock)
    finally:
        sock.close()
    assert len(answers) == 1
    status, body = answers[0]
    assert status == 400 and body is not None
    assert body["error"]["code"] == "bad_request" and re.fullmatch(r"[0-9a-f]{32}", body["request_id"])


def test_a_70_kb_url_is_a_json_431(url):
    sock = _connect(url)
    try:
        sock.sendall(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answers = _answers(sock)
    finally:
        sock.close()
    assert len(answers) == 1
    status, body = answers[0]
    assert status == 431 and body is not None
    assert body["error"]["code"] == "request_header_fields_too_large" and body["request_id"]
