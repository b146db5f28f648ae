"""One request's way through scoring, whichever runner serves it: admission, the deadline,
cancellation when the client has gone, and the prediction metrics.

Admission: each worker process scores at most `max_queued_images` images at once (queued or
running). Past that a request is refused at once (OverloadedError, answered with a Retry-After)
rather than queued without bound, and /health/ready reports not ready so that a load balancer
steers new clients away.

The deadline bounds the work, not just the wait: a request answered without its results (past
CXR_REQUEST_DEADLINE_S, or its client gone) sets its stop event, and its thread does no further
file of it (service.inference.pipeline). Its images stay counted until that thread is really
done, and while every decoding thread holds such overdue work the worker is `full`: refused and
not ready, instead of queueing new requests behind work nobody waits for. A decode already
running is not interrupted; what it may cost is bounded before it starts (service.inputs.cost:
at most ~2 s of CPU for the largest image allowed).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from service.inference.classifier import Classifier
from service.inference.errors import ClientGoneError, DeadlineExceededError, OverloadedError
from service.inference.pipeline import Outcome, Scored
from service.inference.runners import Runner, is_light
from service.inputs.errors import NotChestXrayError
from service.metrics import ServiceMetrics
from service.process.memory import IDLE_AFTER_S


class ScoringService:
    def __init__(self, runner: Runner, metrics: ServiceMetrics, deadline_s: float, max_queued_images: int):
        self.runner, self.metrics = runner, metrics
        self.deadline_s, self.max_queued_images = deadline_s, max_queued_images
        self.queued_images = 0  # kept by the event loop's thread only
        self.overdue = 0  # requests answered whose work has not stopped yet
        self._idle_timer: asyncio.TimerHandle | None = None
        self._releasing: asyncio.Future[bool] | None = None

    @property
    def classifier(self) -> Classifier:
        return self.runner.classifier

    @property
    def full(self) -> bool:
        """No more work is taken: the images limit is reached, or every decoding thread is busy
        with work whose request was already answered."""
        return self.queued_images >= self.max_queued_images or self.overdue >= self.runner.threads

    def takes(self, count: int, light: bool) -> bool:
        """Whether a request of `count` images is admitted now. Within the images limit, a light
        one (a single small upload) is taken even while every thread finishes overdue work: the
        runner's light lane scores it beside that work (service.inference.runners)."""
        if self.queued_images + count > self.max_queued_images:
            return False
        return self.overdue < self.runner.threads or (light and self.runner.light_room())

    async def score(self, files: list[bytes], heatmap: bool,
                    disconnected: Callable[[], Awaitable[None]]) -> list[Outcome]:
        """Each file's result or error, in order. Raises OverloadedError (refused at once),
        DeadlineExceededError (past the deadline the answer stops waiting, and the work stops
        before its next file) and ClientGoneError (`disconnected` returned first: likewise)."""
        if not self.takes(len(files), is_light(files)):
            raise OverloadedError(
                f"this worker is scoring {self.queued_images} images, its limit is "
                f"{self.max_queued_images} (CXR_MAX_QUEUED_IMAGES), and {self.overdue} of its "
                f"{self.runner.threads} threads finish work past its deadline; retry shortly")
        count = len(files)
        self.queued_images += count
        self.metrics.images_queued.inc(count)
        stop = threading.Event()
        scoring = asyncio.ensure_future(self.runner.score(files, heatmap, stop))
        scoring.add_done_callback(lambda _: self._release(count))  # counted until the work really ends
        results = await self._wait(scoring, stop, disconnected)
        self._count(results)
        return results

    def _release(self, count: int) -> None:
        self.queued_images -= count
        self.metrics.images_queued.dec(count)
        if self.queued_images == 0:  # idle from now: memory goes back unless work comes first
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._idle_timer = asyncio.get_running_loop().call_later(IDLE_AFTER_S, self._when_idle)

    def _when_idle(self) -> None:
        self._idle_timer = None
        if self.queued_images == 0 and (self._releasing is None or self._releasing.done()):
            self._releasing = asyncio.ensure_future(self.runner.release_idle_memory())
            # retrieved: a worker shutting down meanwhile (threads stopped) is no error to report
            self._releasing.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def _wait(self, scoring: asyncio.Future[list[Outcome]], stop: threading.Event,
                    disconnected: Callable[[], Awaitable[None]]) -> list[Outcome]:
        watching = asyncio.ensure_future(disconnected())
        either: set[asyncio.Future[Any]] = {scoring, watching}
        try:
            done, _ = await asyncio.wait(either, timeout=self.deadline_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server is shutting down: nobody waits any more
            stop.set()
            raise
        finally:
            watching.cancel()
        if scoring in done:
            return scoring.result()
        # answered without it: the work stops before its next file, and counts until it has
        stop.set()
        self.overdue += 1
        scoring.add_done_callback(self._overdue_done)
        if watching in done:
            raise ClientGoneError("the client disconnected before its answer was ready")
        raise DeadlineExceededError(
            f"decoding and scoring took longer than the {self.deadline_s:g} s allowed per request "
            "(CXR_REQUEST_DEADLINE_S)")

    def _overdue_done(self, scoring: asyncio.Future[list[Outcome]]) -> None:
        self.overdue -= 1
        if not scoring.cancelled():
            scoring.exception()  # retrieved: nobody is left to hear of it

    def _count(self, results: list[Outcome]) -> None:
        for result in results:
            if isinstance(result, Scored):
                self.metrics.predictions.inc()
            elif isinstance(result, NotChestXrayError):
                self.metrics.refusals.labels(result.reason).inc()
