"""The deadline bounds the work, not just the wait: a batch answered 503 at its deadline stops
before its next file, its images stay counted until its thread is really done, and a worker
whose every thread holds such work is refused and not ready meanwhile. The heavy inputs are
built here: real X-rays as 6000 px 16-bit PNGs (the costliest decode the limits allow)."""

from __future__ import annotations

import asyncio
import math
import threading
import time

from service.process.threads import WorkerThreads
from tests.service.conftest import assert_error, deadline_half_way_through_a_file, make_client


def test_a_running_job_stays_pending_after_its_caller_gave_up():
    async def main():
        workers = WorkerThreads(1, "test")
        workers.start()
        release = threading.Event()
        try:
            job = asyncio.ensure_future(workers.run(release.wait, 10))
            await asyncio.sleep(0.05)
            job.cancel()
            await asyncio.sleep(0.05)
            assert workers.pending == 1  # the thread is still busy with it
            release.set()
            for _ in range(100):
                if workers.pending == 0:
                    break
                await asyncio.sleep(0.01)
            assert workers.pending == 0
        finally:
            workers.stop()

    asyncio.run(main())


def _wait_until(condition, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_batch_past_its_deadline_stops_before_its_next_file(bundled_model, heavy_png, heavy_decode_s,
                                                              normal_jpeg):
    one_file = heavy_decode_s
    deadline = deadline_half_way_through_a_file(one_file)
    count = math.ceil(deadline / one_file) + 4  # files to spare after the one the deadline falls in
    settings = {"request_deadline_s": deadline, "decode_threads": 1,
                "max_upload_mb": 400, "max_inflight_upload_mb": 1024}
    with make_client(bundled_model, **settings) as client:
        scoring = client.app.state.scoring
        files = [("files", (f"{i}.png", heavy_png, "image/png")) for i in range(count)]

        answer: dict = {}
        batch = threading.Thread(target=lambda: answer.update(response=client.post("/predict/batch", files=files)))
        started = time.monotonic()
        batch.start()
        batch.join()
        answered = time.monotonic() - started
        assert_error(answer["response"], 503, "deadline_exceeded")
        # its images still count, and its only thread is busy with it: refused, and not ready
        assert scoring.queued_images == count and scoring.overdue == 1
        assert client.get("/health/ready").status_code == 503
        assert_error(client.post("/predict", content=heavy_png), 503, "overloaded")  # (a small one: the light lane)
        stopped_after = _wait_until(lambda: scoring.queued_images == 0, 60)
        # the file being decoded at the deadline is finished, no other: not count x one_file
        assert stopped_after < 2 * one_file + 0.5, (stopped_after, one_file)
        assert answered + stopped_after < (count - 2) * one_file, (answered, stopped_after, one_file)
        assert scoring.overdue == 0 and client.get("/health/ready").status_code == 200
        assert client.post("/predict", content=normal_jpeg.read_bytes()).status_code == 200
