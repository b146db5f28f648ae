"""What uploads may hold of a worker, decided before their bodies are read and while they stream.

Before the body (the headers are in; nothing of the body is read):
- a worker whose scoring queue is full refuses at once (503 overloaded), rather than reading a
  50 MB body only to refuse it afterwards;
- the bodies a worker holds (read or being read, until their answers are sent) are bounded by
  CXR_MAX_INFLIGHT_UPLOAD_MB: a request's declared Content-Length is reserved from that budget
  up front, or refused 503 overloaded. 80 held 45 MB uploads took 3.6 GB before, past the
  container's memory limit. Small uploads (at most SMALL_UPLOAD_BYTES) have a reserve of their
  own beside it, so that a few large uploads cannot keep small requests out. A chunked body
  (no Content-Length) takes from the budget as it arrives, and is refused 503 mid-way if it
  runs out.

While the body streams in (besides the idle timeout between two reads, service/http/protocol.py):
- the whole upload must arrive within CXR_UPLOAD_TIMEOUT_S; and after the first GRACE_S, at
  no less than CXR_MIN_UPLOAD_RATE_KBPS on average. One byte every 20 s kept an upload open for
  101 s, the idle timer restarting on every byte. Either is answered 408 request_timeout.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.errors import refuse
from service.inference.runners import LIGHT_BYTES

SMALL_UPLOAD_BYTES = 4 * 1024 * 1024  # a chest X-ray JPEG is 0.1-3 MB
SMALL_RESERVE_BYTES = 64 * 1024 * 1024  # held by small uploads only, beyond the budget
MULTIPART_ROOM = 4096  # a multipart body's boundaries and part headers around the file
GRACE_S = 10.0  # a connection's first seconds (TCP slow start, a client still reading its file)


class UploadBudget:
    """The bytes of request bodies a worker holds (kept by the event loop's thread only)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.held = 0

    @property
    def full(self) -> bool:
        return self.held >= self.max_bytes

    def take(self, size: int, upload_size: int | None = None) -> bool:
        """Reserve `size` bytes for an upload of `upload_size` (default: `size`); False if they
        do not fit."""
        total = upload_size if upload_size is not None else size
        limit = self.max_bytes + (SMALL_RESERVE_BYTES if total <= SMALL_UPLOAD_BYTES else 0)
        if self.held + size > limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


class UploadRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class UploadLimitsMiddleware:
    def __init__(self, app: ASGIApp, budget: UploadBudget, timeout_s: float, min_rate_bytes_s: float):
        self.app, self.budget = app, budget
        self.timeout_s, self.min_rate = timeout_s, min_rate_bytes_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scoring = getattr(scope["app"].state, "scoring", None) if "app" in scope else None
        declared = _content_length(scope)
        light = declared is not None and declared <= LIGHT_BYTES + MULTIPART_ROOM
        if scoring is not None and not scoring.takes(1, light):
            await refuse(scope, send, "overloaded", f"this worker is scoring {scoring.queued_images} images, "
                          f"its limit is {scoring.max_queued_images} (CXR_MAX_QUEUED_IMAGES); retry shortly")
            return
        if declared and not self.budget.take(declared):
            await refuse(scope, send, "overloaded", self._budget_message())
            return
        held = [declared or 0]  # this request's bytes of the budget, given back with its answer
        try:
            await self._serve(scope, receive, send, held)
        finally:
            self.budget.give(held[0])

    def _budget_message(self) -> str:
        return (f"this worker holds {self.budget.held / 2**20:.0f} MB of uploads, its limit is "
                f"{self.budget.max_bytes / 2**20:.0f} MB (CXR_MAX_INFLIGHT_UPLOAD_MB); retry shortly")

    async def _serve(self, scope: Scope, receive: Receive, send: Send, held: list[int]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        received, body_done, refused = 0, False, False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, body_done, refused
            if body_done:  # the body is in: what follows is the disconnect, waited for freely
                return await receive()
            now = loop.time()
            # the latest moment the next bytes may come: the total limit, or when the average
            # rate since the start would fall under the minimum
            by_rate = started + max(GRACE_S, received / self.min_rate) if self.min_rate > 0 else float("inf")
            latest = min(started + self.timeout_s, by_rate)
            try:
                async with asyncio.timeout(max(0.0, latest - now)):
                    message = await receive()
            except TimeoutError:
                refused = True
                raise UploadRefused("request_timeout", self._slow_message(received, loop.time() - started)) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > held[0]:  # a chunked body, or more than it declared
                    if not self.budget.take(received - held[0], received):
                        refused = True
                        raise UploadRefused("overloaded", self._budget_message())
                    held[0] = received
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return  # whatever the app made of the cut-off body, the answer is ours
            response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except UploadRefused as exc:
            if not response_started:
                await refuse(scope, send, exc.code, exc.message)
        except Exception:
            if not refused:
                raise
            if not response_started:
                await refuse(scope, send, "request_timeout", "the upload was cut off")

    def _slow_message(self, received: int, elapsed: float) -> str:
        return (f"the upload was too slow: {received} bytes in {elapsed:.0f} s; an upload must arrive within "
                f"{self.timeout_s:g} s (CXR_UPLOAD_TIMEOUT_S), at {self.min_rate / 1024:g} KB/s at least "
                "(CXR_MIN_UPLOAD_RATE_KBPS)")
