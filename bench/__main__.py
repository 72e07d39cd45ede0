"""QuLab benchmarks: `make bench`, or `.venv/bin/python -m bench [--quick]
[--only molecules|structures|spectra|security|observability|ghz]`.

How to run: from the repository root, on an otherwise idle machine (the served
benchmarks start their own server on 127.0.0.1 and a load generator beside it; everything
stops by itself). The whole run takes about ten minutes on 2 cores; `--quick` is a
smoke run of a few seconds per figure, not a measurement.

How to read it: each row is the median of `--repeats` runs over the same molecules
(min-max beside it), after a warm-up. Ratios compare rows of the same invocation, never
figures from elsewhere: "full parse" is bare RDKit on one core in this process,
"parse_molecule" the service's own domain function on one core. `err` counts failed
calls or items (expected 0: the molecules are ones RDKit reads). The CPU column is the CPU
time per molecule (µs) of the load generator / the server's event-loop process / its
worker processes / the rest of the machine: with 2 cores, the sum of the first three caps
the served rate at 2e6 / sum mol/s, and the largest share is what to make cheaper; a
large "other" means something else was running, and "noisy" counts the runs during which
it took more than a fifth of a core. A tick or cross
marks a target met or missed. Every run is in bench/results/molecules.json; see
`bench.molecules` for what each row measures and why.

The structure benchmark (bench/results/structures.json, `bench.structures`) reads the CIF
and POSCAR files QuLab accepts with QuLab, gemmi, pymatgen and ASE in this process, each
reader on the same files pass after pass (`--passes`): "files/s" is the median over passes,
"per file" the median over files of each file's median time (min-max: fastest and slowest
file), ratios are rate ratios on the files both readers read, and `err` counts the files a
reader fails on (not timed). Then ParseStructure and EncodeStructure on a served instance,
read like the molecule rows.

The spectrum benchmark (bench/results/spectra.json, `bench.spectra`) reads the JCAMP-DX files
QuLab accepts with QuLab's reader, its full ParseSpectrum answer and the `jcamp` package in
this process, read like the structure rows, with a "points/s" row (decoded y values) beside
each "files/s" row; then QuLab's unit conversion against pint, and ParseSpectrum,
EncodeSpectrum and ConvertUnits on a served instance.

The security benchmark (bench/results/security.json, `bench.security`) serves ParseMolecule,
as the molecule unary row does, from three servers started side by side: security off
(QULAB_AUTH=none), API key and JWT RS256 (each with a roles file and a rate limit that
never refuses). They take turns, one timed run each per round (order rotated), for at
least 7 rounds (2 with `--quick`; more with `--repeats`); each "on" row's ratio is to
"off", and the goal is >= 0.85x with no errors.

The observability benchmark (bench/results/observability.json, `bench.observability`) does
the same with four servers: observability off (QULAB_METRICS=false, no tracing), metrics
only, tracing at the default 10% sampling + metrics, and tracing at 100% (always_on) +
metrics, the spans exported over OTLP/gRPC to a counting receiver in the bench process.
Each row's ratio is to "off"; the goal is "tracing 100% + metrics" >= 0.9x. A line per row
gives the spans received and the calls the server's metrics counted, against the calls sent.

The ghz benchmark (bench/results/ghz.json, `bench.ghz`) drives ParseMolecule with ghz, a
load generator written in Go (built from the pins in tests/interop/tools/go.mod; skipped,
with the reason, when Go is missing), closed loop at a few concurrencies over the same
molecules, each sent at most once per run of at most 10 s (2 s with `--quick`): the rate
and ghz's latency p50/p90/p99 per concurrency, and in the JSON ghz's summary of every run
(status code and error distributions included).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from bench import ghz, molecules, observability, security, spectra, structures
from bench._corpus import corpus_path, unique_smiles
from bench._environment import describe
from bench._gotools import Unavailable
from bench._report import RESULTS, format_table, write_json
from bench._rounds import MIN_ROUNDS, Config

BENCHMARKS = ("molecules", "structures", "spectra", "security", "observability", "ghz")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--molecules", type=int, default=10_000, help="unique molecules used")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="bound on one run")
    parser.add_argument("--open-loop-seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="a smoke run, not a measurement")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the JSON")
    parser.add_argument(
        "--only", choices=BENCHMARKS, help="run one benchmark (default: all of them)"
    )
    parser.add_argument(
        "--passes",
        type=int,
        default=15,
        help="timed passes over the structure and spectrum files",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.molecules, args.repeats, args.max_seconds, args.open_loop_seconds = 1000, 1, 3, 2
        args.passes = 2

    started = time.perf_counter()
    environment = describe()
    print("machine:", ", ".join(f"{k} {v}" for k, v in environment.items()), flush=True)
    if args.only in (None, "molecules"):
        _molecules(args, environment, started)
    if args.only in (None, "structures"):
        _structures(args, environment)
    if args.only in (None, "spectra"):
        _spectra(args, environment)
    if args.only in (None, "security"):
        _security(args, environment)
    if args.only in (None, "observability"):
        _observability(args, environment)
    if args.only in (None, "ghz"):
        _ghz(args, environment)


def _molecules(args: argparse.Namespace, environment: dict[str, Any], started: float) -> None:
    config = molecules.Config(
        smiles=unique_smiles(args.molecules),
        repeats=args.repeats,
        max_seconds=args.max_seconds,
        open_loop_seconds=args.open_loop_seconds,
    )
    print(
        f"molecules: {len(config.smiles):,} from {corpus_path()}; {config.repeats} runs each;"
        f" server settings {molecules.SERVER_SETTINGS}",
        flush=True,
    )
    rows = molecules.run(config)
    print(format_table(rows))
    settings = dataclasses.asdict(config) | {"smiles": len(config.smiles)}
    path = write_json(
        "molecules",
        {
            "environment": environment,
            "corpus": str(corpus_path()),
            "config": settings,
            "server_settings": molecules.SERVER_SETTINGS,
            "load": molecules.LOAD_SETTINGS,
            "seconds": time.perf_counter() - started,
            "rows": [row.as_json() for row in rows],
        },
        args.results,
    )
    print(f"{time.perf_counter() - started:.0f} s; results in {path}")


def _print_goals(goals: dict[str, Any], key: str, target: float, baseline: str) -> None:
    for name, goal in goals.items():
        ratio = goal[key]
        verdict = "met ✓" if goal["met"] else "missed ✗"
        shown = "n/a" if ratio is None else f"{ratio:.1f}x"
        print(f"goal >= {target:g}x {baseline}, {name}: {shown}, {verdict}")


def _report(
    name: str,
    module: Any,
    config: Any,
    result: Any,
    environment: dict[str, Any],
    started: float,
    results: Path,
    **config_overrides: Any,
) -> None:
    """The JSON (`name`.json) of one benchmark whose `result` has rows and a payload."""
    path = write_json(
        name,
        {
            "environment": environment,
            "config": dataclasses.asdict(config) | config_overrides,
            "server_settings": module.SERVER_SETTINGS,
            "load": module.LOAD_SETTINGS,
            **result.payload,
            "seconds": time.perf_counter() - started,
            "rows": [row.as_json() for row in result.rows],
        },
        results,
    )
    print(f"{time.perf_counter() - started:.0f} s; results in {path}")


def _structures(args: argparse.Namespace, environment: dict[str, Any]) -> None:
    started = time.perf_counter()
    config = structures.Config(
        passes=args.passes,
        in_process_seconds=4.0 if args.quick else 12 * args.max_seconds,
        repeats=args.repeats,
        max_seconds=args.max_seconds,
        calls=200 if args.quick else 3000,
        encode_calls=4 if args.quick else 40,
        subset=5 if args.quick else None,
    )
    cif = structures.load_corpus("cif", config.subset)
    poscar = structures.load_corpus("poscar", config.subset)
    for corpus in (cif, poscar):
        if corpus.root is None:
            print(f"structures: no {corpus.kind} corpus found; its figures are skipped")
            continue
        left_out = f", {corpus.left_out} left out" if corpus.left_out else ""
        print(
            f"structures: {len(corpus.files)} {corpus.kind} files from {corpus.root}"
            f" ({len(corpus.refused)} refused by QuLab, not timed{left_out})",
            flush=True,
        )
    if not cif.files and not poscar.files:
        print("structures: nothing to read; skipped")
        return
    print(
        f"structures: {config.passes} passes in-process, {config.repeats} runs served;"
        f" server settings {structures.SERVER_SETTINGS}",
        flush=True,
    )
    result = structures.run(config, cif, poscar)
    print(format_table(result.rows))
    _print_goals(result.goal, "x_pymatgen", structures.PYMATGEN_TARGET, "pymatgen")
    _report("structures", structures, config, result, environment, started, args.results)


def _spectra(args: argparse.Namespace, environment: dict[str, Any]) -> None:
    started = time.perf_counter()
    config = spectra.Config(
        passes=args.passes,
        in_process_seconds=4.0 if args.quick else 12 * args.max_seconds,
        repeats=args.repeats,
        max_seconds=args.max_seconds,
        calls=200 if args.quick else 2000,
        encode_calls=4 if args.quick else 40,
        convert_calls=400 if args.quick else 20_000,
        scalar_calls=50 if args.quick else 500,
        array_calls=1 if args.quick else 5,
        subset=5 if args.quick else None,
    )
    corpus = spectra.load_corpus(config.subset)
    if corpus.root is None:
        print("spectra: no JCAMP-DX corpus found; its file figures are skipped")
    else:
        left_out = f", {corpus.left_out} left out" if corpus.left_out else ""
        print(
            f"spectra: {len(corpus.files)} JCAMP-DX files from {corpus.root}"
            f" ({len(corpus.refused)} refused by QuLab, not timed{left_out})",
            flush=True,
        )
    print(
        f"spectra: {config.passes} passes in-process, {config.repeats} runs served;"
        f" server settings {spectra.SERVER_SETTINGS}",
        flush=True,
    )
    result = spectra.run(config, corpus)
    print(format_table(result.rows))
    _print_goals(result.goal, "x_jcamp", spectra.JCAMP_TARGET, "jcamp")
    _report("spectra", spectra, config, result, environment, started, args.results)


def _rounds_config(args: argparse.Namespace) -> Config:
    return Config(
        smiles=unique_smiles(args.molecules),
        rounds=2 if args.quick else max(args.repeats, MIN_ROUNDS),
        max_seconds=args.max_seconds,
    )


def _molecules_counted(config: Config) -> dict[str, Any]:
    """What the JSON says of a rounds benchmark's molecules: how many, from where."""
    return {"smiles": len(config.smiles), "corpus": str(corpus_path())}


def _print_paired_goal(name: str, goal: dict[str, Any], target: float, also: str) -> None:
    """A goal line of a benchmark whose rows take turns (`bench._rounds`)."""
    verdict = "met ✓" if goal["met"] else "missed ✗"
    paired = goal["x_off_per_round"]
    spread = f"{min(paired):.2f}-{max(paired):.2f}" if paired else "n/a"
    print(
        f"goal >= {target:g}x off, {name}: {goal['x_off']:.2f}x"
        f" (per round: median {goal['x_off_per_round_median'] or 0:.2f}x, {spread}),"
        f" {goal['errors']} errors, {also}, {verdict}"
    )


def _security(args: argparse.Namespace, environment: dict[str, Any]) -> None:
    started = time.perf_counter()
    config = _rounds_config(args)
    print(
        f"security: {len(config.smiles):,} molecules from {corpus_path()}; {config.rounds}"
        f" rounds, the servers in turn; server settings {security.SERVER_SETTINGS}",
        flush=True,
    )
    result = security.run(config)
    print(format_table(result.rows))
    for name, goal in result.goal.items():
        anonymous = f"a call without credentials: {goal['anonymous_call']}"
        _print_paired_goal(name, goal, security.GOAL, anonymous)
    counted = _molecules_counted(config)
    _report("security", security, config, result, environment, started, args.results, **counted)


def _observability(args: argparse.Namespace, environment: dict[str, Any]) -> None:
    started = time.perf_counter()
    config = _rounds_config(args)
    print(
        f"observability: {len(config.smiles):,} molecules from {corpus_path()};"
        f" {config.rounds} rounds, the servers in turn; server settings"
        f" {observability.SERVER_SETTINGS}; spans to an OTLP/gRPC receiver in this process",
        flush=True,
    )
    result = observability.run(config)
    print(format_table(result.rows))
    for name, check in result.payload["checks"].items():
        spans = ", ".join(f"{n} {k}" for k, n in check["spans"].items()) or "none"
        print(
            f"{name}: {check['calls']:,} calls; spans {spans} ({check['spans_per_call']:.2f}"
            f" per call, {check['sampled_share']:.1%} of calls sampled); metrics counted"
            f" {check['metrics_handled']} handled; as configured:"
            f" {'yes' if check['as_configured'] else 'NO'}"
        )
    receiver = result.payload["receiver"]
    print(
        f"span receiver: {receiver['requests']} exports, {receiver['cpu_s']:.2f} CPU s"
        f" ({receiver['cpu_us_per_span']:.1f} µs per span)"
    )
    for name, goal in result.goal.items():
        exported = f"{goal['spans_exported']:.1%} of its spans exported"
        _print_paired_goal(name, goal, observability.GOAL, exported)
    counted = _molecules_counted(config)
    _report(
        "observability",
        observability,
        config,
        result,
        environment,
        started,
        args.results,
        **counted,
    )


def _ghz(args: argparse.Namespace, environment: dict[str, Any]) -> None:
    started = time.perf_counter()
    config = ghz.Config(
        smiles=unique_smiles(args.molecules),
        repeats=args.repeats,
        seconds=2.0 if args.quick else 10.0,
    )
    print(
        f"ghz: {len(config.smiles):,} molecules from {corpus_path()}; {config.repeats} runs"
        f" of at most {config.seconds:g} s at {', '.join(map(str, ghz.CONCURRENCIES))}"
        f" concurrent; server settings {ghz.SERVER_SETTINGS}",
        flush=True,
    )
    try:
        result = ghz.run(config)
    except Unavailable as why:
        print(f"ghz: unavailable ({why}); skipped")
        return
    print(format_table(result.rows))
    for summary in result.payload["runs"]:
        # A run of a set duration ends with ghz's reason "timeout": its time was up.
        ended = {"timeout": "time up"}.get(summary["endReason"], summary["endReason"])
        print(
            f"ghz {summary['concurrency']} concurrent: {summary['count']:,} calls,"
            f" {summary['rps']:,.0f}/s, status {summary['statusCodeDistribution']},"
            f" errors {summary['errorDistribution'] or 'none'}, ended: {ended}"
        )
    counted = {"smiles": len(config.smiles), "corpus": str(corpus_path())}
    _report("ghz", ghz, config, result, environment, started, args.results, **counted)


if __name__ == "__main__":
    main()
