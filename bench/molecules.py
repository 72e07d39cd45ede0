"""Molecule benchmarks: what one core does in-process, and what the served service does on
the same molecules, so that each served rate has an in-process baseline from the same run.

In-process, in this process, one thread:
- "full parse": bare RDKit, MolFromSmiles + canonical MolToSmiles + CalcMolFormula + MolWt
  + ExactMolWt + MolToInchiKey; the pipeline the anchors quote (2.8k mol/s on drug-like
  molecules), the baseline the served rates are held to.
- "parse_molecule": the service's own domain function on the same molecules; it computes
  more than the bare pipeline (SELFIES, InChI, atoms, bonds, stereo), so the gap between
  it and "full parse" is the price of the answer, apart from any serving cost.
- "Morgan": MolFromSmiles + Morgan radius 2 / 2048 bits as a numpy row, the baseline of
  EncodeMolecule.

Served, one `python -m qulab.server` with 2 workers and the result cache off (every call
is computed), driven by a load generator in its own process (`bench._load`):
- ParseMolecule, 64 concurrent callers on one channel: target >= 0.6x full parse.
- ParseMolecules, on one stream and on 4 concurrent streams: target >= 1.5x full parse.
- EncodeMolecule, batches of 256 and 1024, 2 calls in flight: vs in-process Morgan.
- ParseMolecule open loop at 1,000 calls/s for 10 s: latency percentiles from the
  scheduled send times, and the rate achieved; target p99 < 5 ms. Then the same at
  250 calls/s, well below what the server sustains, to tell queueing from service time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rdkit import Chem, rdBase
from rdkit.Chem import Descriptors, rdFingerprintGenerator, rdMolDescriptors

from bench._cpu import CpuClock
from bench._load import generate
from bench._measure import Run, run_items
from bench._report import Row
from bench._server import running_server
from qulab.server.domain.molecules import MoleculeLimits, parse_molecule
from qulab.v1 import molecule_pb2

__all__ = ["LOAD_SETTINGS", "SERVER_SETTINGS", "Config", "run"]

SERVER_SETTINGS = {"QULAB_WORKERS": "2", "QULAB_CACHE_MB": "0"}
UNARY_CALLERS = 64
UNARY_CHANNELS = 1
STREAMS = (1, 4)
ENCODE_BATCHES = (256, 1024)
ENCODE_IN_FLIGHT = 2
OPEN_LOOP_RATES = (1000.0, 250.0)
"""The target rate, then a lighter one that shows the latency without much queueing."""
UNARY_TARGET = 0.6
STREAM_TARGET = 1.5
P99_TARGET_MS = 5.0
_WARMUP_ITEMS = 512
LOAD_SETTINGS = {
    "unary_callers": UNARY_CALLERS,
    "unary_channels": UNARY_CHANNELS,
    "streams": STREAMS,
    "encode_batches": ENCODE_BATCHES,
    "encode_in_flight": ENCODE_IN_FLIGHT,
    "open_loop_rates": OPEN_LOOP_RATES,
    "warmup_items": _WARMUP_ITEMS,
    "event_loop": "uvloop",
}
_LOAD_TIMEOUT_PAD_S = 60.0
_CALL_TAIL_S = 5.0
"""Time the open loop's last calls get to finish beyond its schedule."""
# RDKit's generated stubs leave out the names Descriptors defines at import time.
_DESCRIPTORS: Any = Descriptors

FULL_PARSE = "full parse, in-process"
DOMAIN_PARSE = "parse_molecule, in-process"
MORGAN = "Morgan r2/2048, in-process"


@dataclass(frozen=True)
class Config:
    smiles: list[str]
    repeats: int
    max_seconds: float
    """Bound on one run (a run also ends when every molecule is done)."""
    open_loop_seconds: float


# -- in-process --------------------------------------------------------------------------


def _full_parse(smiles: str) -> None:
    mol = Chem.MolFromSmiles(smiles)
    Chem.MolToSmiles(mol)
    rdMolDescriptors.CalcMolFormula(mol)
    _DESCRIPTORS.MolWt(mol)
    _DESCRIPTORS.ExactMolWt(mol)
    Chem.MolToInchiKey(mol)  # type: ignore[no-untyped-call]


def _domain_parse(limits: MoleculeLimits) -> Callable[[str], object]:
    def parse(smiles: str) -> object:
        return parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles=smiles), limits)

    return parse


def _morgan() -> Callable[[str], object]:
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)

    def encode(smiles: str) -> object:
        return generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(smiles))

    return encode


def _in_process(work: Callable[[str], object], config: Config) -> list[Run]:
    run_items(work, config.smiles[:_WARMUP_ITEMS], config.max_seconds)
    clock = CpuClock()
    runs = []
    for _ in range(config.repeats):
        before = clock.read()
        run = run_items(work, config.smiles, config.max_seconds)
        run.cpu_s = clock.since(before)
        runs.append(run)
    return runs


def _in_process_rows(config: Config) -> list[Row]:
    # RDKit's stderr log (InChI warnings) is muted for the bare pipelines only; the domain
    # function captures the log itself, as it does in a worker.
    with rdBase.BlockLogs():
        full = Row(FULL_PARSE, "mol/s", _in_process(_full_parse, config))
        morgan = Row(MORGAN, "mol/s", _in_process(_morgan(), config))
    domain = Row(DOMAIN_PARSE, "mol/s", _in_process(_domain_parse(MoleculeLimits()), config))
    return [full, domain, morgan]


# -- served ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Baselines:
    full: Row
    domain: Row
    morgan: Row


def _parse_rates(rows: list[Row], factor: float, baselines: _Baselines) -> None:
    """Ratios to both in-process parses; the target is `factor` x the bare pipeline."""
    for row in rows:
        row.ratios = {
            "full parse": row.value / baselines.full.value,
            "parse_molecule": row.value / baselines.domain.value,
        }
        row.target = f">= {factor}x full parse"
        row.met = row.value >= factor * baselines.full.value


def _open_loop_rows(runs: list[Run], rate: float) -> list[Row]:
    """The rate achieved, the latency percentiles, and the server's own account of the
    99th percentiles of waiting for a worker and of computing (from provenance)."""
    name = f"ParseMolecule open loop {rate:,.0f}/s"
    rows = [Row(f"{name}: achieved", "calls/s", runs)]
    rows += [
        Row(f"{name}: {figure}", "ms", runs, figure=f"{figure}_ms")
        for figure in ("p50", "p95", "p99", "max")
    ]
    rows += [
        Row(f"{name}: server queue p99", "ms", runs, figure="queue_p99_ms"),
        Row(f"{name}: worker compute p99", "ms", runs, figure="compute_p99_ms"),
    ]
    if rate == OPEN_LOOP_RATES[0]:
        achieved, p99 = rows[0], rows[3]
        achieved.target, achieved.met = f"{rate:,.0f}", achieved.value >= 0.98 * rate
        p99.target, p99.met = f"< {P99_TARGET_MS:g} ms", p99.value < P99_TARGET_MS
    return rows


def _served_rows(config: Config, baselines: _Baselines) -> list[Row]:
    """One server for every served figure; each figure from a load generator of its own."""
    unary: list[Row] = []
    streams: list[Row] = []
    encode: list[Row] = []
    open_loops: list[Row] = []
    with running_server(SERVER_SETTINGS) as server:
        base = {
            "address": server.address,
            "server_pid": server.pid,
            "smiles": config.smiles,
            "repeats": config.repeats,
            "max_seconds": config.max_seconds,
            "warmup": _WARMUP_ITEMS,
        }
        timeout = config.repeats * config.max_seconds + _LOAD_TIMEOUT_PAD_S

        def load(name: str, **job: Any) -> Row:
            return Row(name, "mol/s", generate({**base, **job}, timeout))

        unary.append(
            load(
                f"ParseMolecule unary, {UNARY_CALLERS} callers",
                kind="unary",
                callers=UNARY_CALLERS,
                channels=UNARY_CHANNELS,
            )
        )
        for count in STREAMS:
            plural = "s" if count > 1 else ""
            streams.append(
                load(f"ParseMolecules, {count} stream{plural}", kind="stream", streams=count)
            )
        for batch in ENCODE_BATCHES:
            encode.append(
                load(
                    f"EncodeMolecule Morgan, batch {batch}",
                    kind="encode",
                    batch=batch,
                    in_flight=ENCODE_IN_FLIGHT,
                    warmup=ENCODE_IN_FLIGHT,
                )
            )
        for rate in OPEN_LOOP_RATES:
            calls = int(rate * config.open_loop_seconds)
            bound = config.open_loop_seconds + _CALL_TAIL_S
            job = {
                **base,
                "kind": "open_loop",
                "smiles": [config.smiles[i % len(config.smiles)] for i in range(calls)],
                "rate": rate,
                "warmup": int(rate),  # one second
                "max_seconds": bound,
            }
            runs = generate(job, config.repeats * bound + _LOAD_TIMEOUT_PAD_S)
            open_loops.extend(_open_loop_rows(runs, rate))
    _parse_rates(unary, UNARY_TARGET, baselines)
    _parse_rates(streams, STREAM_TARGET, baselines)
    for row in encode:
        row.ratios = {"Morgan": row.value / baselines.morgan.value}
    return [*unary, *streams, *encode, *open_loops]


def run(config: Config) -> list[Row]:
    """Every molecule benchmark, in-process first (nothing else running), then served."""
    full, domain, morgan = _in_process_rows(config)
    domain.ratios = {"full parse": domain.value / full.value}
    return [full, domain, morgan, *_served_rows(config, _Baselines(full, domain, morgan))]
