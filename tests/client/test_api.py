"""The Python API: typed results, concurrency, retries against real servers."""

from __future__ import annotations

import asyncio
import time

import pytest

from cxr_client import AsyncClient, Client, Prediction, ServiceError, ServiceUnavailable
from cxr_client.retry import RetryPolicy
from tests.servers import free_port

FAST = RetryPolicy(attempts=4, base_delay_s=0.05, max_delay_s=5)


def test_predict_returns_a_typed_result(service_url, val_images):
    with Client(service_url) as client:
        result = client.predict(val_images[-1])
        from_bytes = client.predict(val_images[-1].read_bytes())
    assert isinstance(result, Prediction) and result.label in ("normal", "pneumonia")
    assert result.p_pneumonia + result.p_normal == pytest.approx(1.0)
    assert result.p_pneumonia == from_bytes.p_pneumonia and result.request_id != from_bytes.request_id


def test_predict_many_ties_each_result_to_its_path(service_url, val_images, tmp_path):
    bad = tmp_path / "bad.jpeg"
    bad.write_bytes(b"\xff\xd8\xff broken")
    paths = val_images[:5] + [bad, tmp_path / "missing.jpeg"]
    with Client(service_url) as client:
        results = {r.path: r for r in client.predict_many(paths, concurrency=3)}
        singles = {p: client.predict(p).p_pneumonia for p in val_images[:5]}
    assert set(results) == set(paths)
    for path in val_images[:5]:
        assert results[path].prediction.p_pneumonia == pytest.approx(singles[path])
    assert "undecodable_image" in results[bad].error and results[bad].prediction is None
    assert "missing.jpeg" in results[tmp_path / "missing.jpeg"].error


def test_async_twin(service_url, val_images):
    async def run():
        async with AsyncClient(service_url) as client:
            one = await client.predict(val_images[0])
            many = [r async for r in client.predict_many(val_images[:6], concurrency=3)]
        return one, many

    one, many = asyncio.run(run())
    assert one.label in ("normal", "pneumonia")
    assert sorted(r.path for r in many) == sorted(val_images[:6]) and all(r.ok for r in many)


@pytest.mark.parametrize("status", [503, 429])
def test_retries_honour_retry_after(front_factory, val_images, status):
    with front_factory(fail_first=2, status=status, retry_after="1") as (url, front):
        started = time.monotonic()
        with Client(url, retries=FAST) as client:
            result = client.predict(val_images[0])
        elapsed = time.monotonic() - started
    assert result.label in ("normal", "pneumonia")
    assert front.attempts == 3
    assert elapsed >= 2.0  # waited the server's Retry-After twice, not the 0.05 s backoff


def test_async_retries_too(front_factory, val_images):
    with front_factory(fail_first=2, retry_after=None) as (url, front):
        async def run():
            async with AsyncClient(url, retries=FAST) as client:
                return await client.predict(val_images[0])

        assert asyncio.run(run()).label in ("normal", "pneumonia")
        assert front.attempts == 3


def test_bounded_attempts_then_gives_up(front_factory, val_images):
    with front_factory(fail_first=100, retry_after="0") as (url, front):
        with Client(url, retries=FAST) as client, pytest.raises(ServiceUnavailable, match="4 attempts"):
            client.predict(val_images[0])
        assert front.attempts == 4


def test_other_4xx_is_never_retried(front_factory):
    with front_factory() as (url, front):
        with Client(url, retries=FAST) as client, pytest.raises(ServiceError) as error:
            client.predict(b"plain text, not an image")
    assert error.value.status == 415 and error.value.code == "unsupported_media_type"
    assert front.attempts == 1


def test_server_down_raises_after_bounded_attempts(val_images):
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, retries=FAST) as client, pytest.raises(ServiceUnavailable, match="ConnectError"):
        client.predict(val_images[0])


def test_importable_with_httpx_alone():
    import subprocess
    import sys

    code = ("import sys, cxr_client, cxr_client.cli; "
            "heavy = {'fastapi', 'onnxruntime', 'tensorflow', 'numpy', 'PIL', 'pydicom'} & set(sys.modules); "
            "sys.exit(f'imported {heavy}' if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout
