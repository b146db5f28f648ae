"""uvicorn's HTTP protocol (httptools) with the limits it lacks, per connection:

- headers must arrive within `header_timeout_s` of the connection or of the previous answer,
  else 408 and the connection is closed (uvicorn waits for ever: a client sending a byte a
  second held its connection, and 42,000 of them held every file descriptor);
- at most `max_header_bytes` of request line and headers, else 431 (uvicorn has no limit);
- the body may pause for at most `body_idle_timeout_s` between two reads, else 408;
- at most `max_connections` open connections per worker: past that a new one is closed at once,
  so a flood cannot take the descriptors that real clients need.

The idle keep-alive timeout is uvicorn's own (`timeout_keep_alive`). Answers are JSON in the
service's error contract, with `Connection: close`. What a connection still costs is bounded
this way; the app never sees a request that broke a limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from http import HTTPStatus
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.config import ConnectionLimits, Settings
from service.http.errors import error_body, status_of

log = logging.getLogger("service.http")

# after an answer that left its request's body unread: how long, and how much, of the rest is
# read and dropped before the connection is closed
# (more than a whole upload may be: a client that sends its body before reading the answer, as
# most do, then reads its early 503 or 415 instead of a reset)
LINGER_S = 5.0
LINGER_BYTES = 64 << 20
ANSWERED_HERE = "answered_by_protocol"  # key in the request's scope state: the error code


def protocol_class(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The protocol class to hand to uvicorn.Config(http=...), bound to `limits`."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    # the settings' defaults (no environment read), for `uvicorn --http` naming this class
    limits: ClassVar[ConnectionLimits] = Settings().connection_limits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._in_headers = True
        self._lingering, self._lingered = False, 0
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning("connection refused: %d open, the limit is %d (CXR_MAX_CONNECTIONS)",
                        len(self.connections) - 1, self.limits.max_connections)
            transport.abort()
            return
        self._arm(self.limits.header_timeout_s, "its headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out, what, seconds)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, what: str, seconds: float) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._lingering:
            self.transport.close()
            return
        waiting_for_body = not self._in_headers
        nothing_sent = self._in_headers and self._header_bytes == 0
        if nothing_sent or (waiting_for_body and self.cycle is not None and self.cycle.response_started):
            self.transport.close()  # an idle connection, or an answer already on its way
            return
        self._refuse("request_timeout", f"the request's {what} did not arrive within {seconds:g} s")
        if waiting_for_body and self.cycle is not None:
            # the app's next receive() hears of a disconnect; its access log line and metrics
            # then name what the client really got (service.http.middleware)
            self.scope["state"][ANSWERED_HERE] = "request_timeout"
            self.cycle.disconnected = True
            self.cycle.message_event.set()

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # the rest of a body already answered: dropped, up to a limit
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES:
                self.transport.close()
            return
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._in_headers and self._header_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
            self._refuse_long_headers()

    def _refuse_long_headers(self) -> None:
        self._refuse("request_header_fields_too_large",
                     f"the request line and headers are over the {self.limits.max_header_bytes} bytes allowed")

    def send_400_response(self, msg: str) -> None:
        """What httptools cannot parse, answered in the JSON contract (uvicorn's own answer is
        plain text): a bad request line, header or chunk size."""
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # an answer is already on its way: nothing more can be said
        elif not self.transport.is_closing():
            self._refuse("bad_request", "malformed HTTP request: the request line, a header or the "
                         "body framing could not be parsed")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        if self._timer is None:  # a request on a kept-alive connection: its clock starts now
            self._arm(self.limits.header_timeout_s, "headers")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        # headers that arrived in one read with what follows them were never counted while
        # incomplete: measured here (a 70 KB URL would otherwise fail uvicorn's URL parser: 400)
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > self.limits.max_header_bytes:
            self._refuse_long_headers()
            return
        super().on_headers_complete()
        self._arm(self.limits.body_idle_timeout_s, "body")

    def on_body(self, body: bytes) -> None:
        if self.transport.is_closing():
            return  # refused at its headers: there is no request to give the body to
        super().on_body(body)
        self._arm(self.limits.body_idle_timeout_s, "body")

    def on_message_complete(self) -> None:
        if self.transport.is_closing():
            return
        super().on_message_complete()
        self._disarm()

    def on_response_complete(self) -> None:
        # An answer given before its request's body had all arrived (415, 404, 400...): the rest
        # of that body would be parsed as the next request. Instead the connection ends: our
        # side is shut after the answer, and what the client still sends is read and dropped
        # for at most LINGER_S or LINGER_BYTES (closing at once would make the kernel reset
        # the connection, and a client could lose the answer it has not read yet).
        # (With a pipelined request waiting, the answered one had arrived whole.)
        if self.cycle is not None and self.cycle.more_body and not self.pipeline and not self.transport.is_closing():
            self._linger()
            return
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            # uvicorn's keep-alive timer now runs until the next request's first byte; its
            # header bytes count from there, its header clock from on_message_begin
            self._in_headers, self._header_bytes = True, 0

    def _linger(self) -> None:
        self.server_state.total_requests += 1  # as uvicorn's on_response_complete counts it
        self._lingering, self._in_headers = True, False
        self._arm(LINGER_S, "")  # _timed_out closes a lingering connection
        self.flow.resume_reading()  # reading stops when an unread body fills uvicorn's buffer
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self.transport.close()

    def _client(self) -> str | None:
        return self.client[0] if self.client else None

    def _refuse(self, code: str, message: str) -> None:
        status = status_of(code)
        request_id = uuid.uuid4().hex  # no request reached the app: the id is made here
        log.info("request refused before the app: %s", code,
                 extra={"status": status, "error_code": code, "request_id": request_id, "client": self._client()})
        body = json.dumps(error_body(code, message, request_id)).encode()
        self.transport.write(b"".join([
            b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode()),
            b"content-type: application/json\r\n",
            b"x-request-id: %s\r\n" % request_id.encode(),
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]))
        self.transport.close()
