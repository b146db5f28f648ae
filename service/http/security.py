"""Optional API keys for the predict routes and /metrics, compared in constant time; wrong keys
throttled per client address and, optionally, requests per key (service/http/throttle.py)."""

from __future__ import annotations

import hmac

from fastapi import Request
from pydantic import SecretStr

from service.http.errors import ApiError
from service.http.throttle import FailedKeys, KeyRate

API_KEY_HEADER = "X-API-Key"
# Refused from the headers alone: the upload behind them is never read, and the connection is
# closed after the answer instead of swallowing the rest of the body to keep it alive
REFUSED_HEADERS = {"WWW-Authenticate": "Bearer", "Connection": "close"}


async def check_api_key(request: Request) -> None:
    """Accept `X-API-Key: KEY` or `Authorization: Bearer KEY` when keys are configured."""
    keys: list[SecretStr] = request.app.state.api_keys
    if not keys:
        return
    offered = request.headers.get(API_KEY_HEADER)
    if offered is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        offered = token.strip() if scheme.lower() == "bearer" else None
    if not offered:
        raise ApiError("unauthorized", f"an API key is required ({API_KEY_HEADER} header)", REFUSED_HEADERS)
    client = request.client.host if request.client else "unknown"
    failed: FailedKeys = request.app.state.failed_keys
    wait = failed.retry_after(client)
    if wait is not None:
        raise ApiError("too_many_failed_keys", f"too many wrong API keys from this address; retry in {wait} s "
                       "(CXR_AUTH_FAILURES_PER_MINUTE)", {"Retry-After": str(wait), "Connection": "close"})
    # compare against every key, without stopping early, so timing does not reveal which matched
    matched = -1
    for index, key in enumerate(keys):
        if hmac.compare_digest(offered.encode(), key.get_secret_value().encode()):
            matched = index
    if matched < 0:
        failed.failed(client)
        raise ApiError("unauthorized", "the API key is not valid", REFUSED_HEADERS)
    rate: KeyRate = request.app.state.key_rate
    wait = rate.take(matched)
    if wait is not None:
        raise ApiError("rate_limited", f"this API key made more than {rate.per_minute:g} requests a minute "
                       f"(CXR_RATE_LIMIT_PER_KEY); retry in {wait} s", {"Retry-After": str(wait)})
