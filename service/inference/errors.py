"""Why a request's scoring did not finish, in the service's own terms (no HTTP here); the
upload itself was fine. `service.http.errors` maps each to its status, code and Retry-After."""

from __future__ import annotations


class DeadlineExceededError(TimeoutError):
    """Decoding and scoring ran past the per-request deadline; the answer does not wait for it."""


class OverloadedError(RuntimeError):
    """This worker already has as much scoring work as it takes (admission control)."""


class ClientGoneError(ConnectionError):
    """The client disconnected before its answer: nobody is left to answer."""


class ShuttingDownError(RuntimeError):
    """The service stopped before this request's answer was ready."""
