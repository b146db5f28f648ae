"""One request's way through scoring, whichever runner serves it: admission, the deadline,
cancellation when the client has gone, the image check and the prediction metrics.

Admission: each worker process scores at most `max_queued_images` images at once (queued or
running). Past that a request is refused at once with 503 and Retry-After rather than queued
without bound, and /health/ready turns 503 so that a load balancer steers new clients away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from service.http.errors import ApiError, api_error_for
from service.inference.classifier import Classifier
from service.inference.errors import ClientGoneError, DeadlineExceededError, OverloadedError
from service.inference.pipeline import Scored, check_images
from service.inference.runners import Runner
from service.inputs.limits import Limits
from service.metrics import ServiceMetrics


class ScoringService:
    def __init__(self, runner: Runner, metrics: ServiceMetrics, limits: Limits,
                 deadline_s: float, max_queued_images: int):
        self.runner, self.metrics, self.limits = runner, metrics, limits
        self.deadline_s, self.max_queued_images = deadline_s, max_queued_images
        self.queued_images = 0  # kept by the event loop's thread only

    @property
    def classifier(self) -> Classifier:
        return self.runner.classifier

    @property
    def full(self) -> bool:
        return self.queued_images >= self.max_queued_images

    async def score(self, files: list[bytes], heatmap: bool,
                    disconnected: Callable[[], Awaitable[None]]) -> list[Scored | ApiError]:
        """Each file's result or error, in order. Raises OverloadedError (refused at once),
        DeadlineExceededError (past the deadline the answer stops waiting; a thread cannot be
        killed, but the budgets checked before decoding bound what it still does) and
        ClientGoneError (`disconnected` returned first: work not yet started is dropped)."""
        if self.queued_images + len(files) > self.max_queued_images:
            raise OverloadedError(
                f"this worker is scoring {self.queued_images} images, its limit is "
                f"{self.max_queued_images} (CXR_MAX_QUEUED_IMAGES); retry shortly")
        self.queued_images += len(files)
        try:
            results = await self._score_unless_gone(files, heatmap, disconnected)
        finally:
            self.queued_images -= len(files)
        return self._checked(results)

    async def _score_unless_gone(self, files: list[bytes], heatmap: bool,
                                 disconnected: Callable[[], Awaitable[None]]) -> list[Scored | ApiError]:
        scoring = asyncio.ensure_future(self.runner.score(files, heatmap))
        watching = asyncio.ensure_future(disconnected())
        try:
            done, _ = await asyncio.wait({scoring, watching}, timeout=self.deadline_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            watching.cancel()
            if not scoring.done():
                scoring.cancel()  # a job still waiting for a thread is then skipped (WorkerThreads)
        if scoring in done:
            return scoring.result()
        if watching in done:
            raise ClientGoneError("the client disconnected before its answer was ready")
        raise DeadlineExceededError(
            f"decoding and scoring took longer than the {self.deadline_s:g} s allowed per request "
            "(CXR_REQUEST_DEADLINE_S)")

    def _checked(self, results: list[Scored | ApiError]) -> list[Scored | ApiError]:
        results = check_images(results, self.classifier, self.limits.image_check)
        for result in results:
            if isinstance(result, Scored):
                self.metrics.predictions.labels(result.prediction.label).inc()
            elif result.code == "not_chest_xray":
                self.metrics.refusals.labels(result.reason or "unknown").inc()
        return results


async def score_or_error(service: ScoringService, files: list[bytes], heatmap: bool,
                         disconnected: Callable[[], Awaitable[None]]) -> list[Scored | ApiError]:
    """The service's results; a whole-request refusal (overload, deadline) as the ApiError that
    answers it. ClientGoneError passes through: nobody is left to answer."""
    try:
        return await service.score(files, heatmap, disconnected)
    except (OverloadedError, DeadlineExceededError) as exc:
        raise api_error_for(exc) from None
