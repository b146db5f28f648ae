"""One request's way through scoring, whichever runner serves it: admission, the deadline,
cancellation when the client has gone, and the prediction metrics.

Admission: each worker process scores at most `max_queued_images` images at once (queued or
running). Past that a request is refused at once (OverloadedError, answered with a Retry-After)
rather than queued without bound, and /health/ready reports not ready so that a load balancer
steers new clients away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from service.inference.classifier import Classifier
from service.inference.errors import ClientGoneError, DeadlineExceededError, OverloadedError
from service.inference.pipeline import Outcome, Scored
from service.inference.runners import Runner
from service.inputs.errors import NotChestXrayError
from service.metrics import ServiceMetrics


class ScoringService:
    def __init__(self, runner: Runner, metrics: ServiceMetrics, deadline_s: float, max_queued_images: int):
        self.runner, self.metrics = runner, metrics
        self.deadline_s, self.max_queued_images = deadline_s, max_queued_images
        self.queued_images = 0  # kept by the event loop's thread only

    @property
    def classifier(self) -> Classifier:
        return self.runner.classifier

    @property
    def full(self) -> bool:
        return self.queued_images >= self.max_queued_images

    async def score(self, files: list[bytes], heatmap: bool,
                    disconnected: Callable[[], Awaitable[None]]) -> list[Outcome]:
        """Each file's result or error, in order. Raises OverloadedError (refused at once),
        DeadlineExceededError (past the deadline the answer stops waiting; a thread cannot be
        killed, but the budgets checked before decoding bound what it still does) and
        ClientGoneError (`disconnected` returned first: work not yet started is dropped)."""
        if self.queued_images + len(files) > self.max_queued_images:
            raise OverloadedError(
                f"this worker is scoring {self.queued_images} images, its limit is "
                f"{self.max_queued_images} (CXR_MAX_QUEUED_IMAGES); retry shortly")
        self.queued_images += len(files)
        self.metrics.images_queued.inc(len(files))
        try:
            results = await self._score_unless_gone(files, heatmap, disconnected)
        finally:
            self.queued_images -= len(files)
            self.metrics.images_queued.dec(len(files))
        self._count(results)
        return results

    async def _score_unless_gone(self, files: list[bytes], heatmap: bool,
                                 disconnected: Callable[[], Awaitable[None]]) -> list[Outcome]:
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

    def _count(self, results: list[Outcome]) -> None:
        for result in results:
            if isinstance(result, Scored):
                self.metrics.predictions.inc()
            elif isinstance(result, NotChestXrayError):
                self.metrics.refusals.labels(result.reason).inc()
