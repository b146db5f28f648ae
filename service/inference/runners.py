"""Runners: how a request's uploads reach the model. Two implementations of one protocol.

DirectRunner (the default on the CPU): one thread decodes a request's files and runs them
through onnxruntime, with no hand-off in between. On a CPU, batching buys little and each
hand-off between threads costs the GIL and a context switch: measured at concurrency 16 on
2 cores, this path served 211 images/s against 193 with batching (one worker process), and
scoring the requests already waiting as one batch of up to 2 or 4 gained nothing over one at a
time (two worker processes).

BatchingRunner (the default on CUDA): decodes in worker threads, then runs images from
concurrent requests through onnxruntime together. On a GPU one run of 16 costs little more than
a run of one. A batch waits at most `max_wait_ms` for companions, and only while other requests
are still being decoded (so a lone request never waits); each caller gets its own slice.

Both decode at most `threads` uploads at once: decoding is CPU work, and more threads than that
only add switching and memory. Both do the same work on each upload (service.inference.pipeline:
decode, predict, the image check, heatmaps) and hand memory back after large requests and once
idle (service.process.memory); they differ
only in where and with whom the model runs. What surrounds a runner (admission, the deadline,
metrics) is the same for both and lives in service.inference.scoring.

The light lane (DirectRunner): one more thread, for single uploads of at most LIGHT_BYTES
while every worker thread is busy. 32 clients looping the heaviest uploads allowed (6000 px,
every format, heatmaps) kept the worker threads and the admission count full, and a clinician's
single X-ray waited seconds behind them or was refused (overloaded). On the lane it waits behind at most
LIGHT_LANE_QUEUE other light requests, and gets its share of the cores from the scheduler
instead of a place at the back of the queue. A small file can still decode to a large image
(a flat 6000 px PNG): what that costs is bounded per file before decoding, and the lane's
queue bounds how many wait.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Protocol

import numpy as np

from service.inference.classifier import Classifier, Prediction
from service.inference.errors import DeadlineExceededError, ShuttingDownError
from service.inference.pipeline import STOPPED, Decoded, Outcome, decode_all, finish, pixels_of, score_uploads, stopped
from service.inputs.limits import Limits
from service.metrics import ServiceMetrics
from service.process.memory import MemoryWatermark
from service.process.peers import PeerLoad
from service.process.threads import WorkerThreads

log = logging.getLogger(__name__)

LIGHT_BYTES = 2 * 1024 * 1024  # a chest X-ray JPEG is 0.1-3 MB; the light lane takes up to this
LIGHT_LANE_QUEUE = 4  # light requests queued or running on the lane at once


def is_light(files: list[bytes]) -> bool:
    return len(files) == 1 and len(files[0]) <= LIGHT_BYTES


# a request's pixels waiting for a batch: (pixels, with the CAM, where its predictions go)
_Waiting = tuple[np.ndarray, bool, "asyncio.Future[list[Prediction]]"]


class Runner(Protocol):
    classifier: Classifier
    threads: int  # uploads decoded at once

    def light_room(self) -> bool:
        """Whether a light request (is_light) may come in beyond the worker's limits."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def score(self, files: list[bytes], heatmap: bool, stop: threading.Event | None = None) -> list[Outcome]:
        """Each file's result or error, in order; with `heatmap`, each result carries its map.
        Once `stop` is set, the work still to do for this request is skipped."""
        ...

    async def release_idle_memory(self) -> bool:
        """Hand back what the last burst of work left behind (MemoryWatermark.when_idle), off the
        event loop; for a worker that has had nothing to do for a while."""
        ...


class DirectRunner:
    """Each request decoded and scored in one worker thread; no batching across requests.

    With `peers` (the other worker processes' load), a helper thread takes requests while the
    other workers are idle, so a client whose connections all landed here still gets every core."""

    def __init__(self, classifier: Classifier, metrics: ServiceMetrics, threads: int, limits: Limits,
                 peers: PeerLoad | None = None):
        self.classifier, self.metrics, self.limits, self.peers = classifier, metrics, limits, peers
        self.threads = threads
        self._memory = MemoryWatermark()
        self._workers = WorkerThreads(threads, "cxr-score")
        self._helper = WorkerThreads(1, "cxr-help") if peers is not None else None
        self._light = WorkerThreads(1, "cxr-light")
        self._heavy = 0  # requests that are not light, queued or running on the worker threads
        self._in_flight = 0  # requests in this process between arrival and answer

    async def start(self) -> None:
        self._workers.start()
        self._light.start()
        if self._helper is not None:
            self._helper.start()

    async def stop(self) -> None:
        self._workers.stop()
        self._light.stop()
        if self._helper is not None:
            self._helper.stop()

    def light_room(self) -> bool:
        return self._light.pending < LIGHT_LANE_QUEUE

    async def release_idle_memory(self) -> bool:
        return await self._light.run(self._memory.when_idle)

    def _others_idle(self) -> bool:
        return self.peers is None or self.peers.others_idle()

    async def score(self, files: list[bytes], heatmap: bool, stop: threading.Event | None = None) -> list[Outcome]:
        self._in_flight += 1
        if self.peers is not None:
            self.peers.add(1)
        try:
            threads = self._workers
            if self._helper is not None and self._helper.pending < threads.pending and self._others_idle():
                threads = self._helper
            elif is_light(files) and self._heavy >= self.threads and self.light_room():
                threads = self._light  # heavy work holds every worker thread: not behind it
            heavy = threads is not self._light and not is_light(files)
            self._heavy += heavy
            try:
                return await threads.run(self._score_here, files, heatmap, stop)
            finally:
                self._heavy -= heavy
        finally:
            self._in_flight -= 1
            if self.peers is not None:
                self.peers.add(-1)

    def _score_here(self, files: list[bytes], heatmap: bool, stop: threading.Event | None) -> list[Outcome]:
        try:
            return score_uploads(files, heatmap, self.classifier, self.limits, self._predict, stop)
        finally:
            self._memory.after_request()

    def _predict(self, pixels: np.ndarray, cam: bool) -> list[Prediction]:
        self.metrics.batch_size.observe(len(pixels))
        alone = self._in_flight == 1 and self._others_idle()
        return self.classifier.predict(pixels, alone=alone, cam=cam)


class BatchingRunner:
    """Collects (N_i, S, S) uint8 arrays from callers into runs of at most `max_batch` images."""

    def __init__(self, classifier: Classifier, metrics: ServiceMetrics, threads: int, limits: Limits,
                 max_batch: int, max_wait_ms: float):
        self.classifier, self.metrics, self.limits = classifier, metrics, limits
        self.max_batch, self.max_wait_s = max_batch, max_wait_ms / 1000
        self.threads = threads
        self.decodes_in_flight = 0  # requests being decoded now: companions worth waiting for
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._workers = WorkerThreads(threads, "cxr-decode")
        self._inference = WorkerThreads(1, "cxr-infer")  # one batch at a time, in its own thread
        self._memory = MemoryWatermark()

    def light_room(self) -> bool:
        return False  # on a GPU the batch is the fast lane

    async def start(self) -> None:
        self._workers.start()
        self._inference.start()
        self._task = asyncio.create_task(self._run(), name="batching-runner")

    async def stop(self) -> None:
        self._workers.stop()
        self._inference.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while not self._queue.empty():  # nobody is left waiting forever
            _, _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(ShuttingDownError("the service is shutting down; retry on another instance"))

    async def score(self, files: list[bytes], heatmap: bool, stop: threading.Event | None = None) -> list[Outcome]:
        self.decodes_in_flight += 1  # tells the batcher that a request is coming
        try:
            decoded = await self._workers.run(decode_all, files, self.classifier.input_size, self.limits,
                                              heatmap, stop)
        finally:
            self.decodes_in_flight -= 1
        if stopped(stop):
            return [DeadlineExceededError(STOPPED) for _ in files]
        pixels = pixels_of(decoded)
        predictions = await self._submit(pixels, heatmap) if pixels is not None else []
        if heatmap:  # drawing them is CPU work: in a thread; the rest is a few comparisons
            return await self._workers.run(self._finish, decoded, predictions, heatmap)
        return self._finish(decoded, predictions, heatmap)

    def _finish(self, decoded: list[Decoded], predictions: list[Prediction], heatmap: bool) -> list[Outcome]:
        try:
            return finish(decoded, predictions, self.classifier, self.limits, heatmap)
        finally:
            self._memory.after_request()

    async def release_idle_memory(self) -> bool:
        return await self._inference.run(self._memory.when_idle)

    async def _submit(self, pixels: np.ndarray, heatmap: bool) -> list[Prediction]:
        future: asyncio.Future[list[Prediction]] = asyncio.get_running_loop().create_future()
        await self._queue.put((pixels, heatmap, future))
        return await future

    async def _collect(self) -> list[_Waiting]:
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
            batch = np.concatenate([pixels for pixels, _, _ in items])
            cam = any(heatmap for _, heatmap, _ in items)
            self.metrics.batch_size.observe(len(batch))
            try:
                predictions = await self._inference.run(self.classifier.predict, batch, False, cam)
            except Exception as exc:  # every caller must hear of it, not just a log
                log.exception("batched inference failed")
                for _, _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for pixels, _, future in items:
                if not future.done():  # a caller that went away (disconnect) is skipped
                    future.set_result(predictions[start : start + len(pixels)])
                start += len(pixels)
