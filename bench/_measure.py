"""One timed run, and what repeated runs are summarised by.

A `Run` is what any benchmark reports for one repetition: how many items it finished in
how many seconds, how many of them failed, and (for runs against a server) the CPU
seconds each process spent meanwhile. Benchmarks quote the median of their runs' rates;
the spread (min-max) shows how noisy the machine was.

`time_readers` times several readers on the same files in this process, taking turns pass
by pass (so that a slow spell of the machine hits them all); a `Timed` holds one reader's
per-file times, its rows and its rate ratio to another reader on the files both read.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # bench._report imports this module
    from bench._report import Row

__all__ = [
    "PER_FILE",
    "Run",
    "Timed",
    "first_line",
    "median",
    "rate_ratios",
    "run_items",
    "time_readers",
]

PER_FILE = ": per file"
"""Suffix of the per-file median row of each in-process reader."""


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


def first_line(error: BaseException) -> str:
    text = str(error).strip().split("\n", 1)[0]
    return f"{type(error).__name__}: {text}"[:300]


class Named(Protocol):
    @property
    def name(self) -> str: ...


@dataclass
class Timed:
    """One reader on one corpus: which files it reads, and each pass's time per file."""

    name: str
    reads: list[int] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    passes: list[list[float]] = field(default_factory=list)
    """Seconds per file of `reads`, in that order, one list per timed pass."""

    def per_file(self) -> dict[int, float]:
        """Median seconds of each file it reads, over the passes."""
        return {
            index: statistics.median(p[k] for p in self.passes)
            for k, index in enumerate(self.reads)
        }

    def rate_ratio(self, other: Timed) -> float | None:
        """Its rate over the rate of `other`, on the files both read."""
        mine, theirs = self.per_file(), other.per_file()
        common = mine.keys() & theirs.keys()
        if not common:
            return None
        return sum(theirs[i] for i in common) / sum(mine[i] for i in common)

    def rows(self) -> list[Row]:
        """Its "files/s" row (the files it fails on count once, as errors of the first
        pass) and its per-file row (each file's median time, in µs)."""
        from bench._report import Row

        first = next(iter(self.failed.items()), None)
        why = f"{first[0]}: {first[1]}" if first else ""
        rate = Row(
            self.name,
            "files/s",
            [
                Run(len(self.reads), sum(p), len(self.failed) if k == 0 else 0, first_error=why)
                for k, p in enumerate(self.passes)
            ],
        )
        per_file = Row(
            self.name + PER_FILE,
            "µs",
            [
                Run(len(self.passes), sum(p[k] for p in self.passes), detail={"us": median * 1e6})
                for k, median in enumerate(self.per_file().values())
            ],
            figure="us",
        )
        return [rate, per_file]

    def as_json(self, files: Sequence[Named]) -> dict[str, Any]:
        return {
            "reads": len(self.reads),
            "failed": self.failed,
            "passes": len(self.passes),
            "median_us_per_file": {
                files[i].name: seconds * 1e6 for i, seconds in self.per_file().items()
            },
        }


def time_readers(
    readers: Mapping[str, Callable[[Any], object]],
    files: Sequence[Named],
    passes: int,
    max_seconds: float,
) -> dict[str, Timed]:
    """A warm-up pass (which also finds the files each reader fails on), then up to
    `passes` timed passes (at least one; no new one after `max_seconds`), the readers
    taking turns within each. A reader with a `refill(files)` method has it called, untimed,
    after each of its passes."""
    timed = {name: Timed(name) for name in readers}
    for name, read in readers.items():
        for index, item in enumerate(files):
            try:
                read(item)
            except Exception as error:
                timed[name].failed[item.name] = first_line(error)
            else:
                timed[name].reads.append(index)
        _refill(read, files)
    clock = time.perf_counter
    start = clock()
    for _ in range(passes):
        for name, read in readers.items():
            seconds = []
            for index in timed[name].reads:
                item = files[index]
                began = clock()
                read(item)
                seconds.append(clock() - began)
            timed[name].passes.append(seconds)
            _refill(read, files)
        if clock() - start > max_seconds:
            break
    return timed


def _refill(read: object, files: Sequence[Named]) -> None:
    refill = getattr(read, "refill", None)
    if callable(refill):
        refill(files)


def rate_ratios(
    timed: Mapping[str, Timed],
    name: str,
    baselines: Sequence[str],
    short: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Rate ratios of reader `name` to each baseline (named as `short` says), on the files
    both read."""
    found = {}
    for baseline in baselines:
        if baseline != name and baseline in timed:
            ratio = timed[name].rate_ratio(timed[baseline])
            if ratio is not None:
                found[(short or {}).get(baseline, baseline)] = ratio
    return found
