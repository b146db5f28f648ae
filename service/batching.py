"""Runners: how decoded uploads reach the model.

DirectRunner (the default on the CPU): one scoring thread decodes a request's files and runs
them through onnxruntime, with no hand-off in between. On a CPU, batching buys little and each
hand-off between threads costs the GIL and a context switch: measured at concurrency 16 on
2 cores, this path served 211 images/s against 193 with batching (one worker process), and
scoring the requests already waiting as one batch of up to 2 or 4 gained nothing over one at a
time (two worker processes).

DynamicBatcher (the default on CUDA): decodes in worker threads, then runs images from
concurrent requests through onnxruntime together. On a GPU one run of 16 costs little more than
a run of one. A batch waits at most `max_wait_ms` for companions, and only while other requests
are still being decoded (so a lone request never waits); each caller gets its own slice.

Both decode at most `threads` uploads at once: decoding is CPU work, and more threads than that
only add switching and memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from service.classifier import Classifier, Prediction
from service.errors import ApiError
from service.metrics import ServiceMetrics
from service.peers import PeerLoad
from service.input_errors import DeadlineExceededError
from service.limits import Limits
from service.memory import MemoryWatermark
from service.scoring import Scored, attach, check_images, decode_all, pixels_of
from service.worker_threads import WorkerThreads

log = logging.getLogger(__name__)


class DirectRunner:
    """Each request decoded and scored in one worker thread; no batching across requests.

    With `peers` (the other worker processes' load), a helper thread takes requests while the
    other workers are idle, so a client whose connections all landed here still gets every core."""

    def __init__(self, classifier: Classifier, metrics: ServiceMetrics, threads: int,
                 peers: PeerLoad | None = None, limits: Limits = Limits(), deadline_s: float | None = None):
        self.classifier, self.metrics, self.peers = classifier, metrics, peers
        self.limits, self.deadline_s = limits, deadline_s
        self._memory = MemoryWatermark()
        self._workers = WorkerThreads(threads, "cxr-score")
        self._helper = WorkerThreads(1, "cxr-help") if peers is not None else None
        self._in_flight = 0  # requests in this process between arrival and answer

    async def start(self) -> None:
        self._workers.start()
        if self._helper is not None:
            self._helper.start()

    async def stop(self) -> None:
        self._workers.stop()
        if self._helper is not None:
            self._helper.stop()

    def _others_idle(self) -> bool:
        return self.peers is None or self.peers.others_idle()

    async def score(self, files: list[bytes]) -> list[Scored | ApiError]:
        """Each file's result or error, in order. Past the deadline the answer stops waiting
        (DeadlineExceededError); a thread cannot be killed, but the budgets checked before
        decoding keep what it still does bounded."""
        self._in_flight += 1
        if self.peers is not None:
            self.peers.add(1)
        try:
            results = await asyncio.wait_for(self._score(files), self.deadline_s)
        except TimeoutError:
            raise DeadlineExceededError(
                f"decoding and scoring took longer than the {self.deadline_s:g} s allowed per request "
                "(CXR_REQUEST_DEADLINE_S)") from None
        finally:
            self._in_flight -= 1
            if self.peers is not None:
                self.peers.add(-1)
        results = check_images(results, self.classifier, self.limits.image_check)
        for result in results:
            if isinstance(result, Scored):
                self.metrics.predictions.labels(result.prediction.label).inc()
            elif result.code == "not_chest_xray":
                self.metrics.refusals.labels(result.reason or "unknown").inc()
        return results

    async def _score(self, files: list[bytes]) -> list[Scored | ApiError]:
        threads = self._workers
        if self._helper is not None and self._helper.pending < threads.pending and self._others_idle():
            threads = self._helper
        return await threads.run(self._decode_and_predict, files)

    def _decode_and_predict(self, files: list[bytes]) -> list[Scored | ApiError]:
        try:
            return self._decode_and_predict_now(files)
        finally:
            self._memory.after_request()

    def _decode_and_predict_now(self, files: list[bytes]) -> list[Scored | ApiError]:
        decoded = decode_all(files, self.classifier.input_size, self.limits)
        pixels = pixels_of(decoded)
        if pixels is None:
            return attach(decoded, [])
        self.metrics.batch_size.observe(len(pixels))
        alone = self._in_flight == 1 and self._others_idle()
        return attach(decoded, self.classifier.predict(pixels, alone=alone))


class DynamicBatcher(DirectRunner):
    """Collects (N_i, S, S) uint8 arrays from callers into runs of at most `max_batch` images."""

    def __init__(self, classifier: Classifier, metrics: ServiceMetrics, threads: int, max_batch: int = 16,
                 max_wait_ms: float = 5.0, limits: Limits = Limits(), deadline_s: float | None = None):
        super().__init__(classifier, metrics, threads, limits=limits, deadline_s=deadline_s)
        self.max_batch, self.max_wait_s = max_batch, max_wait_ms / 1000
        self.decodes_in_flight = 0  # requests being decoded now: companions worth waiting for
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._inference = WorkerThreads(1, "cxr-infer")  # one batch at a time, in its own thread

    async def start(self) -> None:
        await super().start()
        self._inference.start()
        self._task = asyncio.create_task(self._run(), name="dynamic-batcher")

    async def stop(self) -> None:
        await super().stop()
        self._inference.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while not self._queue.empty():  # nobody is left waiting forever
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the service is shutting down"))

    @contextmanager
    def _decoding(self) -> Iterator[None]:
        """Around a request's decoding: tells the batcher a request is coming."""
        self.decodes_in_flight += 1
        try:
            yield
        finally:
            self.decodes_in_flight -= 1

    async def _score(self, files: list[bytes]) -> list[Scored | ApiError]:
        with self._decoding():
            decoded = await self._workers.run(decode_all, files, self.classifier.input_size, self.limits)
        pixels = pixels_of(decoded)
        return attach(decoded, [] if pixels is None else await self._submit(pixels))

    async def _submit(self, pixels: np.ndarray) -> list[Prediction]:
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
                predictions = await self._inference.run(self.classifier.predict, batch)
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
