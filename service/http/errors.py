"""Where errors become HTTP, once: `ANSWERS` gives every error code its status and Retry-After,
`DOMAIN_CODES` gives each domain error raised inside its code. Every error answers
{"error": {"code", "message"}, "request_id"}, or under /v2 (the Open Inference Protocol) the
protocol's {"error": message} with the same code and request id beside it; never a bare 500 page."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from service.inference.errors import ClientGoneError, DeadlineExceededError, OverloadedError, ShuttingDownError
from service.inputs.errors import (
    EmptyUploadError,
    ImageDecodeError,
    ImageShapeError,
    ImageTooLargeError,
    NotChestXrayError,
    UnsupportedDicomError,
    UnsupportedImageError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """How an error code is answered over HTTP."""

    status: int
    retry_after_s: int | None = None  # for the 503s: when a retry may succeed


# THE table: every error code the service answers, with its status and Retry-After. The README's
# error table is checked against it (tests/service/test_errors.py). Retry-After: a full queue
# drains in well under a second and a retry after a shutdown goes to another instance; a request
# that ran past the deadline met heavy work that a retry at once would meet again.
ANSWERS: dict[str, Answer] = {
    "bad_request": Answer(400),
    "missing_file": Answer(400),
    "empty_file": Answer(400),
    "heatmap_unavailable": Answer(400),
    "host_not_allowed": Answer(400),
    "unauthorized": Answer(401),
    "origin_not_allowed": Answer(403),
    "not_found": Answer(404),
    "method_not_allowed": Answer(405),
    "request_timeout": Answer(408),
    "payload_too_large": Answer(413),
    "unsupported_media_type": Answer(415),
    "not_chest_xray": Answer(422),
    "image_too_large": Answer(422),
    "unsupported_image_shape": Answer(422),
    "unsupported_dicom": Answer(422),
    "undecodable_image": Answer(422),
    "too_many_failed_keys": Answer(429, retry_after_s=60),
    "rate_limited": Answer(429, retry_after_s=1),
    "request_header_fields_too_large": Answer(431),
    # nginx's code for "the client closed the connection before the answer": logged and counted
    # apart from the 5xx that page someone; nobody receives it
    "client_gone": Answer(499),
    "internal_error": Answer(500),
    "overloaded": Answer(503, retry_after_s=1),
    "shutting_down": Answer(503, retry_after_s=1),
    "deadline_exceeded": Answer(503, retry_after_s=5),
}
# The domain errors raised inside (service.inputs.errors, service.inference.errors) and their
# codes, most specific first; anything else is internal_error.
DOMAIN_CODES: tuple[tuple[type[Exception], str], ...] = (
    (EmptyUploadError, "empty_file"),
    (UnsupportedImageError, "unsupported_media_type"),
    (NotChestXrayError, "not_chest_xray"),
    (ImageTooLargeError, "image_too_large"),
    (ImageShapeError, "unsupported_image_shape"),
    (UnsupportedDicomError, "unsupported_dicom"),
    (ImageDecodeError, "undecodable_image"),
    (DeadlineExceededError, "deadline_exceeded"),
    (OverloadedError, "overloaded"),
    (ShuttingDownError, "shutting_down"),
    (ClientGoneError, "client_gone"),
)
# Statuses that Starlette itself raises (routing, multipart parsing) and their codes
STARLETTE_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found",
                   405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}
INTERNAL_MESSAGE = "internal error; it was logged with this request id"


def status_of(code: str) -> int:
    return ANSWERS[code].status


def headers_of(code: str) -> dict[str, str]:
    """The headers an error code's answer carries (Retry-After for the 503s)."""
    retry = ANSWERS[code].retry_after_s
    return {"Retry-After": str(retry)} if retry is not None else {}


class ApiError(Exception):
    """An error answered at the HTTP edge: a code of ANSWERS (which fixes its status) and a message."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status_of(code)
        self.headers = headers_of(code) | (headers or {})


def code_of(exc: BaseException) -> str:
    """The error code of a domain error; internal_error for anything else."""
    if isinstance(exc, ApiError):
        return exc.code
    return next((code for kind, code in DOMAIN_CODES if isinstance(exc, kind)), "internal_error")


def api_error_for(exc: BaseException) -> ApiError:
    """The ApiError that answers `exc`. Anything not a domain error is a bug: logged here with
    its traceback, answered without its text. Never raises."""
    if isinstance(exc, ApiError):
        return exc
    code = code_of(exc)
    if code == "internal_error":
        log.error("unexpected error while scoring an upload", exc_info=exc)
        return ApiError(code, INTERNAL_MESSAGE)
    return ApiError(code, str(exc))


OIP_PREFIX = "/v2"  # the Open Inference Protocol's routes (service/http/routes/oip.py)


def error_body(code: str, message: str, request_id: str | None, path: str = "") -> dict[str, Any]:
    """The error's body for a request to `path`."""
    if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/"):
        # the protocol's clients (tritonclient) read "error" as the message
        return {"error": message, "code": code, "request_id": request_id}
    return {"error": {"code": code, "message": message}, "request_id": request_id}


async def send_error(send: Send, code: str, message: str, request_id: str | None, path: str = "",
                     close: bool = False) -> None:
    """An error answer sent below the app, straight to the ASGI server (a middleware refusing a
    request); `close` adds `Connection: close`, for a request whose body may be half read."""
    encoded = json.dumps(error_body(code, message, request_id, path)).encode()
    extra = [(name.lower().encode(), value.encode()) for name, value in headers_of(code).items()]
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(encoded)).encode()),
               *([(b"connection", b"close")] if close else []), *extra]
    await send({"type": "http.response.start", "status": status_of(code), "headers": headers})
    await send({"type": "http.response.body", "body": encoded})


async def refuse(scope: Scope, send: Send, code: str, message: str) -> None:
    """A middleware's answer before (or instead of) the app's, recorded for the access log. The
    body is left unread: the protocol then ends the connection (service/http/protocol.py)."""
    state = scope.setdefault("state", {})
    state["error_code"] = code
    await send_error(send, code, message, state.get("request_id"))


def error_response(status: int, code: str, message: str, request_id: str | None,
                   headers: dict[str, str] | None = None, path: str = "") -> JSONResponse:
    return JSONResponse(error_body(code, message, request_id, path), status_code=status, headers=headers)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def api_error_response(request: Request, exc: ApiError) -> JSONResponse:
    """The answer to an ApiError; its code also goes to the access log."""
    request.state.error_code = exc.code
    return error_response(exc.status, exc.code, exc.message, _request_id(request), exc.headers, request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return api_error_response(request, exc)

    async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
        return api_error_response(request, api_error_for(exc))

    # a whole-request refusal (overload, deadline) raised by a route; a client that has gone is
    # left to RequestContextMiddleware, which logs it (nobody is left to answer)
    for kind, code in DOMAIN_CODES:
        if code != "client_gone":
            app.add_exception_handler(kind, _domain_error)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STARLETTE_CODES.get(exc.status_code, "http_error")
        request.state.error_code = code
        return error_response(exc.status_code, code, str(exc.detail), _request_id(request),
                              getattr(exc, "headers", None), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # a malformed request is the client's mistake: 400, naming the bad parts
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()
        )
        return api_error_response(request, ApiError("bad_request", f"malformed request: {problems}"))
    # anything else is answered by RequestContextMiddleware (JSON 500 with the request id)
