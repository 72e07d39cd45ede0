"""One timed run, and what repeated runs are summarised by.

A `Run` is what any benchmark reports for one repetition: how many items it finished in
how many seconds, how many of them failed, and (for runs against a server) the CPU
seconds each process spent meanwhile. Benchmarks quote the median of their runs' rates;
the spread (min-max) shows how noisy the machine was.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Run", "median", "run_items"]


@dataclass
class Run:
    count: int
    seconds: float
    errors: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds by process role ("client", "server", "workers") during the run."""
    detail: dict[str, float] = field(default_factory=dict)
    """Extra figures of the run (latency percentiles, ...)."""
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def run_items(work: Callable[[Any], object], items: list[Any], max_seconds: float) -> Run:
    """Apply `work` to each item in this thread, stopping early after `max_seconds`."""
    start = time.perf_counter()
    stop_at = start + max_seconds
    done = 0
    for item in items:
        work(item)
        done += 1
        if time.perf_counter() > stop_at:
            break
    return Run(count=done, seconds=time.perf_counter() - start)
