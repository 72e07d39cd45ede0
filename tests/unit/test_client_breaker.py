"""The circuit breaker's state machine, on a clock the test moves."""

from __future__ import annotations

import pytest

from qulab.client.breaker import CircuitBreaker, State, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(failures=3, reset_after_s=2.0, clock=clock)


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.admit()[0] is Verdict.CALL
        breaker.record(unavailable=True)


def test_opens_after_the_threshold_of_unavailable_in_a_row(breaker: CircuitBreaker) -> None:
    _fail(breaker, 2)
    assert breaker.state is State.CLOSED
    _fail(breaker, 1)
    assert breaker.state is State.OPEN
    verdict, wait = breaker.admit()
    assert verdict is Verdict.FAIL_FAST
    assert wait == pytest.approx(2.0)


def test_any_other_outcome_resets_the_count(breaker: CircuitBreaker) -> None:
    _fail(breaker, 2)
    breaker.record(unavailable=False)  # an answer, even an error one: the server is up
    _fail(breaker, 2)
    assert breaker.state is State.CLOSED


def test_after_the_pause_one_caller_probes_and_the_others_fail_fast(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    _fail(breaker, 3)
    clock.now += 1.5
    verdict, wait = breaker.admit()
    assert (verdict, wait) == (Verdict.FAIL_FAST, pytest.approx(0.5))
    clock.now += 0.5
    assert breaker.admit() == (Verdict.PROBE_FIRST, 0.0)
    assert breaker.state is State.PROBING
    assert breaker.admit()[0] is Verdict.FAIL_FAST  # only one probe at a time


def test_a_serving_probe_closes_the_circuit(breaker: CircuitBreaker, clock: Clock) -> None:
    _fail(breaker, 3)
    clock.now += 2.0
    assert breaker.admit()[0] is Verdict.PROBE_FIRST
    breaker.probed(serving=True)
    assert breaker.state is State.CLOSED
    _fail(breaker, 2)  # the count started again from zero
    assert breaker.state is State.CLOSED


def test_a_failed_probe_reopens_for_another_pause(breaker: CircuitBreaker, clock: Clock) -> None:
    _fail(breaker, 3)
    clock.now += 2.0
    assert breaker.admit()[0] is Verdict.PROBE_FIRST
    breaker.probed(serving=False)
    assert breaker.state is State.OPEN
    clock.now += 1.9
    assert breaker.admit()[0] is Verdict.FAIL_FAST
    clock.now += 0.1
    assert breaker.admit()[0] is Verdict.PROBE_FIRST


@pytest.mark.parametrize(("failures", "reset_after_s"), [(0, 1.0), (3, 0.0), (3, -1.0)])
def test_nonsense_settings_are_refused(failures: int, reset_after_s: float) -> None:
    with pytest.raises(ValueError, match="circuit breaker"):
        CircuitBreaker(failures=failures, reset_after_s=reset_after_s)
