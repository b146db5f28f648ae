"""Pure ASGI middleware: request ids, access logs and metrics; the upload size limit."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.errors import INTERNAL_MESSAGE, send_error, status_of
from service.http.protocol import ANSWERED_HERE
from service.inference.errors import ClientGoneError
from service.metrics import ServiceMetrics

log = logging.getLogger("service.access")

REQUEST_ID_HEADER = b"x-request-id"
# A client's id is echoed only if it is short and plain: it goes into logs and headers.
CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _route_of(scope: Scope) -> str:
    # the route template (/predict), never the raw path: bounded metric labels
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestContextMiddleware:
    """Gives every request an id (the client's X-Request-ID if sane), returns it in a header,
    and logs one JSON line and metrics per request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client_id = _header(scope, REQUEST_ID_HEADER)
        request_id = client_id if client_id and CLIENT_REQUEST_ID.match(client_id) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = status_of("internal_error")  # until the app starts an answer
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except (ClientGoneError, ClientDisconnect):
            # a flaky network, not a fault: nobody is left to answer, and the work not yet
            # started was dropped (service.inference.scoring); or the protocol answered a stalled
            # upload itself (service.http.protocol)
            code = scope["state"].get(ANSWERED_HERE, "client_gone")
            status, scope["state"]["error_code"] = status_of(code), code
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when CXR_GRACEFUL_SHUTDOWN_S is over;
            # their answer is the contract's 503, not uvicorn's plain-text 500. Not re-raised:
            # this is the request's outermost frame, and uvicorn would log it as an error.
            scope["state"]["error_code"] = "shutting_down"
            if not response_started:
                await send_error(send_with_id, "shutting_down", "the service is shutting down; retry on another instance",
                                 request_id, scope["path"], close=True)
        except Exception:
            # A bug, not the client's doing: logged with the id, and still answered in the
            # contract (JSON, request id in body and header). `Connection: close`, since the
            # request body may be half read; the server then closes cleanly, not mid-answer.
            log.exception("unexpected error", extra={"request_id": request_id})
            scope["state"]["error_code"] = "internal_error"
            if not response_started:
                await send_error(send_with_id, "internal_error", INTERNAL_MESSAGE, request_id, scope["path"], close=True)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            log.info(
                "request",
                extra={
                    "request_id": request_id, "client": (scope.get("client") or ("unknown",))[0],
                    "method": scope["method"], "route": route,
                    "status": status, "latency_ms": round(elapsed * 1000, 2),
                    "error_code": scope["state"].get("error_code"),
                },
            )




class BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """413 as soon as a request body passes `max_bytes`, counted while it streams in, so an
    oversized upload is never buffered whole. A Content-Length over the limit is refused
    before reading anything."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        received = 0
        exceeded = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded:
                return  # whatever the app made of the cut-off body, the answer is our 413
            response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not response_started:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        scope.setdefault("state", {})["error_code"] = "payload_too_large"
        await send_error(
            send, "payload_too_large",
            f"the upload is larger than the {self.max_bytes / 1024 / 1024:g} MB allowed (CXR_MAX_UPLOAD_MB)",
            scope.get("state", {}).get("request_id"), scope["path"], close=True)
