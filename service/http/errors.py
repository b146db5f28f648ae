"""Every error answers {"error": {"code", "message"}, "request_id"}; never a bare 500 page."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.inference.errors import DeadlineExceededError, OverloadedError
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

# The one place where the service's own errors become HTTP: (status, code), most specific first.
ERROR_TABLE: tuple[tuple[type[BaseException], int, str], ...] = (
    (EmptyUploadError, 400, "empty_file"),
    (UnsupportedImageError, 415, "unsupported_media_type"),
    (NotChestXrayError, 422, "not_chest_xray"),
    (ImageTooLargeError, 422, "image_too_large"),
    (ImageShapeError, 422, "unsupported_image_shape"),
    (UnsupportedDicomError, 422, "unsupported_dicom"),
    (ImageDecodeError, 422, "undecodable_image"),
    (DeadlineExceededError, 503, "deadline_exceeded"),
    (OverloadedError, 503, "overloaded"),
)
# Retry-After for the 503s: a full queue drains in well under a second, and a retry after a
# shutdown goes to another instance; a request that ran past the deadline met heavy work that
# a retry at once would meet again
RETRY_AFTER_S = {"overloaded": "1", "shutting_down": "1", "deadline_exceeded": "5"}


class ApiError(Exception):
    """An error with its HTTP status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers
        self.reason: str | None = None  # for not_chest_xray: what refused it (Prometheus label)


def api_error_for(exc: BaseException) -> ApiError:
    """The ApiError that answers a domain error; anything else is an internal error (logged by
    the caller). Never raises."""
    if isinstance(exc, ApiError):
        return exc
    for kind, status, code in ERROR_TABLE:
        if isinstance(exc, kind):
            headers = {"Retry-After": RETRY_AFTER_S[code]} if code in RETRY_AFTER_S else None
            error = ApiError(status, code, str(exc), headers)
            error.reason = getattr(exc, "reason", None)
            return error
    return ApiError(500, "internal_error", "internal error; it was logged with this request id")


def error_body(code: str, message: str, request_id: str | None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, "request_id": request_id}


def error_response(status: int, code: str, message: str, request_id: str | None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, request_id), status_code=status, headers=headers)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found",
              405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def api_error_response(request: Request, exc: ApiError) -> JSONResponse:
    """The answer to an ApiError; its code also goes to the access log."""
    request.state.error_code = exc.code
    return error_response(exc.status, exc.code, exc.message, _request_id(request), exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return api_error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        request.state.error_code = code
        return error_response(exc.status_code, code, str(exc.detail), _request_id(request),
                              getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # a malformed request is the client's mistake: 400, naming the bad parts
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()
        )
        request.state.error_code = "bad_request"
        return error_response(400, "bad_request", f"malformed request: {problems}", _request_id(request))
    # anything else is answered by RequestContextMiddleware (JSON 500 with the request id)
