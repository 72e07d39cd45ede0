"""Deadlines: every piece of work has one, and none outlives the cap.

- A call that arrives with its deadline already passed is refused (DEADLINE_EXCEEDED)
  before any work.
- A unary call's deadline is the client's, or `QULAB_DEFAULT_TIMEOUT_S` when it sets none,
  and never more than `QULAB_MAX_TIMEOUT_S` after arrival.
- A stream may live as long as its client's deadline allows (a pipeline may stream for
  hours); each of its items gets its own deadline, the default one, within the stream's.

The pool drops work whose deadline passed while it was queued, sends each item's remaining
time to the worker (which skips an item that expired before its turn), and replaces a
worker that overruns (see `workers.pool`).
"""

from __future__ import annotations

import asyncio

from qulab.server.call import Call, Context
from qulab.server.config import Settings
from qulab.server.errors import DeadlineExceeded

__all__ = ["Deadlines"]


class Deadlines:
    """The deadline interceptor, and the deadline of each piece of work."""

    def __init__(self, settings: Settings) -> None:
        self._default = min(settings.default_timeout_s, settings.max_timeout_s)
        self._cap = settings.max_timeout_s

    def admit(self, call: Call, context: Context) -> None:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded(
                "the call's deadline had passed when it arrived", reason="DEADLINE_PASSED"
            )
        now = asyncio.get_running_loop().time()
        if call.streaming:
            call.deadline = None if remaining is None else now + remaining
        else:
            call.deadline = now + min(self._default if remaining is None else remaining, self._cap)

    def for_work(self, call: Call) -> float:
        """The deadline (loop.time() seconds) of work started now for `call`."""
        if call.deadline is not None and not call.streaming:
            return call.deadline
        item = asyncio.get_running_loop().time() + self._default
        return item if call.deadline is None else min(item, call.deadline)
