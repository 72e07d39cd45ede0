"""`qulab structure`: CIF and POSCAR files, and folders of them, through ParseStructure."""

from __future__ import annotations

import argparse
from pathlib import Path

from qulab.cli._common import ExitCode
from qulab.cli._output import Item, View, join
from qulab.cli._shared import add_file_flags, add_output_flags, run_files
from qulab.client import Client
from qulab.v1 import structure_pb2

__all__ = ["register"]

_FORMATS = {
    "auto": structure_pb2.STRUCTURE_FORMAT_UNSPECIFIED,
    "cif": structure_pb2.STRUCTURE_FORMAT_CIF,
    "poscar": structure_pb2.STRUCTURE_FORMAT_POSCAR,
}
_CELLS = {
    "file": structure_pb2.CELL_CHOICE_UNSPECIFIED,
    "conventional": structure_pb2.CELL_CHOICE_CONVENTIONAL,
    "primitive": structure_pb2.CELL_CHOICE_PRIMITIVE,
}
_SUFFIXES = {".cif", ".mcif", ".vasp", ".poscar", ".contcar"}
_NAMES = ("POSCAR", "CONTCAR")


def _wanted(path: Path) -> bool:
    name = path.name.upper()
    return path.suffix.lower() in _SUFFIXES or any(n in name for n in _NAMES)


def _space_groups(s: structure_pb2.Structure) -> tuple[str, int, str, int]:
    declared = s.declared_space_group
    return (
        declared.resolved_hermann_mauguin or declared.hermann_mauguin,
        declared.resolved_number or declared.number,
        s.detected_symmetry.international,
        s.detected_symmetry.number,
    )


def _records(answer: structure_pb2.ParseStructureResponse) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for s in answer.structures:
        declared, declared_number, detected, detected_number = _space_groups(s)
        lattice = s.lattice
        rows.append(
            {
                "block": s.name,
                "formula": s.formula,
                "reduced_formula": s.reduced_formula,
                "z": s.z,
                "a": lattice.a,
                "b": lattice.b,
                "c": lattice.c,
                "alpha": lattice.alpha,
                "beta": lattice.beta,
                "gamma": lattice.gamma,
                "volume": s.volume,
                "density": s.density,
                "sites": len(s.sites),
                "declared_space_group": declared,
                "declared_number": declared_number or None,
                "detected_space_group": detected,
                "detected_number": detected_number or None,
                "crystal_system": s.detected_symmetry.crystal_system,
                "warnings": join([w.message for w in s.warnings]),
            }
        )
    return rows


def _human(answer: structure_pb2.ParseStructureResponse) -> list[str]:
    lines: list[str] = []
    for s in answer.structures:
        declared, declared_number, detected, detected_number = _space_groups(s)
        group = (
            f"{detected} ({detected_number})"
            if detected
            else f"{declared or 'no space group'} ({declared_number}, declared)"
        )
        cell = s.lattice
        line = (
            f"[{s.name}] {s.formula}, {group}, a={cell.a:.4f} b={cell.b:.4f} c={cell.c:.4f} Å "
            f"alpha={cell.alpha:.2f} beta={cell.beta:.2f} gamma={cell.gamma:.2f} deg, "
            f"V={s.volume:.2f} Å³, {s.density:.3f} g/cm³, {len(s.sites)} sites"
        )
        if s.warnings:
            line += f"; {len(s.warnings)} warning{'s' if len(s.warnings) > 1 else ''}: "
            line += join([w.message for w in s.warnings])
        lines.append(line)
    return lines


VIEW: View[structure_pb2.ParseStructureResponse] = View(
    columns=(
        "block",
        "formula",
        "reduced_formula",
        "z",
        "a",
        "b",
        "c",
        "alpha",
        "beta",
        "gamma",
        "volume",
        "density",
        "sites",
        "declared_space_group",
        "declared_number",
        "detected_space_group",
        "detected_number",
        "crystal_system",
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
        "structure",
        parents=[common],
        help="parse crystal structures: CIF and POSCAR files, or folders of them",
        description="Parse CIF (every data block) and VASP POSCAR/CONTCAR files. A folder is "
        "searched recursively for *.cif, *.mcif, *.vasp and *POSCAR*/*CONTCAR* files; - reads one "
        "file from stdin. A file that fails is reported and the run goes on. CSV output has "
        "one row per structure (a CIF data block), or one per file that failed.",
    )
    parser.add_argument("inputs", nargs="+", metavar="FILE|FOLDER")
    parser.add_argument(
        "--input-format", choices=tuple(_FORMATS), default="auto", help="default: detect"
    )
    parser.add_argument("--block", help="read only this CIF data block (name without data_)")
    parser.add_argument(
        "--cell", choices=tuple(_CELLS), default="file", help="the cell to return (default: file)"
    )
    parser.add_argument(
        "--no-symmetry", action="store_true", help="skip spglib's space-group detection"
    )
    parser.add_argument(
        "--species",
        type=_symbols,
        default=[],
        metavar="EL,EL,...",
        help="the elements of a VASP 4 POSCAR, which has no species line: one per count",
    )
    parser.add_argument("--strict", action="store_true", help="refuse structures with warnings")
    add_file_flags(parser)
    add_output_flags(parser, tensors=True)
    parser.set_defaults(run=run)


def _symbols(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def run(args: argparse.Namespace) -> ExitCode:
    options = structure_pb2.StructureOptions(
        cell=_CELLS[args.cell], strict=args.strict, species=args.species
    )
    if args.no_symmetry:
        options.detect_symmetry = False

    def call(client: Client, item: Item, content: bytes) -> structure_pb2.ParseStructureResponse:
        return client.parse_structure(
            structure_pb2.ParseStructureRequest(
                content=content,
                format=_FORMATS[args.input_format],
                options=options,
                id=item.input[-256:],
                block=args.block or "",
            )
        )

    return run_files(args, wanted=_wanted, kind="CIF or POSCAR", call=call, view=VIEW)
