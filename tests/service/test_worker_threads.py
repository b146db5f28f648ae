"""WorkerThreads: results and errors come back to the caller; cancelled jobs are skipped."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.process.threads import WorkerThreads


def test_results_and_errors_come_back_to_their_callers():
    async def main():
        workers = WorkerThreads(2, "test")
        workers.start()
        try:
            names = await asyncio.gather(*(workers.run(lambda: threading.current_thread().name) for _ in range(8)))
            assert set(names) <= {"test-0", "test-1"}
            assert await asyncio.gather(*(workers.run(pow, i, 2) for i in range(10))) == [i * i for i in range(10)]
            with pytest.raises(ZeroDivisionError):
                await workers.run(divmod, 1, 0)
            assert await workers.run(pow, 3, 2) == 9  # a failed job leaves its thread working
        finally:
            workers.stop()

    asyncio.run(main())


def test_a_job_cancelled_while_it_waits_is_not_run():
    async def main():
        workers = WorkerThreads(1, "test")
        workers.start()
        release, ran = threading.Event(), []
        try:
            blocker = asyncio.ensure_future(workers.run(release.wait, 10))
            waiting = asyncio.ensure_future(workers.run(ran.append, "waiting job"))
            await asyncio.sleep(0.05)
            waiting.cancel()
            release.set()
            assert await blocker is True
            assert await workers.run(ran.append, "later job") is None
        finally:
            workers.stop()
        assert ran == ["later job"]

    asyncio.run(main())


def test_running_a_job_needs_started_threads():
    async def main():
        workers = WorkerThreads(1, "test")
        with pytest.raises(RuntimeError, match="not running"):
            await workers.run(pow, 2, 2)
        workers.start()
        workers.stop()
        with pytest.raises(RuntimeError, match="not running"):
            await workers.run(pow, 2, 2)

    asyncio.run(main())
