"""A circuit breaker: after repeated UNAVAILABLE answers, fail fast instead of queueing
more calls at a server that is down, and let calls through again only once its health
check says SERVING.

    closed --(`failures` UNAVAILABLE in a row)--> open
    open --(`reset_after_s` passed; next call probes health)--> SERVING: closed
                                                                otherwise: open again

The retry policy of the service config runs first, inside the channel: the breaker counts
calls that stayed UNAVAILABLE after their retries, so one lost connection does not trip
it. Only UNAVAILABLE counts; any other answer, even an error, shows the server is up.
This class holds the state only (thread-safe); the clients run the probe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import Enum

__all__ = ["CircuitBreaker", "State", "Verdict"]


class State(Enum):
    CLOSED = "closed"
    OPEN = "open"
    PROBING = "probing"  # half-open: one health probe in flight, other calls fail fast


class Verdict(Enum):
    CALL = "call"
    PROBE_FIRST = "probe first"  # this caller probes health, then calls if SERVING
    FAIL_FAST = "fail fast"


class CircuitBreaker:
    """`failures` consecutive UNAVAILABLE calls open the circuit for `reset_after_s`."""

    def __init__(
        self,
        failures: int = 5,
        reset_after_s: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or reset_after_s <= 0:
            raise ValueError("a circuit breaker needs failures >= 1 and reset_after_s > 0")
        self.failures = failures
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._in_a_row = 0
        self._opened_at = 0.0

    @property
    def state(self) -> State:
        return self._state

    def admit(self) -> tuple[Verdict, float]:
        """Before a call: what to do, and for FAIL_FAST the seconds until the next probe.
        After PROBE_FIRST the caller must report the probe's outcome with `probed`."""
        with self._lock:
            if self._state is State.CLOSED:
                return Verdict.CALL, 0.0
            if self._state is State.PROBING:
                return Verdict.FAIL_FAST, self.reset_after_s
            wait = self._opened_at + self.reset_after_s - self._clock()
            if wait > 0:
                return Verdict.FAIL_FAST, wait
            self._state = State.PROBING
            return Verdict.PROBE_FIRST, 0.0

    def probed(self, serving: bool) -> None:
        """The health probe's outcome: SERVING closes the circuit, anything else reopens
        it for another `reset_after_s`."""
        with self._lock:
            if serving:
                self._state, self._in_a_row = State.CLOSED, 0
            else:
                self._state, self._opened_at = State.OPEN, self._clock()

    def record(self, unavailable: bool) -> None:
        """After a call (that was admitted): whether it ended UNAVAILABLE."""
        with self._lock:
            if not unavailable:
                self._in_a_row = 0
                return
            self._in_a_row += 1
            if self._state is State.CLOSED and self._in_a_row >= self.failures:
                self._state, self._opened_at = State.OPEN, self._clock()
