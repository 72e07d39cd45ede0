"""VASP POSCAR / CONTCAR text to `CellContents`, with a small hand-written grammar.

The grammar, line by line (1-based; tokens are split on any whitespace, so tabs are fine;
CRLF and lone CR line ends read as LF; text after the fields a line needs is ignored):

    comment                       free text, the structure's name
    scale                         s > 0 (factor) | -V (target volume) | sx sy sz (all > 0)
    a1x a1y a1z                   three lattice vectors, rows, in units of the scale
    a2x a2y a2z
    a3x a3y a3z
    [species ...]                 VASP 5+: element symbols or POTCAR names ("Fe_pv",
                                  "Fe_pv/8b1a27f3"); may wrap over lines and repeat
    counts ...                    one non-negative integer per species; may wrap likewise
    [S...]                        "Selective dynamics" (only the first character counts)
    C... | K... | other           Cartesian, or else Direct (only the first character counts)
    x y z [f f f] [...]           one line per atom; the flags only with selective dynamics
    [L...                         NpT CONTCAR: "Lattice velocities and vectors", an
     1 + 3 + 3 lines]             initialisation line, lattice velocities, lattice (skipped)
    [blank | C... | D...          velocities header: blank or C/K is Cartesian, else Direct
     vx vy vz  (one per atom)]    velocities in Å/fs
    [...]                         predictor-corrector block of an MD CONTCAR (ignored)

Choices, where readers in the wild disagree:

- A VASP 4 file (no species line) takes its elements from the caller's `species`, else only
  from an unambiguous source in the file: an element symbol after the coordinates of every
  atom, constant within each count block, or a comment line made of exactly one element
  symbol per count. These two inferred sources must be in standard capitalization ("Fe"),
  since they are guesses; the species line and `species` may be in any case. Elements are
  never invented (pymatgen would name them H, He, Li, ...).
- Cartesian positions take the same scale as the lattice: the factor, the factor found from a
  target volume, or the three factors applied to x, y and z. Velocities are never scaled.
- A line of numbers where the Direct/Cartesian line belongs, or right after the last atom,
  is refused as a count mismatch instead of being silently consumed or dropped.
- Velocities are kept only when a full block of one finite triple per atom follows the
  positions, all-zero blocks included; anything after them is ignored.

Every error is `refuse(...)` (InvalidArgument, field "content" unless it is about
`options.species`) with the 1-based line and a description of what was expected and found.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from qulab.server.domain._crystal import CellContents, StructureLimits, element_number, refuse
from qulab.server.errors import InvalidArgument
from qulab.v1 import structure_pb2

__all__ = ["looks_like_poscar", "read_poscar"]

Floats = npt.NDArray[np.float64]

_LIMIT_EXCEEDED: Final = "LIMIT_EXCEEDED"
_SPECIES_FIELD: Final = "options.species"
_MIN_VOLUME: Final = 1e-8  # Å³; below it the lattice vectors are taken as coplanar
_MAX_ECHO: Final = 40
# More digits than any sane count has; longer digit strings are refused before `int()`,
# which would otherwise spend quadratic time (or raise) on them.
_MAX_COUNT_DIGITS: Final = 12
_FLAGS: Final = {
    "t": True,
    "f": False,
    ".t.": True,
    ".f.": False,
    "true": True,
    "false": False,
    ".true.": True,
    ".false.": False,
}
_EOL: Final = re.compile(r"\r\n?|\n")
_NUMBER_START: Final = frozenset("+-.0123456789")


def looks_like_poscar(text: str) -> bool:
    """Cheap sniff for format detection: line 2 is one or three numbers and lines 3-5 are
    three numbers each."""
    head = _EOL.split(text, maxsplit=5)
    if len(head) < 5:
        return False
    return len(_leading_numbers(head[1], 4)) in (1, 3) and all(
        len(_leading_numbers(line, 3)) == 3 for line in head[2:5]
    )


def read_poscar(text: str, species: Sequence[str], limits: StructureLimits) -> CellContents:
    """Read a POSCAR or CONTCAR (VASP 4, 5 or 6 variant) into a P 1 cell.

    `species` names the elements of a VASP 4 file, one per count; when the file has its own
    species line they must agree with it. Raises `InvalidArgument` (via `refuse`) with the
    line number for anything that cannot be read, and with reason LIMIT_EXCEEDED when the
    text or the atom count is over `limits`.
    """
    if len(text) > limits.max_bytes:
        # Characters never outnumber UTF-8 bytes, so this refuses nothing within the limit.
        raise refuse(
            f"the POSCAR has {len(text)} characters, over the limit of {limits.max_bytes} bytes",
            reason=_LIMIT_EXCEEDED,
        )
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        raise refuse(
            "line 1: expected a POSCAR (comment, scale, three lattice vectors, counts, "
            "coordinates), found empty text",
            line=1,
        )
    scale = _scale(lines)
    written = np.array(
        [_floats(lines, i, 3, "a lattice vector (three numbers)") for i in (2, 3, 4)]
    )
    lattice, position_scale = _apply_scale(written, scale)

    names, counts, at = _species_and_counts(lines, species, limits)
    total = sum(counts)
    selective, cartesian, at = _modes(lines, at)
    width = 6 if selective else 3
    positions, flags = _coordinates(lines, at, total, width, counts)
    after = at + total

    if not names:
        names = _infer_species(lines, at, width, counts)

    velocities = _velocities(lines, after, total, counts, lattice)
    if cartesian:
        fractional = (positions * position_scale) @ np.linalg.inv(lattice)
        if not np.isfinite(fractional).all():
            raise refuse("line 3: the lattice cannot convert the Cartesian positions", line=3)
    else:
        fractional = positions

    elements: list[str] = []
    labels: list[str] = []
    seen: dict[str, int] = {}
    for symbol, count in zip(names, counts, strict=True):
        first = seen.get(symbol, 0)
        elements.extend([symbol] * count)
        labels.extend([f"{symbol}{k}" for k in range(first + 1, first + count + 1)])
        seen[symbol] = first + count
    return CellContents(
        name=lines[0].strip(),
        source_format=structure_pb2.STRUCTURE_FORMAT_POSCAR,
        lattice=lattice,
        labels=labels,
        elements=elements,
        occupancies=np.ones(total),
        fractional=fractional,
        selective_dynamics=flags,
        velocities=velocities,
    )


def _listed(counts: list[int]) -> str:
    shown = " ".join(map(str, counts[:12]))
    return shown + " ..." if len(counts) > 12 else shown


def _echo(text: str) -> str:
    shown = text.strip()
    return repr(shown if len(shown) <= _MAX_ECHO else shown[:_MAX_ECHO] + "...")


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        pass
    # Fortran writes double-precision exponents with D ("1.0D-03").
    if "d" in token or "D" in token:
        try:
            return float(token.replace("D", "E").replace("d", "e"))
        except ValueError:
            return None
    return None


def _leading_numbers(line: str, most: int) -> list[float]:
    values: list[float] = []
    for token in line.split(None, most)[:most]:
        value = _number(token)
        if value is None:
            break
        values.append(value)
    return values


def _line(lines: list[str], index: int, expected: str) -> str:
    if index >= len(lines):
        raise refuse(
            f"line {index + 1}: expected {expected}, found the end of the file", line=index + 1
        )
    return lines[index]


def _floats(lines: list[str], index: int, count: int, expected: str) -> list[float]:
    line = _line(lines, index, expected)
    values = _leading_numbers(line, count)
    if len(values) < count:
        raise refuse(f"line {index + 1}: expected {expected}, found {_echo(line)}", line=index + 1)
    if not all(map(math.isfinite, values)):
        raise refuse(
            f"line {index + 1}: expected {expected}, found a non-finite number in {_echo(line)}",
            line=index + 1,
        )
    return values


def _scale(lines: list[str]) -> list[float]:
    expected = "one scale factor, or three (x, y, z)"
    line = _line(lines, 1, expected)
    values = _leading_numbers(line, 4)
    if len(values) not in (1, 3):
        raise refuse(f"line 2: expected {expected}, found {_echo(line)}", line=2)
    if not all(map(math.isfinite, values)):
        raise refuse(f"line 2: expected {expected}, found {_echo(line)}", line=2)
    if len(values) == 3 and min(values) <= 0:
        raise refuse(
            f"line 2: three scale factors must all be positive, found {_echo(line)}", line=2
        )
    if values[0] == 0:
        raise refuse("line 2: expected a non-zero scale factor, found 0", line=2)
    return values


def _det(matrix: Floats) -> float:
    (a, b, c), (d, e, f), (g, h, i) = matrix.tolist()
    return float(a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g))


def _apply_scale(written: Floats, scale: list[float]) -> tuple[Floats, Floats | float]:
    """The lattice in Å and the factor (scalar or per axis) Cartesian positions take."""
    factor: Floats | float
    if len(scale) == 3:
        factor = np.array(scale)
    elif scale[0] > 0:
        factor = scale[0]
    else:
        volume = abs(_det(written))
        if volume < _MIN_VOLUME:
            raise refuse(
                f"line 3: the lattice vectors (lines 3-5) span no volume (|det| = {volume:.3g}), "
                f"so the target volume {-scale[0]:g} on line 2 cannot set the scale",
                line=3,
            )
        factor = (-scale[0] / volume) ** (1.0 / 3.0)
    # Three factors multiply the x, y and z components, i.e. the columns.
    lattice = written * factor
    volume = abs(_det(lattice))
    if not math.isfinite(volume) or volume < _MIN_VOLUME:
        raise refuse(
            f"line 3: expected three independent lattice vectors (lines 3-5), found a cell "
            f"of volume {volume:.3g} Å³",
            line=3,
        )
    return lattice, factor


def _tokens(lines: list[str], index: int, expected: str, limits: StructureLimits) -> list[str]:
    """The tokens of a species or counts line up to a "!" or "#" comment, bounded in number
    so a hostile line cannot make millions of strings."""
    most = limits.max_sites + 1
    tokens = _line(lines, index, expected).split(None, most)
    if len(tokens) > most:
        raise refuse(
            f"line {index + 1}: expected {expected}, found more than {most} entries",
            line=index + 1,
            reason=_LIMIT_EXCEEDED,
        )
    for k, token in enumerate(tokens):
        if token[0] in "!#":
            return tokens[:k]
    return tokens


def _is_count(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _element(token: str) -> str | None:
    """Canonical symbol of an element symbol in any case, "H" for D and T."""
    number = element_number(token)
    if number == 0:
        return None
    return "H" if number == 1 else token.capitalize()


def _species_and_counts(
    lines: list[str], species: Sequence[str], limits: StructureLimits
) -> tuple[list[str], list[int], int]:
    """(element per count, or [] for a VASP 4 file without `species`; counts; index of the
    line after the counts)."""
    expected = "the species line or the counts line"
    tokens = _tokens(lines, 5, expected, limits)
    if not tokens:
        raise refuse(f"line 6: expected {expected}, found {_echo(lines[5])}", line=6)
    names: list[str] = []
    at = 5
    file_species = not _is_count(tokens[0])
    if file_species:
        while not _is_count(tokens[0]):
            for token in tokens:
                # POTCAR names: "Fe_pv", and since VASP 6.4 "Fe_pv/<hash>".
                symbol = _element(token.split("/", 1)[0].split("_", 1)[0])
                if symbol is None:
                    raise refuse(
                        f"line {at + 1}: expected element symbols (or POTCAR names such as "
                        f"'Fe_pv'), found {_echo(token)}",
                        line=at + 1,
                    )
                names.append(symbol)
            if len(names) > limits.max_sites:
                raise refuse(
                    f"line {at + 1}: more than {limits.max_sites} species",
                    line=at + 1,
                    reason=_LIMIT_EXCEEDED,
                )
            at += 1
            tokens = _tokens(lines, at, "the counts line", limits)
            if not tokens:
                raise refuse(
                    f"line {at + 1}: expected the counts line, found {_echo(lines[at])}",
                    line=at + 1,
                )
    counts: list[int] = []
    while True:
        for token in tokens:
            if not _is_count(token):
                raise refuse(
                    f"line {at + 1}: expected atom counts (non-negative integers), found "
                    f"{_echo(token)}",
                    line=at + 1,
                )
            if len(token.lstrip("0")) > _MAX_COUNT_DIGITS:
                raise refuse(
                    f"line {at + 1}: count {token[:20]}... is over the limit of "
                    f"{limits.max_sites} atoms",
                    line=at + 1,
                    reason=_LIMIT_EXCEEDED,
                )
            counts.append(int(token))
        at += 1
        if not file_species or len(counts) >= len(names):
            break
        tokens = _tokens(lines, at, f"{len(names) - len(counts)} more counts", limits)
        if not tokens:
            raise refuse(
                f"line {at + 1}: expected {len(names)} counts (one per species), found "
                f"{len(counts)} and then {_echo(lines[at])}",
                line=at + 1,
            )
    if file_species and len(counts) != len(names):
        raise refuse(
            f"line {at}: expected {len(names)} counts (one per species "
            f"{' '.join(names)}), found {len(counts)}",
            line=at,
        )
    total = sum(counts)
    if total > limits.max_sites:
        raise refuse(
            f"line {at}: the counts add up to {total} atoms, over the limit of {limits.max_sites}",
            line=at,
            reason=_LIMIT_EXCEEDED,
        )
    if total == 0:
        raise refuse(f"line {at}: expected at least one atom, the counts add up to 0", line=at)
    if species:
        given = _given_species(species, counts)
        if file_species and given != names:
            raise refuse(
                f"options.species ({' '.join(given)}) differs from the species line on "
                f"line 6 ({' '.join(names)})",
                field_name=_SPECIES_FIELD,
                line=6,
            )
        names = given
    return names, counts, at


def _given_species(species: Sequence[str], counts: list[int]) -> list[str]:
    names: list[str] = []
    for token in species:
        symbol = _element(token)
        if symbol is None:
            raise refuse(
                f"options.species: {_echo(token)} is not an element symbol",
                field_name=_SPECIES_FIELD,
            )
        names.append(symbol)
    if len(names) != len(counts):
        raise refuse(
            f"expected one element in options.species per count ({len(counts)} counts: "
            f"{_listed(counts)}), found {len(names)}",
            field_name=_SPECIES_FIELD,
        )
    return names


def _modes(lines: list[str], at: int) -> tuple[bool, bool, int]:
    """(selective dynamics, Cartesian, index of the first coordinate line)."""
    expected = "'Selective dynamics', 'Direct' or 'Cartesian'"
    first = _line(lines, at, expected).lstrip()[:1]
    selective = first in ("s", "S")
    if selective:
        at += 1
        expected = "'Direct' or 'Cartesian'"
        first = _line(lines, at, expected).lstrip()[:1]
    if not first or first in _NUMBER_START:
        # VASP would read this line as the mode and the next as the first atom: refusing
        # says where the file is short instead of failing later on the wrong line.
        found = "an empty line" if not first else f"{_echo(lines[at])} (a missing mode line?)"
        raise refuse(f"line {at + 1}: expected {expected}, found {found}", line=at + 1)
    return selective, first in "cCkK", at + 1


def _count_mismatch(line: int, total: int, counts: list[int], found: int) -> InvalidArgument:
    return refuse(
        f"line {line}: expected {total} coordinate lines (counts {_listed(counts)}), found {found}",
        line=line,
    )


def _coordinates(
    lines: list[str], at: int, total: int, width: int, counts: list[int]
) -> tuple[Floats, npt.NDArray[np.bool_] | None]:
    """Positions as written and the selective dynamics flags (None without them)."""
    block = lines[at : at + total]
    if len(block) == total:
        rows = [line.split(None, width) for line in block]
        try:
            positions = np.array([row[:3] for row in rows], dtype=np.float64)
            flags = (
                np.array([[_FLAGS[f.lower()] for f in row[3:6]] for row in rows], dtype=bool)
                if width == 6
                else None
            )
        except (ValueError, KeyError):
            pass
        else:
            if (
                positions.shape == (total, 3)
                and (flags is None or flags.shape == (total, 3))
                and np.isfinite(positions).all()
            ):
                return positions, flags
    # The fast path only says that something is unusual; go line by line to read what
    # numpy would not (Fortran "D" exponents) or to say what is wrong, and where.
    return _coordinates_by_line(lines, at, total, width, counts)


def _coordinates_by_line(
    lines: list[str], at: int, total: int, width: int, counts: list[int]
) -> tuple[Floats, npt.NDArray[np.bool_] | None]:
    positions = np.empty((total, 3))
    flags = np.empty((total, 3), dtype=bool) if width == 6 else None
    for atom in range(total):
        index = at + atom
        if index >= len(lines):
            raise _count_mismatch(len(lines), total, counts, atom)
        line = lines[index]
        parts = line.split(None, width)
        if not parts or _number(parts[0]) is None:
            raise _count_mismatch(index + 1, total, counts, atom)
        values = _leading_numbers(line, 3)
        if len(values) < 3:
            raise refuse(
                f"line {index + 1}: expected three numbers (x y z) for atom {atom + 1} of "
                f"{total}, found {_echo(line)}",
                line=index + 1,
            )
        if not all(map(math.isfinite, values)):
            raise refuse(
                f"line {index + 1}: expected finite coordinates for atom {atom + 1}, found "
                f"{_echo(line)}",
                line=index + 1,
            )
        positions[atom] = values
        if flags is not None:
            marks = [_FLAGS.get(flag.lower()) for flag in parts[3:6]]
            if len(marks) < 3 or None in marks:
                raise refuse(
                    f"line {index + 1}: expected three selective dynamics flags (T or F) "
                    f"after the coordinates of atom {atom + 1}, found {_echo(line)}",
                    line=index + 1,
                )
            flags[atom] = marks
    return positions, flags


def _infer_species(lines: list[str], at: int, width: int, counts: list[int]) -> list[str]:
    """Elements of a VASP 4 file from the file alone, or a refusal asking for them."""
    from_labels = _species_from_labels(lines[at : at + sum(counts)], width, counts)
    # Split at most once per count: a huge comment line must not become a huge list.
    comment = lines[0].split(None, len(counts))
    from_comment = None
    if len(comment) == len(counts) and all(_element(w) == w for w in comment):
        from_comment = comment
    if from_labels and from_comment and from_labels != from_comment:
        raise refuse(
            f"line 6: this VASP 4 POSCAR has no species line, and its atom labels "
            f"({' '.join(from_labels)}) and comment line ({' '.join(from_comment)}) name "
            f"different elements: pass options.species (one element per count)",
            line=6,
        )
    found = from_labels or from_comment
    if found is None:
        raise refuse(
            f"line 6: this VASP 4 POSCAR has no species line and does not name its elements "
            f"unambiguously: pass options.species (one element symbol per count, "
            f"{len(counts)} for counts {_listed(counts)})",
            line=6,
        )
    return found


def _species_from_labels(block: list[str], width: int, counts: list[int]) -> list[str] | None:
    """One element per count block when every atom line carries the same element symbol
    (in standard capitalization) after its coordinates (and flags)."""
    names: list[str] = []
    start = 0
    for count in counts:
        if count == 0:
            return None
        symbols = set()
        for line in block[start : start + count]:
            parts = line.split(None, width + 1)
            if len(parts) <= width:
                return None
            symbols.add(parts[width])
        start += count
        if len(symbols) != 1:
            return None
        symbol = symbols.pop()
        if _element(symbol) != symbol:
            return None
        names.append(symbol)
    return names


def _velocities(
    lines: list[str], at: int, total: int, counts: list[int], lattice: Floats
) -> Floats | None:
    if at >= len(lines):
        return None
    head = lines[at].strip()
    if len(_leading_numbers(head, 3)) == 3:
        raise refuse(
            f"line {at + 1}: expected {total} coordinate lines (counts "
            f"{_listed(counts)}), found more",
            line=at + 1,
        )
    if head[:1] in _NUMBER_START:
        # A predictor-corrector block without velocities before it starts with a number.
        return None
    if head[:1] in ("l", "L"):
        # "Lattice velocities and vectors": an initialisation line, the lattice velocities
        # and the lattice (3 lines each), then the velocities header.
        at += 8
        if at >= len(lines):
            return None
        head = lines[at].strip()
    block = lines[at + 1 : at + 1 + total]
    if len(block) < total:
        return None
    try:
        velocities = np.array([line.split(None, 3)[:3] for line in block], dtype=np.float64)
    except ValueError:
        return None
    if velocities.shape != (total, 3):
        return None
    finite = np.isfinite(velocities).all(axis=1)
    if not finite.all():
        index = at + 2 + int(np.argmin(finite))
        raise refuse(
            f"line {index}: expected finite velocities, found {_echo(lines[index - 1])}", line=index
        )
    if head[:1] and head[0] not in "cCkK":
        # Direct velocities are fractions of the cell vectors per fs.
        return velocities @ lattice
    return velocities
