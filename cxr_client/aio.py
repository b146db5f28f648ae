"""Asynchronous twin of Client, for asyncio code."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import httpx

from cxr_client import protocol
from cxr_client.errors import ServiceError
from cxr_client.results import ItemResult, Prediction
from cxr_client.retry import RetryPolicy


class AsyncClient:
    def __init__(self, base_url: str, api_key: str | None = None,
                 timeout: float = protocol.DEFAULT_TIMEOUT_S, retries: int | RetryPolicy = 5):
        self.policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(attempts=max(1, retries))
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, headers=protocol.headers(api_key))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def predict(self, path_or_bytes: str | os.PathLike[str] | bytes) -> Prediction:
        data = await asyncio.to_thread(protocol.read_input, path_or_bytes)

        async def attempt() -> Prediction:
            response = await self._http.post(
                "/predict", content=data, headers={"Content-Type": protocol.content_type(data)})
            return protocol.judge(response)

        prediction: Prediction = await protocol.async_retrying(self.policy)(attempt)
        return prediction

    async def predict_many(self, paths: Iterable[str | os.PathLike[str]], concurrency: int = 4) -> AsyncIterator[ItemResult]:
        """Score files `concurrency` at a time, yielding each result as it completes."""
        limit = asyncio.Semaphore(max(1, concurrency))

        async def one(path: Path) -> ItemResult:
            async with limit:
                try:
                    return ItemResult(path, prediction=await self.predict(path))
                except (ServiceError, OSError) as exc:
                    return ItemResult(path, error=str(exc), code=getattr(exc, "code", None))

        tasks = [asyncio.create_task(one(Path(p))) for p in paths]
        try:
            for next_done in asyncio.as_completed(tasks):
                yield await next_done
        finally:
            for task in tasks:
                task.cancel()
