"""Run images from concurrent requests through onnxruntime together (dynamic batching).

One batch of 16 costs far less than 16 runs of one: the per-run overhead is paid once and the
convolutions run on larger matrices. A batch waits at most `max_wait_ms` for companions, and only
while other requests are still being decoded (so a lone request never waits); each caller gets
its own slice of the answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from anyio import to_thread

from service.classifier import Classifier, Prediction
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class DirectRunner:
    """No batching across requests: each request's images are one onnxruntime run."""

    def __init__(self, classifier: Classifier, metrics: ServiceMetrics):
        self.classifier, self.metrics = classifier, metrics
        self.decodes_in_flight = 0  # requests being decoded now: companions worth waiting for

    async def start(self) -> None:
        pass

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Around a request's decoding: tells the batcher a request is coming."""
        self.decodes_in_flight += 1
        try:
            yield
        finally:
            self.decodes_in_flight -= 1

    async def stop(self) -> None:
        pass

    async def predict(self, pixels: np.ndarray) -> list[Prediction]:
        self.metrics.batch_size.observe(len(pixels))
        return await to_thread.run_sync(self.classifier.predict, pixels)


class DynamicBatcher(DirectRunner):
    """Collects (N_i, S, S) uint8 arrays from callers into runs of at most `max_batch` images."""

    def __init__(self, classifier: Classifier, metrics: ServiceMetrics, max_batch: int = 16,
                 max_wait_ms: float = 5.0):
        super().__init__(classifier, metrics)
        self.max_batch, self.max_wait_s = max_batch, max_wait_ms / 1000
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dynamic-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while not self._queue.empty():  # nobody is left waiting forever
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the service is shutting down"))

    async def predict(self, pixels: np.ndarray) -> list[Prediction]:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((pixels, future))
        return await future

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        """The first waiting request, then companions until the batch is full or the wait ends."""
        items = [await self._queue.get()]
        count = len(items[0][0])
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while count < self.max_batch:
            if self._queue.empty():
                if not self.decodes_in_flight:
                    break  # nobody else is coming: run now rather than wait
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            items.append(item)
            count += len(item[0])
        return items

    async def _run(self) -> None:
        while True:
            items = await self._collect()
            batch = np.concatenate([pixels for pixels, _ in items])
            self.metrics.batch_size.observe(len(batch))
            try:
                predictions = await to_thread.run_sync(self.classifier.predict, batch)
            except Exception as exc:  # noqa: BLE001 - every caller must hear of it, not just a log
                log.exception("batched inference failed")
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for pixels, future in items:
                if not future.done():  # a caller that went away (disconnect) is skipped
                    future.set_result(predictions[start : start + len(pixels)])
                start += len(pixels)

