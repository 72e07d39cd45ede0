"""`qulab molecule`: molecules from the command line or from files, through one
ParseMolecules stream."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from qulab.cli._batch import run as run_batch
from qulab.cli._batch import stream_molecules
from qulab.cli._common import ExitCode, connect, require_serving, timeout_of
from qulab.cli._inputs import MoleculeSource, molecule_sources
from qulab.cli._output import Item, Reporter, View, join, open_sink, output_format
from qulab.cli._shared import add_output_flags, show_progress
from qulab.v1 import molecule_pb2

__all__ = ["register"]

_NOTATIONS = ("auto", "smiles", "selfies", "inchi")
_MAX_ID = 256  # ParseMoleculeRequest.id's limit


def _records(answer: molecule_pb2.ParseMoleculeResponse) -> list[dict[str, object]]:
    m = answer.molecule
    return [
        {
            "canonical_smiles": m.canonical_smiles,
            "formula": m.formula,
            "average_mass": m.average_mass,
            "monoisotopic_mass": m.monoisotopic_mass,
            "formal_charge": m.formal_charge,
            "num_atoms": m.num_atoms,
            "num_heavy_atoms": m.num_heavy_atoms,
            "num_bonds": m.num_bonds,
            "num_rings": m.num_rings,
            "num_aromatic_rings": m.num_aromatic_rings,
            "num_stereocenters": m.num_stereocenters,
            "inchikey": m.inchikey,
            "inchi": m.inchi,
            "selfies": m.selfies,
            "warnings": join(list(m.warnings)),
        }
    ]


def _human(answer: molecule_pb2.ParseMoleculeResponse) -> list[str]:
    m = answer.molecule
    line = f"{m.canonical_smiles}  {m.formula}  {m.average_mass:.3f} Da  {m.inchikey}".rstrip()
    notes = [*m.warnings, *(f"{p.type}: {p.message}" for p in m.problems)]
    return [f"{line}  ({join(notes)})" if notes else line]


VIEW: View[molecule_pb2.ParseMoleculeResponse] = View(
    columns=tuple(_records(molecule_pb2.ParseMoleculeResponse())[0]),
    records=_records,
    human=_human,
)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = commands.add_parser(
        "molecule",
        parents=[common],
        help="parse molecules: SMILES, SELFIES or InChI, or files of them",
        description="Parse molecules given on the command line or in files: .smi (SMILES "
        "and an optional name per line), .csv/.tsv (a column named smiles, selfies or inchi, "
        "or --column), .mol, .sdf; any of them .gz; - reads SMILES lines from stdin. Files "
        "stream through ParseMolecules; a molecule that fails is reported with its line and "
        "the run goes on.",
    )
    parser.add_argument("inputs", nargs="+", metavar="MOLECULE|FILE", help="a molecule or a file")
    parser.add_argument(
        "--notation",
        choices=_NOTATIONS,
        default="auto",
        help="how to read the text (auto: InChI when it starts with 'InChI=', SELFIES or "
        "InChI for a CSV column of that name, SMILES otherwise)",
    )
    parser.add_argument("--column", metavar="NAME", help="the CSV column holding the molecules")
    parser.add_argument(
        "--id-column", metavar="NAME", help="the CSV column naming them (default: id or name)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="refuse molecules RDKit has problems with"
    )
    parser.add_argument(
        "--no-sanitize", action="store_true", help="read without RDKit's sanitization"
    )
    parser.add_argument("--kekulize", action="store_true", help="write `smiles` in Kekulé form")
    add_output_flags(parser, tensors=False)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> ExitCode:
    output_format(args)  # a bad --format or --output stops the run before any call
    sources = molecule_sources(args.inputs, column=args.column, id_column=args.id_column)
    options = molecule_pb2.ParseOptions(strict=args.strict, kekulize=args.kekulize)
    if args.no_sanitize:
        options.sanitize = False
    progress = show_progress(args)
    total = _total(sources) if progress else None
    with connect(args) as client:
        require_serving(client, timeout_of(args))
        sink, close = open_sink(args, VIEW)
        reporter = Reporter(show_progress=progress, total=total, unit="molecules")
        outcomes = stream_molecules(client.parse_molecules, _requests(sources, args, options))
        return run_batch(
            outcomes,
            sink,
            close,
            reporter,
            summary=any(s.is_file for s in sources),
            destination=args.output,
        )


def _total(sources: list[MoleculeSource]) -> int | None:
    total = 0
    for source in sources:
        count = source.count() if source.is_file else 1
        if count is None:
            return None
        total += count
    return total


def _requests(
    sources: list[MoleculeSource], args: argparse.Namespace, options: molecule_pb2.ParseOptions
) -> Iterator[tuple[Item, molecule_pb2.ParseMoleculeRequest]]:
    for source in sources:
        for item in source.items():
            notation = args.notation
            if source.notation == "molfile" or (notation == "auto" and source.notation):
                notation = source.notation
            elif notation == "auto":
                notation = "inchi" if item.input.startswith("InChI=") else "smiles"
            request = molecule_pb2.ParseMoleculeRequest(id=item.id[:_MAX_ID], options=options)
            setattr(request, notation, item.input)
            yield item, request
