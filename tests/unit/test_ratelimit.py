"""Token buckets with an explicit clock (exact arithmetic), and the rate limiter that
refuses unary calls with RESOURCE_EXHAUSTED and a retry delay, and paces streams."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import pytest

from qulab.server.call import Call
from qulab.server.errors import ResourceExhausted
from qulab.server.interceptors.ratelimit import RateLimiter, TokenBucket
from qulab.server.interceptors.roles import Grant

METHOD = "/qulab.v1.MoleculeService/ParseMolecule"


def _grant(rate: float, burst: int) -> Grant:
    return Grant(frozenset({"user"}), ["*"], rate, burst)


def _call(principal: str = "alice", grant: Grant | None = None, streaming: bool = False) -> Call:
    return Call(METHOD, "req-1", time.time_ns(), streaming, principal=principal, grant=grant)


# -- TokenBucket -------------------------------------------------------------------------


def test_burst_then_refusal() -> None:
    bucket = TokenBucket(3, now=100.0)
    assert [bucket.take(1.0, 3, 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(1.0, 3, 100.0) == 1.0
    assert bucket.take(1.0, 3, 100.0) == 1.0  # a refusal takes nothing


def test_refill_over_time() -> None:
    bucket = TokenBucket(2, now=0.0)
    bucket.take(4.0, 2, 0.0)
    bucket.take(4.0, 2, 0.0)
    assert bucket.take(4.0, 2, 0.0) == 0.25
    assert bucket.take(4.0, 2, 0.25) == 0.0  # one token after 1/rate seconds
    assert bucket.take(4.0, 2, 0.25) == 0.25
    # Idle for long: never more than the burst.
    assert [bucket.take(4.0, 2, 1000.0) for _ in range(3)] == [0.0, 0.0, 0.25]


def test_retry_wait_is_exact() -> None:
    bucket = TokenBucket(1, now=10.0)
    assert bucket.take(2.0, 1, 10.0) == 0.0
    assert bucket.take(2.0, 1, 10.0) == 0.5
    assert bucket.take(2.0, 1, 10.125) == 0.375  # 0.25 of a token there
    assert bucket.take(2.0, 1, 10.25) == 0.25
    assert bucket.take(2.0, 1, 10.5) == 0.0
    slow = TokenBucket(1, now=0.0)
    slow.take(0.5, 1, 0.0)
    assert slow.take(0.5, 1, 0.5) == 1.5


def test_take_follows_a_changed_grant() -> None:
    bucket = TokenBucket(10, now=0.0)
    assert bucket.take(1.0, 2, 0.0) == 0.0  # the burst shrank to 2: one left
    assert bucket.tokens == 1.0
    assert bucket.take(1.0, 2, 0.0) == 0.0
    assert bucket.take(1.0, 2, 0.0) == 1.0
    assert bucket.take(8.0, 2, 0.0) == 0.125


def test_reserve_goes_into_debt_with_growing_waits() -> None:
    bucket = TokenBucket(2, now=0.0)
    waits = [bucket.reserve(4.0, 2, 0.0) for _ in range(5)]
    assert waits == [0.0, 0.0, 0.25, 0.5, 0.75]
    assert bucket.tokens == -3.0
    # Debt is paid at the rate: half a second later two of the three are paid.
    assert bucket.reserve(4.0, 2, 0.5) == 0.5
    # A take while in debt waits for the debt and its own token.
    assert bucket.take(4.0, 2, 0.5) == 0.75
    assert not bucket.full(0.5)


def test_full() -> None:
    bucket = TokenBucket(2, now=0.0)
    assert bucket.full(0.0)  # a new bucket is full
    bucket.take(1.0, 2, 0.0)
    assert not bucket.full(0.0)
    assert not bucket.full(0.5)
    assert bucket.full(1.0)
    bucket.reserve(1.0, 2, 1.0)
    bucket.reserve(1.0, 2, 1.0)
    bucket.reserve(1.0, 2, 1.0)
    assert not bucket.full(3.5)
    assert bucket.full(4.0)


# -- RateLimiter -------------------------------------------------------------------------


async def test_limiter_refuses_after_the_burst() -> None:
    grant = _grant(0.001, 2)  # one call per 1000 s after the burst
    limiter = RateLimiter(_grant(0.0, 1))
    limiter.admit(_call(grant=grant))
    limiter.admit(_call(grant=grant))
    with pytest.raises(ResourceExhausted) as raised:
        limiter.admit(_call(grant=grant))
    error = raised.value
    assert error.reason == "RATE_LIMITED"
    assert 999_000 < error.retry_after_ms <= 1_000_000
    assert f"retry in {error.retry_after_ms} ms" in error.message
    assert "0.001 calls/s" in error.message
    status = error.to_status()
    assert status.code == 8  # RESOURCE_EXHAUSTED
    assert len(status.details) == 2  # ErrorInfo and RetryInfo


async def test_limiter_retry_after_rounds_up() -> None:
    grant = _grant(3.0, 1)
    limiter = RateLimiter(_grant(0.0, 1))
    limiter.admit(_call(grant=grant))
    with pytest.raises(ResourceExhausted) as raised:
        limiter.admit(_call(grant=grant))
    # Never 0 ms, never less than the true wait of (just under) 1/3 s.
    assert 1 <= raised.value.retry_after_ms <= math.ceil(1000 / 3)
    assert raised.value.retry_after_ms > 300


async def test_each_principal_has_its_own_bucket() -> None:
    grant = _grant(0.001, 1)
    limiter = RateLimiter(_grant(0.0, 1))
    limiter.admit(_call("alice", grant))
    limiter.admit(_call("bob", grant))
    with pytest.raises(ResourceExhausted):
        limiter.admit(_call("alice", grant))
    with pytest.raises(ResourceExhausted):
        limiter.admit(_call("bob", grant))


async def test_unlimited_grant_never_refuses() -> None:
    limited = _grant(0.001, 1)
    limiter = RateLimiter(_grant(0.0, 1))
    for _ in range(10_000):
        limiter.admit(_call(grant=_grant(0.0, 1)))
    # The default grant, for calls auth did not name, is unlimited here too.
    for _ in range(1_000):
        limiter.admit(_call())
    # ...and neither touched the principal's bucket: a limited grant still has its burst.
    limiter.admit(_call(grant=limited))
    with pytest.raises(ResourceExhausted):
        limiter.admit(_call(grant=limited))


async def test_calls_without_a_grant_use_the_default() -> None:
    limiter = RateLimiter(_grant(0.001, 1))
    limiter.admit(_call())
    with pytest.raises(ResourceExhausted):
        limiter.admit(_call())


async def _items(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def test_paced_stream_loses_nothing_and_waits() -> None:
    limiter = RateLimiter(_grant(0.0, 1))
    grant = _grant(20.0, 1)
    call = _call(grant=grant, streaming=True)
    loop = asyncio.get_running_loop()
    start = loop.time()
    received = [item async for item in limiter.paced(call, _items(3))]
    elapsed = loop.time() - start
    assert received == [0, 1, 2]
    assert elapsed >= 0.09  # the burst is one: two items waited 50 ms each for a token
    # The stream's messages came from the principal's bucket: a unary call now waits.
    with pytest.raises(ResourceExhausted):
        limiter.admit(_call(grant=grant))


async def test_unlimited_stream_is_not_paced() -> None:
    limiter = RateLimiter(_grant(0.0, 1))
    call = _call(grant=_grant(0.0, 1), streaming=True)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert [item async for item in limiter.paced(call, _items(1000))] == list(range(1000))
    assert loop.time() - start < 1.0
