"""`qulab spectrum`: JCAMP-DX files, and folders of them, through ParseSpectrum."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from qulab.cli._common import ExitCode
from qulab.cli._output import Item, View, join
from qulab.cli._shared import add_file_flags, add_output_flags, run_files
from qulab.client import Client, from_tensor
from qulab.v1 import spectrum_pb2

__all__ = ["register"]

_SUFFIXES = {".jdx", ".dx", ".jcamp", ".jcm"}


def _wanted(path: Path) -> bool:
    return path.suffix.lower() in _SUFFIXES


def _y_range(block: spectrum_pb2.SpectrumBlock) -> tuple[float | None, float | None]:
    if not block.points or not block.y.data:
        return None, None
    y = from_tensor(block.y)
    finite = y[np.isfinite(y)]
    if finite.size == 0:
        return None, None
    return float(finite.min()), float(finite.max())


def _peaks(block: spectrum_pb2.SpectrumBlock) -> int:
    if block.HasField("peak_table") and block.peak_table.values.shape:
        return int(block.peak_table.values.shape[0])
    return len(block.peak_assignments)


def _failed_checks(block: spectrum_pb2.SpectrumBlock) -> str:
    """Failed checks by name, with how often each failed: "X_CHECK (12); NPOINTS"."""
    counts = Counter(c.name for c in block.checks if not c.passed)
    return join([f"{name} ({n})" if n > 1 else name for name, n in counts.items()])


def _records(answer: spectrum_pb2.ParseSpectrumResponse) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for b in answer.blocks:
        y_min, y_max = _y_range(b)
        rows.append(
            {
                "block": b.index,
                "block_id": b.block_id,
                "parent": b.parent,
                "title": b.title,
                "jcamp_version": b.jcamp_version,
                "data_type": b.data_type,
                "data_class": b.data_class,
                "points": b.points,
                "declared_points": b.declared_points,
                "x_unit": b.x_unit,
                "y_unit": b.y_unit,
                "first_x": b.first_x if b.points else None,
                "last_x": b.last_x if b.points else None,
                "y_min": y_min,
                "y_max": y_max,
                "pages": len(b.pages),
                "peaks": _peaks(b),
                "failed_checks": _failed_checks(b),
                "warnings": join(list(b.warnings)),
            }
        )
    return rows


def _human(answer: spectrum_pb2.ParseSpectrumResponse) -> list[str]:
    lines: list[str] = []
    for b in answer.blocks:
        what = b.data_type or b.data_class or "block"
        line = f"[{b.index}] {b.title or '(untitled)'}: {what}"
        if b.children:
            line += f", {len(b.children)} blocks"
        if b.points:
            line += (
                f", {b.points} points, x {b.first_x:g} to {b.last_x:g} {b.x_unit}".rstrip()
                + f", y {b.y_unit or 'no unit'}"
            )
        if b.pages:
            line += f", {len(b.pages)} pages"
        if peaks := _peaks(b):
            line += f", {peaks} peaks"
        if failed := _failed_checks(b):
            line += f"; failed checks: {failed}"
        if b.warnings:
            line += f"; {len(b.warnings)} warning{'s' if len(b.warnings) > 1 else ''}"
        lines.append(line)
    return lines


VIEW: View[spectrum_pb2.ParseSpectrumResponse] = View(
    columns=(
        "block",
        "block_id",
        "parent",
        "title",
        "jcamp_version",
        "data_type",
        "data_class",
        "points",
        "declared_points",
        "x_unit",
        "y_unit",
        "first_x",
        "last_x",
        "y_min",
        "y_max",
        "pages",
        "peaks",
        "failed_checks",
        "warnings",
    ),
    records=_records,
    human=_human,
)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = commands.add_parser(
        "spectrum",
        parents=[common],
        help="parse spectra: JCAMP-DX files, or folders of them",
        description="Parse JCAMP-DX files (every block). A folder is searched recursively for "
        "*.jdx, *.dx, *.jcamp and *.jcm files; - reads one file from stdin. A file that fails "
        "is reported and the run goes on. CSV output has one row per block (a compound "
        "file's LINK block and each block it holds), or one per file that failed.",
    )
    parser.add_argument("inputs", nargs="+", metavar="FILE|FOLDER")
    parser.add_argument(
        "--x-unit", default="", metavar="UNIT", help="convert x axes to this unit (e.g. nm, 1/cm)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse files whose checkpoints, NPOINTS or FIRSTX/LASTX disagree with the data",
    )
    add_file_flags(parser)
    add_output_flags(parser, tensors=True)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> ExitCode:
    options = spectrum_pb2.ParseSpectrumOptions(strict=args.strict, x_unit=args.x_unit)

    def call(client: Client, item: Item, content: bytes) -> spectrum_pb2.ParseSpectrumResponse:
        return client.parse_spectrum(
            spectrum_pb2.ParseSpectrumRequest(
                content=content, options=options, id=item.input[-256:]
            )
        )

    return run_files(args, wanted=_wanted, kind="JCAMP-DX", call=call, view=VIEW)
