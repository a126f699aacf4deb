"""Failed API-key attempts, limited per client address: a token bucket each, bounded in number.

A request with an unknown, revoked or malformed key takes one token from its address's bucket; a bucket refills
at `per_minute` tokens a minute up to `burst`. An address whose bucket is empty gets 429 with Retry-After for
every keyed request until a token is back, before its key is even looked at (a guess is never evaluated while
blocked). Requests with a valid key take nothing, so they never push their address towards the limit.
Kept in memory per worker process: with N workers an address gets up to N × burst attempts.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class FailureLimiter:
    def __init__(
        self,
        burst: int = 10,
        per_minute: float = 10.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or per_minute <= 0:
            raise ValueError("burst must be >= 1 and per_minute > 0")
        self.burst = burst
        self.rate_per_s = per_minute / 60.0
        self.max_addresses = max_addresses
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def _refilled(self, address: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(address)
        if bucket is not None:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate_per_s)
            bucket.updated = now
        return bucket

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again; None when it may try now."""
        with self._lock:
            now = self.clock()
            bucket = self._refilled(address, now)
            if bucket is None or bucket.tokens >= 1:
                return None
            return max(1, math.ceil((1 - bucket.tokens) / self.rate_per_s))

    def failed(self, address: str) -> None:
        """Charge one failed attempt to ``address``."""
        with self._lock:
            now = self.clock()
            bucket = self._refilled(address, now)
            if bucket is None:
                bucket = self._buckets[address] = _Bucket(float(self.burst), now)
            bucket.tokens = max(0.0, bucket.tokens - 1)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)  # the address that failed longest ago
