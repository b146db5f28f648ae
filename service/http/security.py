"""Optional API keys for the predict routes, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import Request
from pydantic import SecretStr

from service.http.errors import ApiError

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
    # compare against every key, without stopping early, so timing does not reveal which matched
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(offered.encode(), key.get_secret_value().encode())
    if not matched:
        raise ApiError("unauthorized", "the API key is not valid", REFUSED_HEADERS)
