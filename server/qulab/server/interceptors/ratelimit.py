"""Per-principal token buckets.

Each principal has one bucket, refilled at its grant's rate up to its burst (the most
generous of its roles; see `roles`). A unary call takes one token; a stream takes one per
message it sends. An empty bucket refuses a unary call with RESOURCE_EXHAUSTED, a
`google.rpc.RetryInfo` and a `grpc-retry-pushback-ms` trailer saying when a token will be
there. A stream is paced instead: its next message is read once a token is there, so HTTP/2
flow control slows the client down and no item already sent is lost.

The check allocates nothing per call but the principal's bucket the first time it is seen.
A full bucket is the same as a new one, so buckets are dropped once full when the table
grows large (many short-lived token subjects).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import TypeVar

from qulab.server.call import Call
from qulab.server.errors import ResourceExhausted
from qulab.server.interceptors.roles import Grant

__all__ = ["RateLimiter", "TokenBucket"]

_PRUNE_ABOVE = 10_000
T = TypeVar("T")


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, burst: int, now: float) -> None:
        self.tokens = float(burst)
        self.stamp = now
        self.rate = 0.0
        self.burst = burst

    def take(self, rate: float, burst: int, now: float) -> float:
        """Take a token: 0.0 when there was one, else the seconds until there is. The
        rate and burst are the caller's grant now (a reload may change them)."""
        self.rate, self.burst = rate, burst
        tokens = min(float(burst), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / rate

    def reserve(self, rate: float, burst: int, now: float) -> float:
        """Take a token even if it is not there yet (the bucket goes into debt): the
        seconds until it is paid for. Debtors are served in the order they reserved."""
        self.rate, self.burst = rate, burst
        self.tokens = min(float(burst), self.tokens + (now - self.stamp) * rate) - 1.0
        self.stamp = now
        return max(0.0, -self.tokens / rate)

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class RateLimiter:
    """The ratelimit interceptor. `default` is the grant of callers auth did not name
    (no authentication configured)."""

    def __init__(self, default: Grant) -> None:
        self._default = default
        self._buckets: dict[str, TokenBucket] = {}

    def admit(self, call: Call) -> None:
        grant = call.grant or self._default
        if grant.rate_per_s > 0:
            wait = self._take(call.principal, grant)
            if wait > 0:
                retry_ms = math.ceil(wait * 1000)
                raise ResourceExhausted(
                    f"rate limit of {grant.rate_per_s:g} calls/s for this caller; "
                    f"retry in {retry_ms} ms",
                    retry_after_ms=retry_ms,
                    reason="RATE_LIMITED",
                )

    async def paced(self, call: Call, messages: AsyncIterator[T]) -> AsyncIterator[T]:
        """A stream's messages, each released once its token is there."""
        grant = call.grant or self._default
        async for message in messages:
            if grant.rate_per_s > 0:
                now = asyncio.get_running_loop().time()
                wait = self._bucket(call.principal, grant, now).reserve(
                    grant.rate_per_s, grant.burst, now
                )
                if wait > 0:
                    await asyncio.sleep(wait)
            yield message

    def _take(self, principal: str, grant: Grant) -> float:
        now = asyncio.get_running_loop().time()
        return self._bucket(principal, grant, now).take(grant.rate_per_s, grant.burst, now)

    def _bucket(self, principal: str, grant: Grant, now: float) -> TokenBucket:
        bucket = self._buckets.get(principal)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[principal] = TokenBucket(grant.burst, now)
        return bucket

    def _prune(self, now: float) -> None:
        self._buckets = {n: b for n, b in self._buckets.items() if not b.full(now)}
