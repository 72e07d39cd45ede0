"""Servers side by side, taking turns: how `bench.security` and `bench.observability` compare
server configurations ("variants") with a baseline in the same run, on the same molecules.

Each variant is a `python -m qulab.server` with its own settings on top of shared ones, all
started at once (the idle ones cost nothing) and driven by one load generator in its own
process: ParseMolecule over the molecule corpus, UNARY_CALLERS concurrent callers on one
channel per server, closed loop (`bench._load.closed_loop`), the same figure as the
molecule benchmark's unary row. Each server is warmed up, then they take turns, one timed
run each per round, the order rotated every round (a, b, c; b, c, a; ...), so that a slow
spell of the machine, or being first after a switch, hits every variant alike.

A row is the median over rounds (min-max beside it). `compare` gives a row's ratio of
medians to the baseline row and the per-round ratios (each run against the baseline's run
of the same round), whose median is steadier when the machine drifts between rounds.

The load generator is `python -m bench._rounds`, or a benchmark's own module when it checks
something on the servers first (`drive_rounds(job, before)`); either answers with each
variant's runs and the calls each server was sent (warm-up included).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc

from bench._cpu import CpuClock
from bench._load import (
    CALL_TIMEOUT_S,
    CHANNEL_OPTIONS,
    Call,
    closed_loop,
    run_generator,
    run_job,
    timed_runs,
    unary_call,
)
from bench._measure import Run
from bench._report import Row
from bench._server import ServerProcess, running_server
from bench.molecules import UNARY_CALLERS
from qulab.v1 import molecule_pb2, molecule_pb2_grpc

__all__ = [
    "LOAD_SETTINGS",
    "MIN_ROUNDS",
    "PARSE",
    "WARMUP_CALLS",
    "Before",
    "Config",
    "Result",
    "Target",
    "Variant",
    "compare",
    "drive_rounds",
    "paired_ratios",
    "rows_of",
    "serving",
    "take_turns",
]

MIN_ROUNDS = 7
"""Rounds of a real run (more with --repeats); a quick run does 2."""
WARMUP_CALLS = 512
_LOAD_TIMEOUT_PAD_S = 60.0
PARSE = f"ParseMolecule unary, {UNARY_CALLERS} callers"
"""The start of each row's name."""
LOAD_SETTINGS = {
    "unary_callers": UNARY_CALLERS,
    "unary_channels": 1,
    "warmup_calls": WARMUP_CALLS,
    "order": "rotated each round",
    "event_loop": "uvloop",
}


@dataclass(frozen=True)
class Config:
    smiles: list[str]
    rounds: int
    """Timed runs per row, the servers taking turns."""
    max_seconds: float
    """Bound on one run (a run also ends when every molecule is done)."""


@dataclass(frozen=True)
class Variant:
    name: str
    settings: dict[str, str]
    """Environment (QULAB_*, OTEL_*) on top of the shared settings."""
    metadata: tuple[tuple[str, str], ...] = ()
    """What every call sends."""


@dataclass
class Result:
    rows: list[Row]
    payload: dict[str, Any]
    """The servers' settings, the per-round ratios, the checks that each variant really
    was what its row says, the goal."""
    goal: dict[str, dict[str, Any]]


# -- this process: the servers, the load generator, the rows ----------------------------


@contextlib.contextmanager
def serving(
    shared: Mapping[str, str], variants: Sequence[Variant]
) -> Iterator[list[ServerProcess]]:
    """One started server per variant, in order; all stopped on leaving the block."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running_server({**shared, **v.settings})) for v in variants]


def take_turns(
    module: str, variants: Sequence[Variant], servers: Sequence[ServerProcess], config: Config
) -> dict[str, Any]:
    """Drive `servers` (one per variant) in rotated rounds from `python -m module`: its
    answer, with "runs" (by variant, one run per round, as dicts) and "calls"."""
    job = {
        "servers": [
            {
                "name": v.name,
                "address": s.address,
                "server_pid": s.pid,
                "metadata": v.metadata,
            }
            for v, s in zip(variants, servers, strict=True)
        ],
        "smiles": config.smiles,
        "rounds": config.rounds,
        "max_seconds": config.max_seconds,
        "warmup": WARMUP_CALLS,
    }
    bound = (config.rounds + 1) * len(variants) * config.max_seconds
    answer: dict[str, Any] = run_generator(module, job, bound + _LOAD_TIMEOUT_PAD_S)
    return answer


def rows_of(answer: dict[str, Any], variants: Sequence[Variant]) -> dict[str, Row]:
    """Each variant's row (calls/s), by name, in the variants' order."""
    return {
        v.name: Row(v.name, "calls/s", [Run(**run) for run in answer["runs"][v.name]])
        for v in variants
    }


def paired_ratios(on: Sequence[Run], off: Sequence[Run]) -> list[float]:
    """Each round's rate over the baseline's rate in the same round."""
    return [a.rate / b.rate for a, b in zip(on, off, strict=True) if b.rate > 0]


def compare(row: Row, off: Row) -> dict[str, Any]:
    """`row` against the baseline `off`: the ratio of medians (also set as the row's "off"
    ratio), the per-round ratios and their median, and the failed calls of both."""
    ratio = row.value / off.value if off.value > 0 else 0.0
    paired = paired_ratios(row.runs, off.runs)
    row.ratios = {"off": ratio}
    return {
        "x_off": ratio,
        "x_off_per_round": paired,
        "x_off_per_round_median": statistics.median(paired) if paired else None,
        "errors": sum(run.errors for run in [*row.runs, *off.runs]),
    }


# -- the load generator (a job as JSON on stdin) ----------------------------------------


@dataclass
class Target:
    """One server as the load generator sees it."""

    name: str
    stub: Any
    call: Call
    clock: CpuClock
    metadata: tuple[tuple[str, str], ...]


Before: TypeAlias = Callable[[Sequence[Target], Any], Awaitable[dict[str, Any]]]
"""A check on the servers before the warm-up, given one request; its answer is merged into
the load generator's."""


async def drive_rounds(job: dict[str, Any], before: Before | None = None) -> dict[str, Any]:
    """Warm each server up, then `job["rounds"]` rounds of one timed run each, the order
    rotated every round."""
    requests = [molecule_pb2.ParseMoleculeRequest(smiles=s) for s in job["smiles"]]
    channels = [
        grpc.aio.insecure_channel(server["address"], options=CHANNEL_OPTIONS)
        for server in job["servers"]
    ]
    try:
        targets = []
        for server, channel in zip(job["servers"], channels, strict=True):
            await asyncio.wait_for(channel.channel_ready(), CALL_TIMEOUT_S)
            metadata = tuple((k, v) for k, v in server["metadata"])
            targets.append(
                Target(
                    server["name"],
                    molecule_pb2_grpc.MoleculeServiceStub(channel),
                    unary_call("ParseMolecule", metadata),
                    CpuClock(server["server_pid"]),
                    metadata,
                )
            )
        checked = await before(targets, requests[0]) if before is not None else {}
        calls = {t.name: 0 for t in targets}
        warmup = requests[: max(job["warmup"], 1)]
        for target in targets:
            stop = time.perf_counter() + job["max_seconds"]
            warm = await closed_loop([target.stub], warmup, UNARY_CALLERS, target.call, stop)
            calls[target.name] += warm.count
        one = {"repeats": 1, "max_seconds": job["max_seconds"]}
        found: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
        for round_ in range(job["rounds"]):
            shift = round_ % len(targets)
            for target in targets[shift:] + targets[:shift]:
                one_run = functools.partial(
                    closed_loop, [target.stub], requests, UNARY_CALLERS, target.call
                )
                runs = await timed_runs(one, target.clock, one_run)
                calls[target.name] += sum(r.count for r in runs)
                found[target.name] += [dataclasses.asdict(r) for r in runs]
        return {"runs": found, "calls": calls, **checked}
    finally:
        for channel in channels:
            await channel.close()


if __name__ == "__main__":
    run_job(drive_rounds)
