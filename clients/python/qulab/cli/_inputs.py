"""Reading inputs lazily: molecules from the command line, SMILES files (`.smi`, one per
line, an optional name after whitespace), CSV files (a SMILES, SELFIES or InChI column),
Molfiles and SD files, any of them gzip-compressed; and the files of a folder.

Files are checked (exist, headers found) before the first call, so a usage error stops
the run before anything is sent; their contents are read one item at a time."""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from qulab.cli._common import UsageError
from qulab.cli._output import Item

__all__ = [
    "MoleculeSource",
    "files_in",
    "molecule_sources",
]

_TEXT_SUFFIXES = {".smi", ".smiles", ".ism", ".can", ".txt"}
_CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
_NOTATION_COLUMNS = ("smiles", "selfies", "inchi")
_ID_COLUMNS = ("id", "name")
csv.field_size_limit(64 * 1024 * 1024)  # a CSV cell may hold a long molecule


@dataclass(frozen=True, slots=True)
class MoleculeSource:
    """One command-line argument: a molecule, or a file of them. `notation` is "molfile"
    for Molfiles and SD files, and the column's notation for a CSV whose column names one
    ("smiles", "selfies", "inchi")."""

    items: Callable[[], Iterator[Item]]
    is_file: bool
    notation: str | None = None
    count: Callable[[], int | None] = lambda: None


def molecule_sources(
    arguments: Sequence[str], *, column: str | None, id_column: str | None
) -> list[MoleculeSource]:
    sources: list[MoleculeSource] = []
    for argument in arguments:
        path = Path(argument)
        if argument == "-":
            sources.append(MoleculeSource(_stdin_lines, is_file=True))
        elif path.is_dir():
            raise UsageError(f"{argument} is a folder: name a .smi, .csv, .mol or .sdf file")
        elif path.is_file():
            sources.append(_file_source(path, argument, column, id_column))
        elif _looks_like_a_path(argument):
            raise UsageError(f"no such file: {argument}")
        else:
            literal = Item(source=None, line=None, id="", input=argument)
            sources.append(MoleculeSource(_just(literal), is_file=False))
    return sources


def _stdin_lines() -> Iterator[Item]:
    # A reader of its own on fd 0, not sys.stdin: gRPC's sending thread reads it, and when
    # a failed stream ends the run while that thread waits for input, the interpreter must
    # not find sys.stdin's lock held as it shuts down (a fatal error).
    return _smiles_lines(open(sys.stdin.fileno(), "rb", closefd=False), "-")


def _just(item: Item) -> Callable[[], Iterator[Item]]:
    return lambda: iter([item])


def _looks_like_a_path(argument: str) -> bool:
    """A file name that does not exist, rather than a molecule: SMILES have no file
    suffixes (and use "/" for bonds, so a slash proves nothing)."""
    known = _TEXT_SUFFIXES | set(_CSV_SUFFIXES) | {".mol", ".sdf", ".sd", ".gz"}
    return bool({s.lower() for s in Path(argument).suffixes} & known)


def _file_source(
    path: Path, name: str, column: str | None, id_column: str | None
) -> MoleculeSource:
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    named = suffixes[:-1] if compressed else suffixes  # "x.csv.gz" is read as "x.csv"
    suffix = named[-1] if named else ""

    def open_binary() -> IO[bytes]:
        try:
            return cast(IO[bytes], gzip.open(path, "rb")) if compressed else path.open("rb")
        except OSError as error:
            raise UsageError(f"cannot read {name}: {error.strerror}") from None

    def count(marker: Callable[[bytes], bool]) -> Callable[[], int | None]:
        def counted() -> int | None:
            if compressed:
                return None  # not worth decompressing twice for a progress bar
            with open_binary() as stream:
                return sum(1 for line in stream if marker(line))

        return counted

    if suffix in _CSV_SUFFIXES:
        delimiter = _CSV_SUFFIXES[suffix]
        with _text(open_binary()) as text:
            header = next(csv.reader(text, delimiter=delimiter), [])
        chosen, notation = _choose_column(header, column, name)
        ids = _find_id_column(header, id_column, name)
        return MoleculeSource(
            lambda: _csv_rows(open_binary(), name, delimiter, chosen, ids),
            is_file=True,
            notation=notation,
            count=_minus_header(count(lambda line: bool(line.strip()))),
        )
    if column is not None:
        raise UsageError(f"--column is for CSV files, and {name} is not one")
    if suffix == ".mol":
        return MoleculeSource(
            lambda: _molfile(open_binary(), name), is_file=True, notation="molfile", count=lambda: 1
        )
    if suffix in {".sdf", ".sd"}:
        return MoleculeSource(
            lambda: _sd_records(open_binary(), name),
            is_file=True,
            notation="molfile",
            count=count(lambda line: line.rstrip() == b"$$$$"),
        )
    return MoleculeSource(
        lambda: _smiles_lines(open_binary(), name),
        is_file=True,
        count=count(lambda line: bool(line.strip()) and not line.startswith(b"#")),
    )


def _minus_header(counted: Callable[[], int | None]) -> Callable[[], int | None]:
    def rows() -> int | None:
        lines = counted()
        return None if lines is None else max(lines - 1, 0)

    return rows


def _text(stream: IO[bytes]) -> io.TextIOWrapper:
    # Undecodable bytes become U+FFFD: the server then refuses that one molecule, by line.
    return io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")


def _smiles_lines(stream: IO[bytes], name: str) -> Iterator[Item]:
    """`SMILES [name]` per line; blank lines and `#` comments are skipped, and so is a
    first line that is a header ("smiles name")."""
    with stream:
        for number, raw in enumerate(stream, start=1):
            line = raw.decode("utf-8", errors="replace").strip()
            if not line or line.startswith("#"):
                continue
            text, *label = line.split(None, 1)
            if number == 1 and text.lower() in {"smiles", "smi"}:
                continue
            yield Item(source=name, line=number, id=label[0] if label else "", input=text)


def _choose_column(header: list[str], column: str | None, name: str) -> tuple[int, str | None]:
    folded = [h.strip().lower() for h in header]
    if column is not None:
        if column.lower() not in folded:
            raise UsageError(f"{name} has no column {column!r}; its columns: {_listed(header)}")
        index = folded.index(column.lower())
    else:
        found = [folded.index(n) for n in _NOTATION_COLUMNS if n in folded]
        if not found:
            raise UsageError(
                f"{name} has no SMILES, SELFIES or InChI column (its columns: "
                f"{_listed(header)}): choose one with --column"
            )
        index = found[0]
    return index, folded[index] if folded[index] in _NOTATION_COLUMNS else None


def _find_id_column(header: list[str], id_column: str | None, name: str) -> int | None:
    folded = [h.strip().lower() for h in header]
    if id_column is not None:
        if id_column.lower() not in folded:
            raise UsageError(f"{name} has no column {id_column!r}; its columns: {_listed(header)}")
        return folded.index(id_column.lower())
    return next((folded.index(n) for n in _ID_COLUMNS if n in folded), None)


def _listed(header: list[str]) -> str:
    return ", ".join(repr(h) for h in header) or "none"


def _csv_rows(
    stream: IO[bytes], name: str, delimiter: str, column: int, ids: int | None
) -> Iterator[Item]:
    with _text(stream) as lines:
        reader = csv.reader(lines, delimiter=delimiter)
        next(reader, None)
        for row in reader:
            if not row:
                continue
            text = row[column].strip() if column < len(row) else ""
            label = row[ids].strip() if ids is not None and ids < len(row) else ""
            yield Item(source=name, line=reader.line_num, id=label, input=text)


def _molfile(stream: IO[bytes], name: str) -> Iterator[Item]:
    with stream:
        text = stream.read().decode("utf-8", errors="replace")
    title = text.splitlines()[0].strip() if text else ""
    yield Item(source=name, line=1, id=title, input=text)


def _sd_records(stream: IO[bytes], name: str) -> Iterator[Item]:
    """The records of an SD file, split at `$$$$` lines; each one's title is its id."""
    with stream:
        lines: list[str] = []
        start = 1
        for number, raw in enumerate(stream, start=1):
            line = raw.decode("utf-8", errors="replace")
            if line.rstrip() == "$$$$":
                if any(part.strip() for part in lines):
                    yield _record(name, start, lines)
                lines, start = [], number + 1
            else:
                lines.append(line)
        if any(part.strip() for part in lines):
            yield _record(name, start, lines)


def _record(name: str, start: int, lines: list[str]) -> Item:
    return Item(source=name, line=start, id=lines[0].strip(), input="".join(lines))


def files_in(
    arguments: Sequence[str], wanted: Callable[[Path], bool], kind: str
) -> list[tuple[str, Path]]:
    """(argument, file) for each file argument and each wanted file under each folder
    argument, in sorted order. Only names are held, never contents."""
    found: list[tuple[str, Path]] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and wanted(p))
            if not inside:
                raise UsageError(f"no {kind} files in {argument}")
            found.extend((argument, p) for p in inside)
        elif path.is_file() or argument == "-":
            found.append((argument, path))
        else:
            raise UsageError(f"no such file or folder: {argument}")
    return found
