"""Throttles on the API key check: wrong keys per client address (429 with Retry-After, even
for the right key while it lasts), requests per key, and the client address in the access log."""

from __future__ import annotations

import logging

from service.http.throttle import FailedKeys, KeyRate
from tests.service.conftest import assert_error, make_client

KEYS = "key-one-1234567890,key-two-1234567890"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_wrong_keys_are_throttled_per_address(bundled_model):
    with make_client(bundled_model, api_keys=KEYS, auth_failures_per_minute=5) as client:
        wrong = {"X-API-Key": "guess-0000"}
        for _ in range(5):
            assert_error(client.get("/metrics", headers=wrong), 401, "unauthorized")
        throttled = assert_error(client.get("/metrics", headers=wrong), 429, "too_many_failed_keys")
        assert "CXR_AUTH_FAILURES_PER_MINUTE" in throttled["error"]["message"]
        response = client.get("/metrics", headers={"X-API-Key": "key-one-1234567890"})
        assert_error(response, 429, "too_many_failed_keys")  # no more guesses, right or wrong
        assert 1 <= int(response.headers["retry-after"]) <= 61
        assert client.get("/health/ready").status_code == 200  # what needs no key is unaffected


def test_the_window_passes_and_addresses_are_apart():
    clock = Clock()
    failed = FailedKeys(3, clock)
    for _ in range(3):
        assert failed.retry_after("10.0.0.1") is None
        failed.failed("10.0.0.1")
    assert failed.retry_after("10.0.0.1") == 61 and failed.retry_after("10.0.0.2") is None
    clock.now += 30
    assert failed.retry_after("10.0.0.1") == 31
    clock.now += 31
    assert failed.retry_after("10.0.0.1") is None
    assert FailedKeys(0, clock).retry_after("10.0.0.1") is None  # 0: off


def test_requests_per_key_are_limited_when_asked(bundled_model):
    with make_client(bundled_model, api_keys=KEYS, rate_limit_per_key=3) as client:
        first = {"X-API-Key": "key-one-1234567890"}
        for _ in range(3):
            assert client.get("/metrics", headers=first).status_code == 200
        limited = client.get("/metrics", headers=first)
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        assert client.get("/metrics", headers={"X-API-Key": "key-two-1234567890"}).status_code == 200


def test_the_bucket_refills():
    clock = Clock()
    rate = KeyRate(60, clock)  # one a second, bursts of 60
    assert all(rate.take(0) is None for _ in range(60))
    assert rate.take(0) == 2
    clock.now += 1.0
    assert rate.take(0) is None and rate.take(0) is not None
    assert KeyRate(0, clock).take(0) is None


def test_the_access_log_names_the_client_address(bundled_model, caplog):
    with make_client(bundled_model) as client, caplog.at_level(logging.INFO, logger="service.access"):
        client.get("/health/live")
    (record,) = [r for r in caplog.records if r.name == "service.access"]
    assert record.client == "testclient"
