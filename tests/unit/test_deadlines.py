"""Deadlines: an expired call is refused on arrival; a unary call gets the client's deadline
or the default, capped; a stream keeps its client's deadline (or none) and each of its
items gets the default within it.

The context is a stand-in with `time_remaining()` only: the real server paths are covered
by the integration tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest

from qulab.server.call import Call, Context
from qulab.server.config import Settings
from qulab.server.errors import DeadlineExceeded
from qulab.server.interceptors.deadline import Deadlines

DEFAULT_S, CAP_S = 2.0, 10.0


class _Context:
    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining


def _context(remaining: float | None) -> Context:
    return cast(Context, _Context(remaining))


def _call(streaming: bool) -> Call:
    return Call("/qulab.v1.MoleculeService/ParseMolecule", "r", time.time_ns(), streaming)


@pytest.fixture
def deadlines() -> Deadlines:
    return Deadlines(Settings(default_timeout_s=DEFAULT_S, max_timeout_s=CAP_S))


def _admitted(deadlines: Deadlines, streaming: bool, remaining: float | None) -> Any:
    """The call, and the loop times just before and after it was admitted."""
    loop = asyncio.get_running_loop()
    call = _call(streaming)
    before = loop.time()
    deadlines.admit(call, _context(remaining))
    return call, before, loop.time()


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("remaining", [0.0, -0.001, -60.0])
async def test_expired_on_arrival_is_refused(
    deadlines: Deadlines, streaming: bool, remaining: float
) -> None:
    call = _call(streaming)
    with pytest.raises(DeadlineExceeded) as raised:
        deadlines.admit(call, _context(remaining))
    assert raised.value.reason == "DEADLINE_PASSED"
    assert raised.value.to_status().code == 4  # DEADLINE_EXCEEDED
    assert call.deadline is None


async def test_unary_without_a_deadline_gets_the_default(deadlines: Deadlines) -> None:
    call, before, after = _admitted(deadlines, False, None)
    assert call.deadline is not None
    assert before + DEFAULT_S <= call.deadline <= after + DEFAULT_S


async def test_unary_keeps_the_clients_deadline(deadlines: Deadlines) -> None:
    call, before, after = _admitted(deadlines, False, 5.0)
    assert call.deadline is not None
    assert before + 5.0 <= call.deadline <= after + 5.0
    short, before, after = _admitted(deadlines, False, 0.05)
    assert short.deadline is not None
    assert before + 0.05 <= short.deadline <= after + 0.05


async def test_unary_deadline_is_capped(deadlines: Deadlines) -> None:
    call, before, after = _admitted(deadlines, False, 3600.0)
    assert call.deadline is not None
    assert before + CAP_S <= call.deadline <= after + CAP_S


async def test_default_longer_than_the_cap_is_capped() -> None:
    deadlines = Deadlines(Settings(default_timeout_s=60.0, max_timeout_s=10.0))
    call, before, after = _admitted(deadlines, False, None)
    assert call.deadline is not None
    assert before + 10.0 <= call.deadline <= after + 10.0
    stream, before, after = _admitted(deadlines, True, None)
    item = deadlines.for_work(stream)
    assert before + 10.0 <= item <= asyncio.get_running_loop().time() + 10.0


async def test_unary_work_has_the_calls_deadline(deadlines: Deadlines) -> None:
    call, _, _ = _admitted(deadlines, False, 5.0)
    assert deadlines.for_work(call) == call.deadline
    await asyncio.sleep(0.01)
    assert deadlines.for_work(call) == call.deadline  # it does not move


async def test_unary_work_without_admission_gets_the_default(deadlines: Deadlines) -> None:
    loop = asyncio.get_running_loop()
    before = loop.time()
    item = deadlines.for_work(_call(False))
    assert before + DEFAULT_S <= item <= loop.time() + DEFAULT_S


async def test_stream_without_a_deadline_has_none(deadlines: Deadlines) -> None:
    stream, _, _ = _admitted(deadlines, True, None)
    assert stream.deadline is None
    loop = asyncio.get_running_loop()
    before = loop.time()
    item = deadlines.for_work(stream)
    assert before + DEFAULT_S <= item <= loop.time() + DEFAULT_S
    assert stream.deadline is None


async def test_stream_keeps_a_long_client_deadline(deadlines: Deadlines) -> None:
    """A stream may outlive the cap; each item gets the default within the stream."""
    stream, before, after = _admitted(deadlines, True, 3600.0)
    assert stream.deadline is not None
    assert before + 3600.0 <= stream.deadline <= after + 3600.0
    loop = asyncio.get_running_loop()
    first = deadlines.for_work(stream)
    assert first <= loop.time() + DEFAULT_S
    assert first < stream.deadline
    await asyncio.sleep(0.02)
    later = deadlines.for_work(stream)
    assert later > first  # each item gets its own deadline, from when it starts


async def test_stream_items_never_outlive_the_stream(deadlines: Deadlines) -> None:
    stream, _, _ = _admitted(deadlines, True, 0.5)
    assert stream.deadline is not None
    assert deadlines.for_work(stream) == stream.deadline
