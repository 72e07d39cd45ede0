"""The load generator: a process of its own that drives a running server over grpc.aio.

`generate(job)` runs `python -m bench._load` with the job as JSON on stdin and returns the
`Run`s it prints. A separate process so that the client's CPU (serializing requests,
parsing answers, its own event loop) is not counted as the server's, and is measured
apart (`bench._cpu`). Each job warms up first (its first `warmup` units, not recorded),
then times `repeats` runs over all its units; each run also stops after `max_seconds`.

Kinds of job:
- "unary": ParseMolecule, `callers` concurrent callers (closed loop: each sends its next
  call when its previous one is answered) spread over `channels` HTTP/2 connections.
- "stream": ParseMolecules, the molecules split over `streams` concurrent streams.
- "encode": EncodeMolecule, Morgan r2 / 2048 bits, `batch` molecules per call,
  `in_flight` calls at once.
- "open_loop": ParseMolecule sent on a fixed clock, `rate` calls per second whether or
  not earlier calls were answered; each latency is measured from the call's scheduled
  send time, so a server (or client) falling behind shows up as latency instead of
  silently lowering the rate (coordinated omission).

Other benchmarks' load generators (`python -m bench.structures`, `python -m bench.spectra`)
use the same pieces: `figure_runs` starts one with a job listing named figures,
`drive_figures` runs each figure's `Plan` (warm-up, then timed closed-loop runs) and
`run_job` is the process's main.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import numpy as np

from bench._corpus import ROOT
from bench._cpu import CpuClock
from bench._measure import Run
from qulab.v1 import molecule_pb2, molecule_pb2_grpc

__all__ = [
    "CALL_TIMEOUT_S",
    "CHANNEL_OPTIONS",
    "Call",
    "Outcome",
    "Plan",
    "batch_call",
    "closed_loop",
    "drive_figures",
    "figure_runs",
    "generate",
    "run_generator",
    "run_job",
    "unary_call",
]

CALL_TIMEOUT_S = 10.0
CHANNEL_OPTIONS = [
    # Separate connections per channel, rather than one shared subchannel.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]
if TYPE_CHECKING:  # the asyncio stub type exists in the type stubs only
    _Stub: TypeAlias = molecule_pb2_grpc.MoleculeServiceAsyncStub


def generate(job: dict[str, Any], timeout_s: float) -> list[Run]:
    """Run one job in a fresh load-generator process (killed after `timeout_s`)."""
    return [Run(**run) for run in run_generator("bench._load", job, timeout_s)]


def run_generator(module: str, job: dict[str, Any], timeout_s: float) -> Any:
    """Run `python -m module` with the job as JSON on stdin; its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-m", module],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def figure_runs(module: str, job: dict[str, Any], timeout_s: float) -> dict[str, list[Run]]:
    """Run the figures of `job` in a fresh `python -m module` (see `drive_figures`): the
    runs of each, by figure name."""
    answer = run_generator(module, job, timeout_s)
    return {name: [Run(**run) for run in runs] for name, runs in answer.items()}


@dataclass
class Outcome:
    count: int = 0
    errors: int = 0
    first_error: str = ""
    detail: dict[str, float] = dataclasses.field(default_factory=dict)

    def add(self, count: int, errors: int = 0, why: str = "") -> None:
        self.count += count
        self.errors += errors
        if errors and not self.first_error:
            self.first_error = why

    def add_error(self, count: int, error: grpc.aio.AioRpcError) -> None:
        self.add(count, count, f"{error.code().name}: {error.details()}")


# -- the kinds of job: units of work, and one pass over them -----------------------------


def _parse_requests(job: dict[str, Any]) -> list[molecule_pb2.ParseMoleculeRequest]:
    return [molecule_pb2.ParseMoleculeRequest(smiles=s) for s in job["smiles"]]


def _encode_requests(job: dict[str, Any]) -> list[molecule_pb2.EncodeMoleculeRequest]:
    smiles, size = job["smiles"], job["batch"]
    fingerprint = molecule_pb2.FingerprintOptions(radius=2, n_bits=2048)
    return [
        molecule_pb2.EncodeMoleculeRequest(
            molecules=[molecule_pb2.MoleculeInput(smiles=s) for s in smiles[i : i + size]],
            encoding=molecule_pb2.MOLECULE_ENCODING_MORGAN,
            fingerprint=fingerprint,
        )
        # Whole batches only (but one, however short, if there are too few molecules).
        for i in range(0, max(len(smiles) - size, 0) + 1, size)
    ]


Call: TypeAlias = Callable[["_Stub", Any, Outcome], Awaitable[None]]


async def closed_loop(
    stubs: Sequence[_Stub], units: Sequence[Any], concurrency: int, call: Call, stop_at: float
) -> Outcome:
    """`concurrency` callers take the units in turn, one call each at a time."""
    outcome = Outcome()
    todo = iter(units)  # shared: every unit is taken by exactly one caller

    async def caller(stub: _Stub) -> None:
        for unit in todo:
            await call(stub, unit, outcome)
            if time.perf_counter() > stop_at:
                return

    await asyncio.gather(*(caller(stubs[i % len(stubs)]) for i in range(concurrency)))
    return outcome


def unary_call(method: str, metadata: Sequence[tuple[str, str]] = ()) -> Call:
    """A call of the unary RPC `method` (the stub's attribute) sending `metadata` (none
    when empty), one unit counted."""
    sent = tuple(metadata) or None

    async def call(stub: Any, request: Any, outcome: Outcome) -> None:
        try:
            await getattr(stub, method)(request, timeout=CALL_TIMEOUT_S, metadata=sent)
        except grpc.aio.AioRpcError as error:
            outcome.add_error(1, error)
        else:
            outcome.add(1)

    return call


def batch_call(method: str, items_field: str) -> Call:
    """A call of the batch RPC `method`: one unit per item of the request's `items_field`,
    and each item's own status (`item_status`) counted as its error or success."""

    async def call(stub: Any, request: Any, outcome: Outcome) -> None:
        count = len(getattr(request, items_field))
        try:
            answer = await getattr(stub, method)(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            outcome.add_error(count, error)
            return
        failed = [status for status in answer.item_status if status.code]
        outcome.add(count, len(failed), failed[0].message if failed else "")

    return call


_parse_call = unary_call("ParseMolecule")
_encode_call = batch_call("EncodeMolecule", "molecules")


async def _unary(
    stubs: Sequence[_Stub], units: Sequence[Any], job: dict[str, Any], stop_at: float
) -> Outcome:
    return await closed_loop(stubs, units, job["callers"], _parse_call, stop_at)


async def _encode(
    stubs: Sequence[_Stub], units: Sequence[Any], job: dict[str, Any], stop_at: float
) -> Outcome:
    return await closed_loop(stubs, units, job["in_flight"], _encode_call, stop_at)


async def _stream(
    stubs: Sequence[_Stub], units: Sequence[Any], job: dict[str, Any], stop_at: float
) -> Outcome:
    outcome = Outcome()
    streams = job["streams"]

    async def one_stream(stub: _Stub, requests: Sequence[Any]) -> None:
        call = stub.ParseMolecules(iter(requests))
        try:
            async for answer in call:
                failed = answer.HasField("error")
                outcome.add(1, failed, answer.error.message if failed else "")
                if time.perf_counter() > stop_at:
                    call.cancel()
                    return
        except grpc.aio.AioRpcError as error:
            outcome.add_error(0, error)

    share = -(-len(units) // streams)
    parts = [units[i * share : (i + 1) * share] for i in range(streams)]
    await asyncio.gather(*(one_stream(stubs[i % len(stubs)], p) for i, p in enumerate(parts)))
    return outcome


async def _open_loop(
    stubs: Sequence[_Stub], units: Sequence[Any], job: dict[str, Any], stop_at: float
) -> Outcome:
    clock = time.perf_counter  # not loop.time(): uvloop's is in whole milliseconds
    interval = 1.0 / job["rate"]
    latencies: list[float] = []
    queued: list[int] = []  # the server's own account (provenance), in ns
    computed: list[int] = []
    outcome = Outcome()

    async def send(stub: _Stub, request: Any, scheduled: float) -> None:
        try:
            answer = await stub.ParseMolecule(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            outcome.add_error(1, error)
        else:
            latencies.append(clock() - scheduled)
            record = answer.provenance
            queued.append(record.queue_duration.ToNanoseconds())
            computed.append(record.compute_duration.ToNanoseconds())
            outcome.add(1)

    start = clock()
    lags: list[float] = []  # how late the client itself sent (its timers tick in ms)
    sent: list[asyncio.Task[None]] = []
    for i, request in enumerate(units):
        scheduled = start + i * interval
        if scheduled > clock():
            await asyncio.sleep(scheduled - clock())
        lags.append(clock() - scheduled)
        sent.append(asyncio.create_task(send(stubs[i % len(stubs)], request, scheduled)))
        if clock() > stop_at:
            break
    await asyncio.gather(*sent)
    if latencies:
        ms = np.asarray(latencies) * 1e3
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        outcome.detail = {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": ms.max()}
        # Where the time went: the server's own account (provenance) of waiting for a
        # worker and computing, and the client's lateness in sending.
        for name, values in (("queue", queued), ("compute", computed), ("send_lag", lags)):
            scale = 1e-6 if name != "send_lag" else 1e3
            p50, p99 = np.percentile(np.asarray(values) * scale, [50, 99])
            outcome.detail |= {f"{name}_p50_ms": p50, f"{name}_p99_ms": p99}
    return outcome


_Pass: TypeAlias = Callable[
    [Sequence["_Stub"], Sequence[Any], dict[str, Any], float], Awaitable[Outcome]
]
_KINDS: dict[str, tuple[Callable[[dict[str, Any]], list[Any]], _Pass]] = {
    "unary": (_parse_requests, _unary),
    "stream": (_parse_requests, _stream),
    "encode": (_encode_requests, _encode),
    "open_loop": (_parse_requests, _open_loop),
}


# -- named figures, for the other benchmarks' load generators ---------------------------


@dataclass(frozen=True)
class Plan:
    """One figure: its units of work (one run takes them all), how many go at once, how
    each is sent and on which stub, and how many of them the warm-up sends."""

    units: Sequence[Any]
    concurrency: int
    call: Call
    stub: Any
    warmup: int


async def timed_runs(
    job: dict[str, Any], clock: CpuClock, one_run: Callable[[float], Awaitable[Outcome]]
) -> list[Run]:
    """`job["repeats"]` timed runs of `one_run(stop_at)`, each bounded by
    `job["max_seconds"]`, with the server's CPU over each."""
    runs = []
    for _ in range(job["repeats"]):
        before = clock.read()
        start = time.perf_counter()
        outcome = await one_run(start + job["max_seconds"])
        runs.append(
            Run(
                outcome.count,
                time.perf_counter() - start,
                outcome.errors,
                clock.since(before),
                outcome.detail,
                outcome.first_error,
            )
        )
    return runs


async def drive_figures(
    job: dict[str, Any], plan: Callable[[grpc.aio.Channel, dict[str, Any]], Plan]
) -> dict[str, list[dict[str, Any]]]:
    """Each of `job["figures"]` (a dict with a "name") on one channel to `job["address"]`:
    a warm-up, then `job["repeats"]` timed runs of its plan, each bounded by
    `job["max_seconds"]`, with the server's CPU (`job["server_pid"]`) measured."""
    channel = grpc.aio.insecure_channel(job["address"], options=CHANNEL_OPTIONS)
    try:
        await asyncio.wait_for(channel.channel_ready(), CALL_TIMEOUT_S)
        clock = CpuClock(job["server_pid"])
        found: dict[str, list[dict[str, Any]]] = {}
        for figure in job["figures"]:
            todo = plan(channel, figure)
            stubs = [todo.stub]
            warmup = todo.units[: max(todo.warmup, 1)]
            stop = time.perf_counter() + job["max_seconds"]
            await closed_loop(stubs, warmup, todo.concurrency, todo.call, stop)
            one_run = functools.partial(closed_loop, stubs, todo.units, todo.concurrency, todo.call)
            runs = await timed_runs(job, clock, one_run)
            found[figure["name"]] = [dataclasses.asdict(run) for run in runs]
        return found
    finally:
        await channel.close()


def run_job(drive: Callable[[dict[str, Any]], Coroutine[Any, Any, Any]]) -> None:
    """A load generator's main: the job as JSON on stdin, `drive`'s answer as JSON on
    stdout, on uvloop when it is installed."""
    job = json.load(sys.stdin)
    found: Any
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a server dependency
        found = asyncio.run(drive(job))
    else:
        found = uvloop.run(drive(job))
    json.dump(found, sys.stdout, default=float)


# -- the process -------------------------------------------------------------------------


async def _main(job: dict[str, Any]) -> list[Run]:
    make_units, one_pass = _KINDS[job["kind"]]
    units = make_units(job)
    channels = [
        grpc.aio.insecure_channel(job["address"], options=CHANNEL_OPTIONS)
        for _ in range(job.get("channels", 1))
    ]
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), CALL_TIMEOUT_S)
        stubs = [molecule_pb2_grpc.MoleculeServiceStub(channel) for channel in channels]
        clock = CpuClock(job["server_pid"])
        await one_pass(stubs, units[: job["warmup"]], job, time.perf_counter() + job["max_seconds"])
        return await timed_runs(job, clock, lambda stop: one_pass(stubs, units, job, stop))
    finally:
        for channel in channels:
            await channel.close()


async def _main_json(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(run) for run in await _main(job)]


def main() -> None:
    run_job(_main_json)


if __name__ == "__main__":
    main()
