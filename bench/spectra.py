"""Spectrum benchmarks: QuLab's JCAMP-DX reader against the `jcamp` package on the same files
in the same process, QuLab's unit conversion against pint, then the served SpectrumService
and UnitService.

The files: every file of the JCAMP-DX corpus (tests/data/jcamp when present, else
/work/shared/corpora/jcamp) that QuLab's `parse_spectrum` reads within the served instance's
limits (QULAB_MAX_SPECTRUM_POINTS and the rest, at their defaults, which every in-process
figure uses too); the ones it refuses are counted and listed in the JSON, not timed. A
file's "points" are the y values QuLab decodes from it: every page of every block, and the
rows of its peak tables.

In-process, in this process, one thread, the readers taking turns pass by pass on the same
files as in `bench.structures` (`bench._measure.time_readers`): a warm-up pass finds the
files a reader fails on (counted as its errors, never timed), then `--passes` timed passes.
"files/s" is the median over passes of (files / summed time of the pass), "points/s" the
same with points, "per file" the median over files of each file's median time. Ratios are
rate ratios on the files both readers read.
- QuLab `read_jcamp` (the reader alone) and `parse_spectrum` (the reader and the whole
  ParseSpectrumResponse, as the service answers).
- The `jcamp` package (`jcamp.read`), its warnings and prints muted. It counts as failing
  on a file when it raises, and also when it returns no y values from a file QuLab decodes
  values from (it returns NTUPLES files empty, quickly); its points/s row counts the y
  values it returns itself (a compound file's children included), which may be fewer than
  QuLab's. Goal: QuLab (reader and full answer) >= 10x jcamp.
- Units: QuLab `units.convert` against pint itself (`Quantity(v, a).to(b, context)` on a
  registry of its own) for nm -> 1/cm (spectroscopy context) and degC -> K, on a scalar
  (calls/s) and on a 100,000-value array (values/s); each timed item is a run of calls.

Served, one `python -m qulab.server` with 2 workers and the result cache off (every call is
computed), driven by a load generator in its own process (`python -m bench.spectra`, the
closed loop of `bench._load`):
- ParseSpectrum, 16 concurrent callers on one channel, the files over and over: files/s,
  and points/s (the points of the files answered); ratio to the in-process
  `parse_spectrum` rate.
- EncodeSpectrum: the corpus's 1D spectra (files whose first block with data holds one
  page), one batch per x unit as the files write it, on a 1024-point grid spanning the
  batch's x range in those units, max-normalised; the batches in turn, 2 calls in flight:
  spectra/s.
- ConvertUnits, 64 concurrent callers: 100 wavelengths nm -> 1/cm (spectroscopy): calls/s.
"""

from __future__ import annotations

import base64
import contextlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from bench._corpus import ROOT
from bench._load import (
    Call,
    Outcome,
    Plan,
    batch_call,
    drive_figures,
    figure_runs,
    run_job,
    unary_call,
)
from bench._measure import PER_FILE, Run, Timed, first_line, rate_ratios, time_readers
from bench._report import Row
from bench._server import running_server
from qulab.server.config import Settings
from qulab.server.domain._jcamp import JcampLimits, read_jcamp
from qulab.server.domain.spectra import parse_spectrum
from qulab.server.domain.units import convert
from qulab.server.errors import QulabError
from qulab.v1 import spectrum_pb2, spectrum_pb2_grpc, units_pb2, units_pb2_grpc

__all__ = [
    "JCAMP",
    "LOAD_SETTINGS",
    "PARSE",
    "PER_FILE",
    "POINTS",
    "QULAB",
    "READ",
    "SERVER_SETTINGS",
    "Config",
    "Corpus",
    "SpectrumFile",
    "load_corpus",
    "run",
]

SERVER_SETTINGS = {"QULAB_WORKERS": "2", "QULAB_CACHE_MB": "0"}
PARSE_CALLERS = 16
CONVERT_CALLERS = 64
ENCODE_IN_FLIGHT = 2
ENCODE_GRID_POINTS = 1024
CONVERT_VALUES = 100
JCAMP_TARGET = 10.0
"""The goal: QuLab reads JCAMP-DX files at least this many times as fast as `jcamp`."""
_SERVED_WARMUP_CALLS = 64
LOAD_SETTINGS = {
    "parse_callers": PARSE_CALLERS,
    "convert_callers": CONVERT_CALLERS,
    "encode_in_flight": ENCODE_IN_FLIGHT,
    "encode_grid_points": ENCODE_GRID_POINTS,
    "convert_values": CONVERT_VALUES,
    "channels": 1,
    "warmup_calls": _SERVED_WARMUP_CALLS,
    "event_loop": "uvloop",
}
_LOAD_TIMEOUT_PAD_S = 60.0
_CANDIDATES = (ROOT / "tests" / "data" / "jcamp", ROOT.parent / "shared" / "corpora" / "jcamp")
_NOT_SPECTRA = {".md", ".json", ".txt"}
_QUICK_MIN_POINTS = 1000
"""A quick run's subset: the smallest files with at least this many points."""
_ARRAY_VALUES = 100_000

# Row names, for the report and the smoke test.
READ = "JCAMP read_jcamp (QuLab reader)"
PARSE = "JCAMP parse_spectrum (full answer)"
JCAMP = "JCAMP jcamp package"
POINTS = ": points"
"""Suffix of the points/s row of each in-process reader."""
QULAB = (READ, PARSE)
_SHORT = {JCAMP: "jcamp"}
UNIT_QULAB = "QuLab convert"
UNIT_PINT = "pint"
PARSE_SERVED = f"ParseSpectrum unary, {PARSE_CALLERS} callers"
CONVERT_SERVED = f"ConvertUnits unary, {CONVERT_CALLERS} callers"


@dataclass(frozen=True)
class Config:
    passes: int
    """Timed passes over every file, in-process (after one warm-up pass)."""
    in_process_seconds: float
    """Bound on the timed passes of the files (all readers), and of the unit figures."""
    repeats: int
    """Timed runs per served figure."""
    max_seconds: float
    """Bound on one served run."""
    calls: int
    """ParseSpectrum calls per served run (the files over and over)."""
    encode_calls: int
    """EncodeSpectrum calls per served run."""
    convert_calls: int
    """ConvertUnits calls per served run."""
    scalar_calls: int
    """In-process unit conversions of a scalar per timed item."""
    array_calls: int
    """In-process unit conversions of the 100,000-value array per timed item."""
    subset: int | None = None
    """Only the `subset` smallest files with 1,000 points or more (a smoke run)."""


@dataclass(frozen=True)
class SpectrumFile:
    name: str
    """Path relative to the corpus root."""
    content: bytes
    points: int
    """The y values QuLab decodes from it (pages and peak tables)."""
    x_unit: str = ""
    """For a 1D spectrum: the x unit of its first block with data, as written."""
    x_range: tuple[float, float] | None = None
    """For a 1D spectrum (its first block with data has one page): its finite x range."""


@dataclass
class Corpus:
    root: Path | None
    files: list[SpectrumFile] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    """Files QuLab refuses, with its reason."""
    left_out: int = 0
    """Readable files not used (a smoke run's subset)."""


# -- the files ---------------------------------------------------------------------------


def corpus_root() -> Path | None:
    """The first of the known places holding JCAMP-DX files (None: no corpus)."""
    return next((p for p in _CANDIDATES if p.is_dir() and any(_files(p))), None)


def _files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in _NOT_SPECTRA
    )


def limits() -> JcampLimits:
    """The JCAMP-DX limits of the served instance (`SERVER_SETTINGS`, the rest defaults)."""
    settings = Settings.from_env(SERVER_SETTINGS)
    return JcampLimits(
        max_bytes=settings.max_spectrum_bytes,
        max_points=settings.max_spectrum_points,
        max_blocks=settings.max_spectrum_blocks,
    )


def _admit(path: Path, root: Path, limits: JcampLimits) -> SpectrumFile | str:
    """The file with its points (and, for a 1D spectrum, its x axis), or why QuLab refuses
    it."""
    content = path.read_bytes()
    name = str(path.relative_to(root))
    try:
        parse_spectrum(spectrum_pb2.ParseSpectrumRequest(content=content), limits)
        blocks = read_jcamp(content, limits=limits)
    except QulabError as error:
        return first_line(error)
    points = sum(
        sum(page.y.size for page in block.pages)
        + (len(block.peaks.values) if block.peaks is not None else 0)
        for block in blocks
    )
    with_data = [block for block in blocks if block.pages]
    if with_data and len(with_data[0].pages) == 1:
        page = with_data[0].pages[0]
        x = page.x[np.isfinite(page.x)]
        if x.size >= 2 and x.min() < x.max():
            span = (float(x.min()), float(x.max()))
            return SpectrumFile(name, content, points, page.x_unit.strip().upper(), span)
    return SpectrumFile(name, content, points)


def load_corpus(subset: int | None = None) -> Corpus:
    """Every file of the corpus QuLab reads (or only the `subset` smallest of those with
    1,000 points or more)."""
    root = corpus_root()
    corpus = Corpus(root)
    if root is None:
        return corpus
    for path in _files(root):
        admitted = _admit(path, root, limits())
        if isinstance(admitted, str):
            corpus.refused[str(path.relative_to(root))] = admitted
        else:
            corpus.files.append(admitted)
    if subset is not None:
        fit = [f for f in corpus.files if f.points >= _QUICK_MIN_POINTS]
        kept = {f.name for f in sorted(fit, key=lambda f: len(f.content))[:subset]}
        corpus.left_out = len(corpus.files) - len(kept)
        corpus.files = [f for f in corpus.files if f.name in kept]
    return corpus


# -- the readers -------------------------------------------------------------------------


class _Sink(io.StringIO):
    """Where `jcamp`'s prints go."""

    def write(self, text: str) -> int:
        return len(text)


def _jcamp_points(found: dict[str, Any]) -> int:
    """The y values `jcamp.read` returned, its compound children's included."""
    own = len(found.get("y", ()))
    return own + sum(_jcamp_points(child) for child in found.get("children", ()))


class _JcampReader:
    """`jcamp.read` on a file, muted; a file QuLab decodes values from and `jcamp` returns
    none of counts as its failure. Keeps the points it returned per file."""

    def __init__(self) -> None:
        import jcamp  # type: ignore[import-untyped]

        self._read = jcamp.read
        self._sink = _Sink()
        self.points: dict[str, int] = {}

    def __call__(self, item: SpectrumFile) -> object:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(self._sink),
            contextlib.redirect_stderr(self._sink),
        ):
            warnings.simplefilter("ignore")
            found = self._read(io.BytesIO(item.content))
        points = _jcamp_points(found)
        if item.points and not points:
            raise ValueError(f"returned no y values (QuLab decodes {item.points})")
        self.points[item.name] = points
        return found


def _readers(limits: JcampLimits) -> dict[str, Callable[[SpectrumFile], object]]:
    return {
        READ: lambda item: read_jcamp(item.content, limits=limits),
        PARSE: lambda item: parse_spectrum(
            spectrum_pb2.ParseSpectrumRequest(content=item.content), limits
        ),
        JCAMP: _JcampReader(),
    }


# -- in-process --------------------------------------------------------------------------


@dataclass
class _InProcess:
    rows: list[Row]
    timed: dict[str, Timed]
    payload: dict[str, Any]
    goal: dict[str, dict[str, Any]]


def _points_row(one: Timed, points: list[int]) -> Row:
    """Points/s of a reader: `points` per file of `one.reads`, in that order."""
    total = sum(points)
    return Row(one.name + POINTS, "points/s", [Run(total, sum(p)) for p in one.passes])


def _in_process(corpus: Corpus, config: Config) -> _InProcess:
    readers = _readers(limits())
    timed = time_readers(readers, corpus.files, config.passes, config.in_process_seconds)
    jcamp_reader = readers[JCAMP]
    assert isinstance(jcamp_reader, _JcampReader)
    rows: list[Row] = []
    goal: dict[str, dict[str, Any]] = {}
    for name, one in timed.items():
        rate, per_file = one.rows()
        rate.ratios = rate_ratios(timed, name, (JCAMP,), _SHORT)
        if name == JCAMP:
            points = [jcamp_reader.points[corpus.files[i].name] for i in one.reads]
        else:
            points = [corpus.files[i].points for i in one.reads]
        points_row = _points_row(one, points)
        if name in QULAB:
            ratio = one.rate_ratio(timed[JCAMP])
            met = ratio is not None and ratio >= JCAMP_TARGET
            goal[name] = {"x_jcamp": ratio, "met": met}
            rate.target, rate.met = f">= {JCAMP_TARGET:g}x jcamp", met
        rows += [rate, points_row, per_file]
    payload = {name: one.as_json(corpus.files) for name, one in timed.items()}
    payload[JCAMP]["points_returned"] = jcamp_reader.points
    return _InProcess(rows, timed, payload, goal)


@dataclass(frozen=True)
class _UnitCase:
    name: str
    values: float | npt.NDArray[np.float64]
    source: str
    target: str
    context: str
    calls: int

    @property
    def size(self) -> int:
        return int(np.size(self.values))


def _unit_cases(config: Config) -> list[_UnitCase]:
    nm = np.linspace(200.0, 2000.0, _ARRAY_VALUES)
    celsius = np.linspace(-50.0, 500.0, _ARRAY_VALUES)
    spectroscopy = ("nm -> 1/cm (spectroscopy)", "nm", "1/cm", "spectroscopy")
    offset = ("degC -> K", "degC", "K", "")
    return [
        _UnitCase(f"{spectroscopy[0]}, scalar", 532.0, *spectroscopy[1:], config.scalar_calls),
        _UnitCase(f"{spectroscopy[0]}, 100k array", nm, *spectroscopy[1:], config.array_calls),
        _UnitCase(f"{offset[0]}, scalar", 25.0, *offset[1:], config.scalar_calls),
        _UnitCase(f"{offset[0]}, 100k array", celsius, *offset[1:], config.array_calls),
    ]


def _unit_readers() -> dict[str, Callable[[_UnitCase], object]]:
    import pint

    registry: Any = pint.UnitRegistry()

    def qulab(case: _UnitCase) -> object:
        for _ in range(case.calls):
            found = convert(case.values, case.source, case.target, case.context)
        return found

    def with_pint(case: _UnitCase) -> object:
        contexts = (case.context,) if case.context else ()
        for _ in range(case.calls):
            found = registry.Quantity(case.values, case.source).to(case.target, *contexts)
        return found

    return {UNIT_QULAB: qulab, UNIT_PINT: with_pint}


def _units(config: Config) -> tuple[list[Row], dict[str, Any]]:
    """One row per case and converter; QuLab's with its ratio to pint on the same case."""
    cases = _unit_cases(config)
    timed = time_readers(_unit_readers(), cases, config.passes, config.in_process_seconds)
    rows: list[Row] = []
    medians = {name: one.per_file() for name, one in timed.items()}
    for k, case in enumerate(cases):
        unit = "calls/s" if case.size == 1 else "values/s"
        for name, one in timed.items():
            label = f"units {case.name}: {name}"
            if k not in one.reads:  # it failed on the case: one error, no rate
                why = one.failed.get(case.name, "")
                rows.append(Row(label, unit, [Run(0, 0.0, 1, first_error=why)]))
                continue
            at = one.reads.index(k)
            row = Row(label, unit, [Run(case.calls * case.size, p[at]) for p in one.passes])
            if name == UNIT_QULAB and k in medians[UNIT_PINT]:
                row.ratios = {"pint": medians[UNIT_PINT][k] / medians[UNIT_QULAB][k]}
            rows.append(row)
    payload = {
        name: {"failed": one.failed, "passes": len(one.passes)} for name, one in timed.items()
    }
    return rows, payload


# -- served ------------------------------------------------------------------------------


def _encode_batches(corpus: Corpus) -> list[dict[str, Any]]:
    """The 1D spectra grouped by x unit: their file indexes and the grid spanning them."""
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(corpus.files):
        if item.x_range is not None:
            groups.setdefault(item.x_unit, []).append(index)
    batches = []
    for unit, indexes in sorted(groups.items()):
        spans = [corpus.files[i].x_range for i in indexes]
        start = min(span[0] for span in spans if span is not None)
        stop = max(span[1] for span in spans if span is not None)
        batches.append({"x_unit": unit, "files": indexes, "start": start, "stop": stop})
    return batches


def _served_rows(config: Config, corpus: Corpus, in_process: _InProcess) -> list[Row]:
    batches = _encode_batches(corpus)
    spectra = sum(len(b["files"]) for b in batches)
    encode = (
        f"EncodeSpectrum, {spectra} 1D spectra in {len(batches)} batches by x unit,"
        f" {ENCODE_IN_FLIGHT} in flight"
    )
    figures: list[dict[str, Any]] = [{"name": PARSE_SERVED, "kind": "parse"}]
    if batches:
        figures.append({"name": encode, "kind": "encode"})
    figures.append({"name": CONVERT_SERVED, "kind": "convert"})
    with running_server(SERVER_SETTINGS) as server:
        job = {
            "address": server.address,
            "server_pid": server.pid,
            "files": [base64.b64encode(f.content).decode("ascii") for f in corpus.files],
            "points": [f.points for f in corpus.files],
            "batches": batches,
            "calls": config.calls,
            "encode_calls": config.encode_calls,
            "convert_calls": config.convert_calls,
            "repeats": config.repeats,
            "max_seconds": config.max_seconds,
            "figures": figures,
        }
        bound = len(figures) * (config.repeats + 1) * config.max_seconds + _LOAD_TIMEOUT_PAD_S
        runs = figure_runs("bench.spectra", job, bound)
    rows = []
    in_process_rate = next(r for r in in_process.rows if r.name == PARSE).value
    for figure in figures:
        name = figure["name"]
        if figure["kind"] == "parse":
            row = Row(name, "files/s", runs[name])
            row.ratios = {"in-process": row.value / in_process_rate}
            points = [
                Run(int(r.detail.get("points", 0)), r.seconds, r.errors, first_error=r.first_error)
                for r in runs[name]
            ]
            rows += [row, Row(name + POINTS, "points/s", points)]
        elif figure["kind"] == "encode":
            rows.append(Row(name, "spectra/s", runs[name]))
        else:
            rows.append(Row(name, "calls/s", runs[name]))
    return rows


# -- the load generator (`python -m bench.spectra`, a job as JSON on stdin) --------------


_parse_call = unary_call("ParseSpectrum")
_encode_call = batch_call("EncodeSpectrum", "spectra")
_convert_call = unary_call("ConvertUnits")


def _counting_points(call: Call) -> Call:
    """`call` on a (request, points) unit, adding the points of each answered call to the
    outcome's "points"."""

    async def counted(stub: Any, unit: Any, outcome: Outcome) -> None:
        request, points = unit
        errors = outcome.errors
        await call(stub, request, outcome)
        if outcome.errors == errors:
            outcome.detail["points"] = outcome.detail.get("points", 0.0) + points

    return counted


def _plan(job: dict[str, Any]) -> Callable[[grpc.aio.Channel, dict[str, Any]], Plan]:
    """How each figure's calls are made."""
    contents = [base64.b64decode(text) for text in job["files"]]

    def plan(channel: grpc.aio.Channel, figure: dict[str, Any]) -> Plan:
        spectra = spectrum_pb2_grpc.SpectrumServiceStub(channel)
        if figure["kind"] == "parse":
            units = [
                (spectrum_pb2.ParseSpectrumRequest(content=c), points)
                for c, points in zip(contents, job["points"], strict=True)
            ]
            parses = [units[i % len(units)] for i in range(job["calls"])]
            parse = _counting_points(_parse_call)
            return Plan(parses, PARSE_CALLERS, parse, spectra, _SERVED_WARMUP_CALLS)
        if figure["kind"] == "encode":
            requests = [
                spectrum_pb2.EncodeSpectrumRequest(
                    spectra=[spectrum_pb2.SpectrumInput(content=contents[i]) for i in b["files"]],
                    options=spectrum_pb2.EncodeSpectrumOptions(
                        grid=spectrum_pb2.SpectrumGrid(
                            start=b["start"], stop=b["stop"], points=ENCODE_GRID_POINTS
                        ),
                        normalization=spectrum_pb2.NORMALIZATION_MAX,
                    ),
                )
                for b in job["batches"]
            ]
            encodes = [requests[i % len(requests)] for i in range(job["encode_calls"])]
            return Plan(encodes, ENCODE_IN_FLIGHT, _encode_call, spectra, len(requests))
        request = units_pb2.ConvertUnitsRequest(
            values=np.linspace(200.0, 2000.0, CONVERT_VALUES).tolist(),
            from_unit="nm",
            to_unit="1/cm",
            context="spectroscopy",
        )
        converts = [request] * job["convert_calls"]
        stub = units_pb2_grpc.UnitServiceStub(channel)
        return Plan(converts, CONVERT_CALLERS, _convert_call, stub, _SERVED_WARMUP_CALLS)

    return plan


async def _drive(job: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return await drive_figures(job, _plan(job))


# -- everything --------------------------------------------------------------------------


@dataclass
class Result:
    rows: list[Row]
    payload: dict[str, Any]
    """The corpus, refused files, per-reader failures and per-file medians, the goal."""
    goal: dict[str, dict[str, Any]]


def _corpus_json(corpus: Corpus) -> dict[str, Any]:
    return {
        "root": str(corpus.root) if corpus.root else None,
        "files": [f.name for f in corpus.files],
        "points": {f.name: f.points for f in corpus.files},
        "refused": corpus.refused,
        "left_out": corpus.left_out,
        "one_d": {f.name: f.x_unit for f in corpus.files if f.x_range is not None},
    }


def run(config: Config, corpus: Corpus) -> Result:
    """Every spectrum benchmark, in-process first (nothing else running), then served. No
    files: the unit rows only."""
    rows: list[Row] = []
    payload: dict[str, Any] = {"corpus": _corpus_json(corpus)}
    goal: dict[str, dict[str, Any]] = {}
    in_process = None
    if corpus.files:
        in_process = _in_process(corpus, config)
        rows += in_process.rows
        goal = in_process.goal
        payload["readers"] = in_process.payload
    unit_rows, payload["units"] = _units(config)
    rows += unit_rows
    if in_process is not None:
        rows += _served_rows(config, corpus, in_process)
    payload["goal"] = goal
    return Result(rows, payload, goal)


if __name__ == "__main__":
    run_job(_drive)
