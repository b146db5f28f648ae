"""Synchronous client: predict one image, or many concurrently (threads)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

import httpx

from cxr_client import protocol
from cxr_client.errors import ServiceError
from cxr_client.results import ItemResult, Prediction
from cxr_client.retry import RetryPolicy

T = TypeVar("T")


class Client:
    def __init__(self, base_url: str, api_key: str | None = None,
                 timeout: float = protocol.DEFAULT_TIMEOUT_S, retries: int | RetryPolicy = 5):
        """`api_key` defaults to $CXR_API_KEY; `retries` is the number of attempts in all."""
        self.policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(attempts=max(1, retries))
        self._http = httpx.Client(base_url=base_url, timeout=timeout, headers=protocol.headers(api_key))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def predict(self, path_or_bytes: str | os.PathLike[str] | bytes) -> Prediction:
        """Score one image (JPEG, PNG or DICOM); raises ServiceError / ServiceUnavailable."""
        data = protocol.read_input(path_or_bytes)
        return self._with_retries(lambda: protocol.judge(self._http.post(
            "/predict", content=data, headers={"Content-Type": protocol.content_type(data)})))

    def predict_many(self, paths: Iterable[str | os.PathLike[str]], concurrency: int = 4) -> Iterator[ItemResult]:
        """Score files `concurrency` at a time, yielding each result as it completes."""
        pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
        try:
            futures = {pool.submit(self.predict, path): Path(path) for path in paths}
            for future in as_completed(futures):
                path = futures[future]
                try:
                    yield ItemResult(path, prediction=future.result())
                except (ServiceError, OSError) as exc:
                    yield ItemResult(path, error=str(exc), code=getattr(exc, "code", None))
        finally:  # stopped early (Ctrl-C, break): drop what has not started
            pool.shutdown(wait=False, cancel_futures=True)

    def health(self) -> dict[str, Any]:
        return self._get_json("/health/ready", allow=(200, 503))

    def model(self) -> dict[str, Any]:
        return self._get_json("/model")

    def _get_json(self, route: str, allow: tuple[int, ...] = (200,)) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            response = self._http.get(route)
            if response.status_code in allow:
                body: dict[str, Any] = response.json()
                return body
            protocol.judge(response)  # raises Retry or ServiceError
            raise protocol.error_from(response)

        return self._with_retries(attempt)

    def _with_retries(self, attempt: Callable[[], T]) -> T:
        result: T = protocol.retrying(self.policy)(attempt)
        return result
