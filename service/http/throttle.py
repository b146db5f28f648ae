"""Throttles for the API key check: wrong keys per client address, and requests per key.

- Wrong keys (CXR_AUTH_FAILURES_PER_MINUTE, default 20): a client address that sent that many
  wrong keys within a minute is answered 429 too_many_failed_keys, with the Retry-After of its
  oldest failure leaving the window, before its key is even compared. 500 wrong keys at 565/s
  were all answered 401 before: a guessing rate with no bound. Behind a proxy every client has
  the proxy's address (unless uvicorn is told to trust its X-Forwarded-For), so the limit is
  per proxy there: set it with that in mind, or 0 to switch it off.
- Requests per key (CXR_RATE_LIMIT_PER_KEY per minute, default 0 = off): a token bucket per key,
  so that one integration gone wrong cannot take a worker for itself; past it 429 rate_limited.

Both are per worker process (each keeps its own counts; with N workers a client gets up to N
times the limit), kept by the event loop's thread, and bounded in memory (MAX_TRACKED entries,
the oldest forgotten first).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

WINDOW_S = 60.0
MAX_TRACKED = 10_000  # client addresses or keys remembered


class FailedKeys:
    """Wrong keys per client address in the last minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float] | None = None):
        self.per_minute = per_minute
        self.clock = clock or time.monotonic
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try a key again; None when it may now."""
        if self.per_minute <= 0:
            return None
        failures = self._recent(client)
        if failures is None or len(failures) < self.per_minute:
            return None
        return max(1, int(failures[0] + WINDOW_S - self.clock()) + 1)

    def failed(self, client: str) -> None:
        if self.per_minute <= 0:
            return
        failures = self._recent(client)
        if failures is None:
            failures = self._failures[client] = deque(maxlen=self.per_minute)
            if len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)
        failures.append(self.clock())
        self._failures.move_to_end(client)

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is not None:
            while failures and failures[0] <= self.clock() - WINDOW_S:
                failures.popleft()
        return failures


class KeyRate:
    """A token bucket per key: `per_minute` requests a minute, in bursts of up to `per_minute`."""

    def __init__(self, per_minute: float, clock: Callable[[], float] | None = None):
        self.per_minute = per_minute
        self.clock = clock or time.monotonic
        self._buckets: OrderedDict[int, tuple[float, float]] = OrderedDict()  # key index -> (tokens, at)

    def take(self, key: int) -> int | None:
        """None when key `key` may make a request now (one token taken), else seconds to wait."""
        if self.per_minute <= 0:
            return None
        now, rate = self.clock(), self.per_minute / WINDOW_S
        tokens, at = self._buckets.get(key, (self.per_minute, now))
        tokens = min(self.per_minute, tokens + (now - at) * rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return max(1, int((1 - tokens) / rate) + 1)
        self._buckets[key] = (tokens - 1, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
        return None
