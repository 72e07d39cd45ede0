"""Structure benchmarks: QuLab's CIF and POSCAR readers against gemmi, pymatgen and ASE on the
same files in the same process, then the served StructureService on the same CIFs.

The files: every CIF of the CIF corpus and every POSCAR of the POSCAR corpus that QuLab's
`parse_structure` reads (the ones it refuses are counted and listed in the JSON, not timed);
the copies under tests/data when present, else /work/shared/corpora. A VASP 4 POSCAR (no
species line) is given its species: the elements QuLab infers from the file when it can,
else made-up distinct symbols, one per count; pymatgen gets them as `default_names`, ASE
gets nothing (it reads them from the comment line or fails).

In-process, in this process, one thread. Each timed pass calls every reader on every file
it reads, one after the other, the readers taking turns pass by pass so that a slow spell
of the machine hits them all; a file a reader fails on in the warm-up pass is counted as
its error and never timed. A "files/s" row is the median over passes of (files / summed
time of the pass); its "per file" row is the median over files of each file's median time
over passes (min-max: the fastest and the slowest file). Ratios are rate ratios on the
files both readers read (the sums of their per-file medians), so a reader that fails on
the slow files is not flattered.
- CIF: QuLab `read_cif` (the reader alone; again with its cache of resolved space groups
  emptied before each file, the cost of a setting a worker has not seen yet, while every
  other figure reads with it warm), `parse_structure` without and with symmetry
  detection (spglib), gemmi's own read + small structure + unit-cell sites (the floor:
  QuLab reads through gemmi), pymatgen `CifParser.parse_structures(primitive=False)`, ASE
  `ase.io.read(format="cif")`. Goal: QuLab >= 15x pymatgen in-process.
- POSCAR: QuLab `read_poscar` and `parse_structure` without symmetry detection, pymatgen
  `Poscar.from_str`, ASE `ase.io.read(format="vasp")`.

Served, one `python -m qulab.server` with 2 workers and the result cache off (every call
is computed), driven by a load generator in its own process (`python -m bench.structures`,
the same closed loop as `bench._load`, so the client's CPU is not counted as the server's):
- ParseStructure, 64 concurrent callers on one channel, the CIFs over and over, symmetry
  detection off and on; ratio to the in-process `parse_structure` rate of the same setting.
- EncodeStructure, every readable CIF in one call (a file with several data blocks as one
  input per block), 1 and 2 calls in flight: structures/s.
"""

from __future__ import annotations

import base64
import contextlib
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gemmi
import grpc

from bench._corpus import ROOT
from bench._load import Plan, batch_call, drive_figures, figure_runs, run_job, unary_call
from bench._measure import PER_FILE, Timed, first_line, rate_ratios, time_readers
from bench._report import Row
from bench._server import running_server
from qulab.server.domain import _cif
from qulab.server.domain._cif import read_cif
from qulab.server.domain._poscar import read_poscar
from qulab.server.domain.structure_options import StructureLimits
from qulab.server.domain.structures import parse_structure
from qulab.server.errors import QulabError
from qulab.v1 import structure_pb2, structure_pb2_grpc

__all__ = [
    "LOAD_SETTINGS",
    "PER_FILE",
    "SERVER_SETTINGS",
    "Config",
    "Corpus",
    "StructureFile",
    "corpus_roots",
    "load_corpus",
    "run",
]

SERVER_SETTINGS = {"QULAB_WORKERS": "2", "QULAB_CACHE_MB": "0"}
UNARY_CALLERS = 64
ENCODE_IN_FLIGHT = (1, 2)
PYMATGEN_TARGET = 15.0
"""The issue's goal: QuLab reads CIFs at least this many times as fast as pymatgen."""
_SERVED_WARMUP_CALLS = 64
LOAD_SETTINGS = {
    "unary_callers": UNARY_CALLERS,
    "unary_channels": 1,
    "encode_in_flight": ENCODE_IN_FLIGHT,
    "warmup_calls": _SERVED_WARMUP_CALLS,
    "event_loop": "uvloop",
}
_LOAD_TIMEOUT_PAD_S = 60.0
_CANDIDATES = {
    kind: (ROOT / "tests" / "data" / kind, ROOT.parent / "shared" / "corpora" / kind)
    for kind in ("cif", "poscar")
}
_NOT_STRUCTURES = {".md", ".json", ".txt"}
# Species for VASP 4 files whose elements cannot be inferred: distinct, common elements.
_COMMON = ("Na", "Cl", "Mg", "O", "Si", "Fe", "Al", "Ca", "K", "Ti", "Zn", "Cu")
_STAND_IN_SPECIES = (
    *_COMMON,
    *(name for name in (gemmi.Element(z).name for z in range(1, 119)) if name not in _COMMON),
)

# Row names, for the report and the smoke test.
CIF_READ = "CIF read_cif (QuLab reader)"
CIF_READ_COLD = "CIF read_cif, space-group cache cleared"
CIF_PARSE = "CIF parse_structure, no symmetry"
CIF_FULL = "CIF parse_structure, spglib"
CIF_GEMMI = "CIF gemmi read+sites (floor)"
CIF_PYMATGEN = "CIF pymatgen CifParser"
CIF_ASE = "CIF ASE read"
POSCAR_READ = "POSCAR read_poscar (QuLab reader)"
POSCAR_PARSE = "POSCAR parse_structure, no symmetry"
POSCAR_PYMATGEN = "POSCAR pymatgen Poscar"
POSCAR_ASE = "POSCAR ASE read"
QULAB_CIF = (CIF_READ, CIF_PARSE, CIF_FULL)
_SHORT = {CIF_PYMATGEN: "pymatgen", CIF_GEMMI: "gemmi", POSCAR_PYMATGEN: "pymatgen"}
"""How the ratio column names the baselines."""


@dataclass(frozen=True)
class Config:
    passes: int
    """Timed passes over every file, in-process (after one warm-up pass)."""
    in_process_seconds: float
    """Bound on the timed passes of one corpus (all its readers); at least one pass."""
    repeats: int
    """Timed runs per served figure."""
    max_seconds: float
    """Bound on one served run."""
    calls: int
    """ParseStructure calls per served run (the files over and over)."""
    encode_calls: int
    """EncodeStructure calls per served run."""
    subset: int | None = None
    """Only the `subset` smallest readable files of each corpus (a smoke run)."""


@dataclass(frozen=True)
class StructureFile:
    name: str
    """Path relative to its corpus root."""
    content: bytes
    text: str
    species: tuple[str, ...] = ()
    """For a VASP 4 POSCAR: one element per count; empty otherwise."""
    blocks: tuple[str, ...] = ()
    """For a CIF: the names of its structure data blocks."""


@dataclass
class Corpus:
    kind: str
    root: Path | None
    files: list[StructureFile] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    """Files QuLab refuses, with its reason."""
    left_out: int = 0
    """Readable files not used (a smoke run's subset)."""


# -- the files ---------------------------------------------------------------------------


def corpus_roots() -> dict[str, Path | None]:
    """The first of the known places holding files of each kind (None: no corpus)."""
    found: dict[str, Path | None] = {}
    for kind, candidates in _CANDIDATES.items():
        found[kind] = next((p for p in candidates if p.is_dir() and any(_files(p))), None)
    return found


def _files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in _NOT_STRUCTURES
    )


def _request(
    content: bytes,
    file_format: structure_pb2.StructureFormat.ValueType,
    *,
    symmetry: bool,
    species: Sequence[str] = (),
) -> structure_pb2.ParseStructureRequest:
    return structure_pb2.ParseStructureRequest(
        content=content,
        format=file_format,
        options=structure_pb2.StructureOptions(detect_symmetry=symmetry, species=species),
    )


def _vasp4_counts(text: str) -> int:
    """How many counts line 6 holds when it is a VASP 4 counts line (no species line)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    tokens = lines[5].split() if len(lines) > 5 else []
    return len(tokens) if tokens and all(t.isdigit() for t in tokens) else 0


def _admit(kind: str, path: Path, root: Path, limits: StructureLimits) -> StructureFile | str:
    """The file with what its readers need, or why QuLab refuses it."""
    content = path.read_bytes()
    text = content.decode("utf-8", "replace")
    name = str(path.relative_to(root))
    if kind == "cif":
        try:
            answer = parse_structure(_request(content, _CIF, symmetry=True), limits)
        except QulabError as error:
            return first_line(error)
        return StructureFile(name, content, text, blocks=tuple(s.name for s in answer.structures))
    counts = _vasp4_counts(text)
    try:
        answer = parse_structure(_request(content, _POSCAR, symmetry=True), limits)
    except QulabError as error:
        if not counts:
            return first_line(error)
        # A VASP 4 file that does not name its elements: stand-in species, one per count.
        species = _STAND_IN_SPECIES[:counts]
        try:
            parse_structure(_request(content, _POSCAR, symmetry=True, species=species), limits)
        except QulabError as again:
            return first_line(again)
        return StructureFile(name, content, text, species=species)
    if not counts:
        return StructureFile(name, content, text)
    # A VASP 4 file QuLab reads alone: its elements, one per count, for the other readers.
    elements = [site.element for site in answer.structures[0].sites]
    named = [e for k, e in enumerate(elements) if k == 0 or elements[k - 1] != e]
    return StructureFile(name, content, text, species=tuple(named))


def load_corpus(kind: str, subset: int | None = None) -> Corpus:
    """Every file of the corpus QuLab reads (or only the `subset` smallest of them)."""
    root = corpus_roots()[kind]
    corpus = Corpus(kind, root)
    if root is None:
        return corpus
    limits = StructureLimits()
    for path in _files(root):
        admitted = _admit(kind, path, root, limits)
        if isinstance(admitted, str):
            corpus.refused[str(path.relative_to(root))] = admitted
        else:
            corpus.files.append(admitted)
    if subset is not None and len(corpus.files) > subset:
        kept = {f.name for f in sorted(corpus.files, key=lambda f: len(f.content))[:subset]}
        corpus.left_out = len(corpus.files) - subset
        corpus.files = [f for f in corpus.files if f.name in kept]
    return corpus


# -- the readers -------------------------------------------------------------------------

_CIF = structure_pb2.STRUCTURE_FORMAT_CIF
_POSCAR = structure_pb2.STRUCTURE_FORMAT_POSCAR
Reader = Callable[[StructureFile], object]


def _quiet(read: Reader) -> Reader:
    """pymatgen and ASE warn about much of what they read; muted for their timings."""

    def quietly(item: StructureFile) -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read(item)

    return quietly


def _gemmi_sites(item: StructureFile) -> object:
    document = gemmi.cif.read_string(item.text)
    return [
        gemmi.make_small_structure_from_block(document.find_block(name)).get_all_unit_cell_sites()
        for name in item.blocks
    ]


@dataclass(frozen=True)
class _ColdReader:
    """A reader with a cache emptied before each file; `refill` fills it again (untimed,
    after the reader's pass) so that the readers after it find it warm."""

    read: Reader
    clear: Callable[[], object]

    def __call__(self, item: StructureFile) -> object:
        self.clear()
        return self.read(item)

    def refill(self, files: list[StructureFile]) -> None:
        for item in files:
            with contextlib.suppress(Exception):
                self.read(item)


def _cif_readers(limits: StructureLimits) -> dict[str, Reader]:
    from ase.io import read as ase_read
    from pymatgen.io.cif import CifParser

    def parse(symmetry: bool) -> Reader:
        return lambda item: parse_structure(_request(item.content, _CIF, symmetry=symmetry), limits)

    readers: dict[str, Reader] = {CIF_READ: lambda item: read_cif(item.content, limits)}
    # `read_cif` keeps the space groups it resolved (a few hundred settings cover nearly
    # every file); every other figure reads with that cache warm. This one empties it first,
    # the cost of a file whose setting the worker has not seen yet.
    clear = getattr(getattr(_cif, "_resolve", None), "cache_clear", None)
    if callable(clear):
        readers[CIF_READ_COLD] = _ColdReader(readers[CIF_READ], clear)
    return readers | {
        CIF_PARSE: parse(False),
        CIF_FULL: parse(True),
        CIF_GEMMI: _gemmi_sites,
        CIF_PYMATGEN: _quiet(
            lambda item: CifParser.from_str(item.text).parse_structures(primitive=False)
        ),
        CIF_ASE: _quiet(lambda item: ase_read(io.StringIO(item.text), format="cif")),
    }


def _poscar_readers(limits: StructureLimits) -> dict[str, Reader]:
    from ase.io import read as ase_read
    from pymatgen.io.vasp.inputs import Poscar

    return {
        POSCAR_READ: lambda item: read_poscar(item.text, item.species, limits),
        POSCAR_PARSE: lambda item: parse_structure(
            _request(item.content, _POSCAR, symmetry=False, species=item.species), limits
        ),
        POSCAR_PYMATGEN: _quiet(
            lambda item: Poscar.from_str(item.text, default_names=list(item.species) or None)
        ),
        POSCAR_ASE: _quiet(lambda item: ase_read(io.StringIO(item.text), format="vasp")),
    }


# -- in-process --------------------------------------------------------------------------


@dataclass
class _InProcess:
    rows: list[Row]
    timed: dict[str, Timed]
    payload: dict[str, Any]


def _in_process(
    corpus: Corpus, readers: dict[str, Reader], baselines: Sequence[str], config: Config
) -> _InProcess:
    timed = time_readers(readers, corpus.files, config.passes, config.in_process_seconds)
    rows: list[Row] = []
    for name, one in timed.items():
        rate, per_file = one.rows()
        rate.ratios = rate_ratios(timed, name, baselines, _SHORT)
        rows += [rate, per_file]
    payload = {name: one.as_json(corpus.files) for name, one in timed.items()}
    return _InProcess(rows, timed, payload)


def _goal(cif: _InProcess) -> dict[str, dict[str, Any]]:
    """The goal, >= 15x pymatgen on the files both read, for each QuLab CIF figure."""
    goal = {}
    pymatgen = cif.timed[CIF_PYMATGEN]
    for name in QULAB_CIF:
        ratio = cif.timed[name].rate_ratio(pymatgen)
        met = ratio is not None and ratio >= PYMATGEN_TARGET
        goal[name] = {"x_pymatgen": ratio, "met": met}
        for row in cif.rows:
            if row.name == name:
                row.target, row.met = f">= {PYMATGEN_TARGET:g}x pymatgen", met
    return goal


# -- served ------------------------------------------------------------------------------


def _served_rows(config: Config, cif: Corpus, in_process: _InProcess) -> list[Row]:
    parse = f"ParseStructure unary, {UNARY_CALLERS} callers"
    inputs = sum(max(len(f.blocks), 1) for f in cif.files)
    figures: list[dict[str, Any]] = [
        {"name": f"{parse}, no symmetry", "kind": "parse", "symmetry": False},
        {"name": f"{parse}, spglib", "kind": "parse", "symmetry": True},
    ]
    figures += [
        {"name": f"EncodeStructure, {inputs} CIFs per call, {n} in flight", "kind": "encode"}
        | {"in_flight": n}
        for n in ENCODE_IN_FLIGHT
    ]
    with running_server(SERVER_SETTINGS) as server:
        job = {
            "address": server.address,
            "server_pid": server.pid,
            "files": [base64.b64encode(f.content).decode("ascii") for f in cif.files],
            "blocks": [list(f.blocks) for f in cif.files],
            "calls": config.calls,
            "encode_calls": config.encode_calls,
            "repeats": config.repeats,
            "max_seconds": config.max_seconds,
            "figures": figures,
        }
        bound = len(figures) * (config.repeats + 1) * config.max_seconds + _LOAD_TIMEOUT_PAD_S
        runs = figure_runs("bench.structures", job, bound)
    rows = []
    for figure in figures:
        unit = "files/s" if figure["kind"] == "parse" else "structures/s"
        row = Row(figure["name"], unit, runs[figure["name"]])
        if figure["kind"] == "parse":
            baseline = CIF_FULL if figure["symmetry"] else CIF_PARSE
            rate = next(r for r in in_process.rows if r.name == baseline).value
            row.ratios = {"in-process": row.value / rate}
        rows.append(row)
    return rows


# -- the load generator (`python -m bench.structures`, a job as JSON on stdin) ----------


_parse_call = unary_call("ParseStructure")
_encode_call = batch_call("EncodeStructure", "structures")


def _plan(job: dict[str, Any]) -> Callable[[grpc.aio.Channel, dict[str, Any]], Plan]:
    """How each figure's calls are made."""
    contents = [base64.b64decode(text) for text in job["files"]]

    def plan(channel: grpc.aio.Channel, figure: dict[str, Any]) -> Plan:
        stub = structure_pb2_grpc.StructureServiceStub(channel)
        if figure["kind"] == "parse":
            requests = [_request(c, _CIF, symmetry=figure["symmetry"]) for c in contents]
            calls = [requests[i % len(requests)] for i in range(job["calls"])]
            return Plan(calls, UNARY_CALLERS, _parse_call, stub, _SERVED_WARMUP_CALLS)
        inputs = [
            structure_pb2.StructureInput(content=content, format=_CIF, block=block)
            for content, blocks in zip(contents, job["blocks"], strict=True)
            for block in (blocks if len(blocks) > 1 else [""])
        ]
        request = structure_pb2.EncodeStructureRequest(structures=inputs)
        return Plan([request] * job["encode_calls"], figure["in_flight"], _encode_call, stub, 2)

    return plan


async def _drive(job: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return await drive_figures(job, _plan(job))


# -- everything --------------------------------------------------------------------------


@dataclass
class Result:
    rows: list[Row]
    payload: dict[str, Any]
    """Corpora, refused files, per-reader failures and per-file medians, the goal."""
    goal: dict[str, dict[str, Any]]


def _corpus_json(corpus: Corpus) -> dict[str, Any]:
    return {
        "root": str(corpus.root) if corpus.root else None,
        "files": [f.name for f in corpus.files],
        "refused": corpus.refused,
        "left_out": corpus.left_out,
        "species_given": {f.name: list(f.species) for f in corpus.files if f.species},
    }


def run(config: Config, cif: Corpus, poscar: Corpus) -> Result:
    """Every structure benchmark, in-process first (nothing else running), then served.
    A corpus without files is skipped (its rows are missing)."""
    limits = StructureLimits()
    rows: list[Row] = []
    payload: dict[str, Any] = {
        "corpora": {"cif": _corpus_json(cif), "poscar": _corpus_json(poscar)}
    }
    goal: dict[str, dict[str, Any]] = {}
    cif_figures = None
    if cif.files:
        cif_figures = _in_process(cif, _cif_readers(limits), (CIF_PYMATGEN, CIF_GEMMI), config)
        goal = _goal(cif_figures)
        rows += cif_figures.rows
        payload["cif_readers"] = cif_figures.payload
    if poscar.files:
        figures = _in_process(poscar, _poscar_readers(limits), (POSCAR_PYMATGEN,), config)
        rows += figures.rows
        payload["poscar_readers"] = figures.payload
    if cif_figures is not None:
        rows += _served_rows(config, cif, cif_figures)
    payload["goal"] = goal
    return Result(rows, payload, goal)


if __name__ == "__main__":
    run_job(_drive)
