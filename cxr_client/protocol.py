"""The request/response contract with the service, shared by the sync and async clients."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from cxr_client.errors import ServiceError, ServiceUnavailable
from cxr_client.results import Prediction
from cxr_client.retry import RETRYABLE_ERRORS, RETRYABLE_STATUSES, RetryPolicy, retry_after_seconds

API_KEY_ENV = "CXR_API_KEY"  # so the key need not appear on command lines or in shell history
DEFAULT_TIMEOUT_S = 60.0

CONTENT_TYPES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))


def content_type(data: bytes) -> str:
    for magic, media_type in CONTENT_TYPES:
        if data.startswith(magic):
            return media_type
    if data[128:132] == b"DICM":
        return "application/dicom"
    return "application/octet-stream"  # the service decides, and says 415 if it cannot read it


def read_input(path_or_bytes: str | os.PathLike[str] | bytes) -> bytes:
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return bytes(path_or_bytes)
    return Path(path_or_bytes).read_bytes()


def headers(api_key: str | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    return {"X-API-Key": key} if key else {}


class Retry(Exception):
    """Internal: this attempt failed in a way worth another try after `delay` seconds."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


def judge(response: httpx.Response) -> Prediction:
    """A Prediction from a 200; Retry for 429/5xx-busy; ServiceError for the rest."""
    if response.status_code == 200:
        return Prediction.from_json(response.json())
    if response.status_code in RETRYABLE_STATUSES:
        raise Retry(f"HTTP {response.status_code}", retry_after_seconds(response))
    raise error_from(response)


def error_from(response: httpx.Response) -> ServiceError:
    try:
        body = response.json()
        error = body["error"]
        return ServiceError(error["message"], response.status_code, error["code"], body.get("request_id"))
    except (ValueError, KeyError, TypeError):
        return ServiceError(response.text[:200] or response.reason_phrase, response.status_code)


RETRYABLE = (Retry, *RETRYABLE_ERRORS)  # what the sync and async retry loops catch


def _retry_options(policy: RetryPolicy) -> dict[str, Any]:
    """tenacity's loop, as the policy says: RETRYABLE failures only, `policy.attempts` in all,
    the server's Retry-After or jittered backoff between them, ServiceUnavailable at the end."""

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome is not None else None
        return policy.delay(state.attempt_number, getattr(failure, "retry_after", None))

    def give_up(state: RetryCallState) -> Any:
        last = state.outcome.exception() if state.outcome is not None else None
        raise ServiceUnavailable(f"no answer after {policy.attempts} attempts: "
                                 f"{describe(last if isinstance(last, Exception) else None)}")

    return {"stop": stop_after_attempt(policy.attempts), "wait": wait,
            "retry": retry_if_exception_type(RETRYABLE), "retry_error_callback": give_up}


def retrying(policy: RetryPolicy) -> Retrying:
    return Retrying(**_retry_options(policy))


def async_retrying(policy: RetryPolicy) -> AsyncRetrying:
    return AsyncRetrying(**_retry_options(policy))


def describe(exc: Exception | None) -> str:
    if isinstance(exc, RETRYABLE_ERRORS):
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return str(exc)
