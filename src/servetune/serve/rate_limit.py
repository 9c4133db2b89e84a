"""A per-client token bucket (labels per minute), bounded in the clients it remembers."""

from __future__ import annotations

import time
from collections import OrderedDict

MAX_CLIENTS = 10_000  # beyond this the least recently seen client is forgotten (a fresh bucket)


class RateLimiter:
    def __init__(self, per_minute: int, burst: int | None = None, clock=time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, per_minute // 4))
        self.clock = clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client: (tokens, at)

    def allow(self, client: str) -> bool:
        """Take one token for `client`; False when it has none left. A rate of 0 allows everything."""
        if self.rate <= 0:
            return True
        now = self.clock()
        tokens, at = self.buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1
        self.buckets[client] = (tokens - 1 if allowed else tokens, now)
        if len(self.buckets) > MAX_CLIENTS:
            self.buckets.popitem(last=False)
        return allowed
