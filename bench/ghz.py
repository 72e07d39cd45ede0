"""ghz benchmark: ParseMolecule driven by ghz (github.com/bojand/ghz), a load generator
written in Go, so that the served figures have a second opinion from a client that is
neither ours nor Python.

One `python -m qulab.server` with the settings of the molecule benchmark (2 workers, the
result cache off, so every call is computed). ghz is built from the pins in
`tests/interop/tools/go.mod` (`bench._gotools`, shared with the interop tests) and runs as
a process of its own on the same machine, closed loop: `--concurrency` workers, each
sending its next call when its previous one is answered, over one HTTP/2 connection (as
the molecule benchmark's unary row). Each run lasts `seconds` (`--duration`; ghz 0.121
cannot bound a run by both a count and a time: its `--max-duration` drops `--total`), and
sends the corpus's molecules in turn (ghz takes the calls' data round-robin from a JSON
array), starting again from the first if it gets through them all; with the cache off a
repeated molecule is computed again. Calls still in flight at the end are left out
(`--duration-stop=ignore`), so a cut-off is not counted as an error. ghz reads the
schema through the server's reflection service.

Rows, for each concurrency in CONCURRENCIES: the rate (calls answered per second of the
run, ghz's "rps") and the latency percentiles p50, p90 and p99 (ms, ghz's own, over the
calls of the run); each the median over `repeats` runs (min-max beside it), after one
warm-up run. `err` counts calls that were not OK; the JSON keeps, per run, ghz's status
code and error distributions. The CPU column's "client" is ghz's CPU time (it is a child
of this process, counted once it exits).
"""

from __future__ import annotations

import json
import resource
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import _gotools
from bench._cpu import CpuClock
from bench._measure import Run
from bench._report import Row
from bench._server import ServerProcess, running_server
from bench.molecules import SERVER_SETTINGS
from qulab.v1 import molecule_pb2

__all__ = [
    "CONCURRENCIES",
    "GHZ_MODULE",
    "LOAD_SETTINGS",
    "PARSE_MOLECULE",
    "SERVER_SETTINGS",
    "Config",
    "Result",
    "row_name",
    "run",
]

PARSE_MOLECULE = (
    molecule_pb2.DESCRIPTOR.services_by_name["MoleculeService"].full_name + "/ParseMolecule"
)
CONCURRENCIES = (1, 8, 64)
CONNECTIONS = 1
CALL_TIMEOUT_S = 20.0
_WARMUP_CALLS = 512
_RUN_TIMEOUT_PAD_S = 60.0
"""Time a ghz run gets beyond its own bound (start-up, the report) before it is killed."""
PERCENTILES = (50, 90, 99)
GHZ_MODULE = "github.com/bojand/ghz"
LOAD_SETTINGS = {
    "tool": "ghz",
    "concurrencies": CONCURRENCIES,
    "connections": CONNECTIONS,
    "call_timeout_s": CALL_TIMEOUT_S,
    "warmup_calls": _WARMUP_CALLS,
    "duration_stop": "ignore",
    "schema": "server reflection",
}


@dataclass(frozen=True)
class Config:
    smiles: list[str]
    repeats: int
    seconds: float
    """Length of one run."""


@dataclass
class Result:
    rows: list[Row]
    payload: dict[str, Any]
    """ghz's version and every run's summary as ghz reported it."""


def row_name(concurrency: int) -> str:
    return f"ghz ParseMolecule, {concurrency} concurrent"


@dataclass(frozen=True)
class _Ghz:
    """ghz against one server, with the molecules in a folder of its own."""

    executable: Path
    server: ServerProcess
    folder: Path

    def data(self, smiles: Sequence[str], name: str) -> Path:
        path = self.folder / name
        path.write_text(json.dumps([{"smiles": s} for s in smiles]))
        return path

    def run(
        self, data: Path, concurrency: int, bound: str, seconds: float
    ) -> tuple[dict[str, Any], float]:
        """One closed-loop run, bounded by `bound` (ghz's `--total=N` or `--duration=Ns`)
        which takes at most `seconds`: ghz's JSON report and the CPU seconds ghz used."""
        argv = [
            str(self.executable),
            "--insecure",
            f"--call={PARSE_MOLECULE}",
            f"--data-file={data}",
            "--disable-template-data",  # the molecules are literal: no per-call templating
            bound,
            f"--concurrency={concurrency}",
            f"--connections={CONNECTIONS}",
            f"--timeout={CALL_TIMEOUT_S:g}s",
            "--duration-stop=ignore",
            "--format=json",
            self.server.address,
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=seconds + _RUN_TIMEOUT_PAD_S,
            check=False,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"ghz exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        report: dict[str, Any] = json.loads(done.stdout)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return report, cpu


def _as_run(report: dict[str, Any], cpu_s: dict[str, float]) -> Run:
    """One ghz report as a Run: answered calls over the run's time, errors, percentiles."""
    codes: dict[str, int] = report.get("statusCodeDistribution") or {}
    errors: dict[str, int] = report.get("errorDistribution") or {}
    count = int(report["count"])
    latency = {p["percentage"]: p["latency"] / 1e6 for p in report.get("latencyDistribution") or []}
    detail = {f"p{p}_ms": latency[p] for p in PERCENTILES if p in latency}
    detail["average_ms"] = report["average"] / 1e6
    detail["ghz_rps"] = report["rps"]
    return Run(
        count=count,
        seconds=report["total"] / 1e9,
        errors=count - codes.get("OK", 0),
        cpu_s=cpu_s,
        detail=detail,
        first_error=max(errors, key=errors.__getitem__, default="")[:300],
    )


def _summary(report: dict[str, Any], concurrency: int) -> dict[str, Any]:
    """What the JSON keeps of a report: all but the per-call details and the histogram."""
    kept = {k: v for k, v in report.items() if k not in ("details", "histogram", "options")}
    return {"concurrency": concurrency, **kept}


def _rows(concurrency: int, runs: list[Run]) -> list[Row]:
    name = row_name(concurrency)
    rows = [Row(name, "calls/s", runs)]
    rows += [Row(f"{name}: p{p}", "ms", runs, figure=f"p{p}_ms") for p in PERCENTILES]
    return rows


def run(config: Config) -> Result:
    """Build ghz (unless built), start a server, a warm-up run, then the timed runs.
    Raises `bench._gotools.Unavailable` when ghz cannot be built here."""
    executable = _gotools.ensure_built() / "ghz"
    rows: list[Row] = []
    summaries: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="qulab-ghz-") as folder,
        running_server(SERVER_SETTINGS) as server,
    ):
        ghz = _Ghz(executable, server, Path(folder))
        warmup = ghz.data(config.smiles[:_WARMUP_CALLS], "warmup.json")
        report, _ = ghz.run(warmup, max(CONCURRENCIES), f"--total={_WARMUP_CALLS}", CALL_TIMEOUT_S)
        if report["statusCodeDistribution"] != {"OK": report["count"]}:
            raise RuntimeError(f"ghz warm-up calls failed: {report['errorDistribution']}")
        data = ghz.data(config.smiles, "molecules.json")
        clock = CpuClock(server.pid)
        for concurrency in CONCURRENCIES:
            runs = []
            for _ in range(config.repeats):
                before = clock.read()
                bound = f"--duration={config.seconds:g}s"
                report, ghz_cpu = ghz.run(data, concurrency, bound, config.seconds)
                spent = clock.since(before)
                # ghz's CPU is in "other" (it is not this process); move it to "client".
                spent["client"] += ghz_cpu
                spent["other"] = max(0.0, spent["other"] - ghz_cpu)
                runs.append(_as_run(report, spent))
                summaries.append(_summary(report, concurrency))
            rows.extend(_rows(concurrency, runs))
    payload = {
        "ghz": {"module": GHZ_MODULE, "version": _gotools.pinned_version(GHZ_MODULE)},
        "runs": summaries,
    }
    return Result(rows, payload)
