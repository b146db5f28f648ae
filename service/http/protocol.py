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
from http import HTTPStatus
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.config import ConnectionLimits, Settings
from service.http.errors import error_body, status_of

log = logging.getLogger("service.http")

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
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._in_headers and self._header_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
            self._refuse("request_header_fields_too_large",
                         f"the request line and headers are over the {self.limits.max_header_bytes} bytes allowed")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        if self._timer is None:  # a request on a kept-alive connection: its clock starts now
            self._arm(self.limits.header_timeout_s, "headers")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()
        self._arm(self.limits.body_idle_timeout_s, "body")

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.limits.body_idle_timeout_s, "body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            # uvicorn's keep-alive timer now runs until the next request's first byte; its
            # header bytes count from there, its header clock from on_message_begin
            self._in_headers, self._header_bytes = True, 0

    def _refuse(self, code: str, message: str) -> None:
        status = status_of(code)
        log.info("request refused before the app: %s", code, extra={"status": status, "error_code": code})
        body = json.dumps(error_body(code, message, None)).encode()
        self.transport.write(b"".join([
            b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode()),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]))
        self.transport.close()
