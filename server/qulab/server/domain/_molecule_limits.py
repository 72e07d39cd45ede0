"""Bounds on molecule inputs, checked on the raw text before RDKit or selfies see it.

The bounds exist because the libraries fail badly past them: RDKit segfaults on a chain
of 20,000 carbons or on branches nested 20,000 deep, needs 2.8 GB for a 10,000-atom ring,
and selfies spends minutes on 100,000 tokens. Every check here is a linear scan with
`str` methods or a regular expression without nested quantifiers, so a hostile input costs
no more than reading it. Kept free of RDKit so the server process can import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qulab.server.errors import FieldViolation, InvalidArgument

__all__ = [
    "LIMIT_EXCEEDED",
    "VALUE_OUT_OF_RANGE",
    "MoleculeLimits",
    "check_atom_count",
    "check_inchi_text",
    "check_molfile_text",
    "check_selfies_text",
    "check_smiles_text",
]

LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
VALUE_OUT_OF_RANGE = "VALUE_OUT_OF_RANGE"

# RDKit stores isotopes in 16 bits and charges in 8: `[65536C]` silently becomes `[C]` and
# `[C+200]` becomes `[C-56]`. Values past these are refused rather than corrupted.
_MAX_ISOTOPE = 65_535
_MAX_ABS_CHARGE = 127

# Characters that start an atom outside brackets: the organic subset (Cl and Br start with
# C and B; their second letters are not counted), its aromatic forms, and the wildcard.
_UNBRACKETED_ATOM_STARTS = "BCNOPSFIbcnops*"
# No "[" inside the class: a run of unclosed "[" must not make the scan quadratic.
_BRACKET_ATOM = re.compile(r"\[[^\[\]]*\]")
_ISOTOPE = re.compile(r"\[(\d+)")
_CHARGE = re.compile(r"[+-](\d+)")
_V3000_COUNTS = re.compile(r"M  V30 COUNTS +(\d+)")


@dataclass(frozen=True, slots=True)
class MoleculeLimits:
    """Bounds checked before RDKit or selfies see an input (all inclusive)."""

    max_smiles_length: int = 20_000
    """Characters in a SMILES (also in the SMILES a SELFIES decodes to)."""
    max_atoms: int = 2_000
    """Atoms in one molecule: estimated from the text before parsing (SMILES, SELFIES,
    Molfile counts line) and counted again after parsing (every format)."""
    max_branch_depth: int = 256
    """Nesting depth of `(` in a SMILES (also in the SMILES a SELFIES decodes to)."""
    max_selfies_tokens: int = 5_000
    """Bracketed symbols in a SELFIES."""
    max_inchi_length: int = 20_000
    """Characters in an InChI."""
    max_molfile_bytes: int = 1_048_576
    """Bytes of a Molfile in UTF-8."""


def _exceeded(
    field: str,
    what: str,
    value: int,
    limit_name: str,
    limit: int,
    *,
    position: int | None = None,
    line: int | None = None,
) -> InvalidArgument:
    return InvalidArgument(
        FieldViolation(
            field=field,
            description=f"{what} is {value}, over the limit {limit_name}={limit}",
            reason=LIMIT_EXCEEDED,
            position=position,
            line=line,
        )
    )


def _count_smiles_atoms(smiles: str) -> int:
    # Each bracket atom becomes one "[" so that only unbracketed atoms are left to count.
    collapsed = _BRACKET_ATOM.sub("[", smiles)
    return sum(collapsed.count(start) for start in ("[", *_UNBRACKETED_ATOM_STARTS))


def _deepest_branch(smiles: str, limit: int) -> tuple[int, int]:
    """The deepest `(` nesting and the position of the first `(` past `limit` (or -1)."""
    depth = deepest = 0
    first_over = -1
    for position, char in enumerate(smiles):
        if char == "(":
            depth += 1
            if depth > deepest:
                deepest = depth
                if depth > limit and first_over < 0:
                    first_over = position
        elif char == ")":
            depth -= 1
    return deepest, first_over


def _digits_value(digits: str) -> int:
    # Huge digit strings would hit Python's int-conversion limit; anything past six
    # significant digits is out of every range checked here anyway.
    significant = digits.lstrip("0")
    return int(significant[:7]) if significant else 0


def _check_bracket_values(smiles: str, field: str) -> None:
    for match in _ISOTOPE.finditer(smiles):
        if _digits_value(match.group(1)) > _MAX_ISOTOPE:
            raise InvalidArgument(
                FieldViolation(
                    field=field,
                    description=(
                        f"isotope {match.group(1)} is over {_MAX_ISOTOPE}, the largest mass "
                        "number RDKit can store (it would silently change it)"
                    ),
                    reason=VALUE_OUT_OF_RANGE,
                    position=match.start(),
                )
            )
    for bracket in _BRACKET_ATOM.finditer(smiles):
        for charge in _CHARGE.finditer(bracket.group()):
            if _digits_value(charge.group(1)) > _MAX_ABS_CHARGE:
                raise InvalidArgument(
                    FieldViolation(
                        field=field,
                        description=(
                            f"charge {charge.group()} is beyond ±{_MAX_ABS_CHARGE}, the range "
                            "RDKit can store (it would silently change it)"
                        ),
                        reason=VALUE_OUT_OF_RANGE,
                        position=bracket.start(),
                    )
                )


def check_smiles_text(
    smiles: str, limits: MoleculeLimits, *, field: str, what: str = "SMILES"
) -> None:
    """Refuse a SMILES over the length, atom or branch-depth limits, or with an isotope or
    charge RDKit would silently change. `what` names the text in messages."""
    length = len(smiles)
    if length > limits.max_smiles_length:
        raise _exceeded(
            field, f"{what} length", length, "max_smiles_length", limits.max_smiles_length
        )
    # Every atom takes at least one character, so short text needs no count.
    if length > limits.max_atoms:
        atoms = _count_smiles_atoms(smiles)
        if atoms > limits.max_atoms:
            raise _exceeded(
                field, f"atom count of the {what}", atoms, "max_atoms", limits.max_atoms
            )
    if smiles.count("(") > limits.max_branch_depth:
        depth, position = _deepest_branch(smiles, limits.max_branch_depth)
        if depth > limits.max_branch_depth:
            raise _exceeded(
                field,
                f"branch depth of the {what}",
                depth,
                "max_branch_depth",
                limits.max_branch_depth,
                position=position,
            )
    if "[" in smiles:
        _check_bracket_values(smiles, field)


def _count_selfies_atoms(selfies: str) -> int:
    # A [BranchN] or [RingN] symbol is followed by N symbols read as a number, not atoms.
    atoms = skip = 0
    for symbol in selfies.split("]"):
        if skip:
            skip -= 1
            continue
        body = symbol[symbol.find("[") + 1 :]
        if "Branch" in body or "Ring" in body:
            skip = int(body[-1]) if body[-1:].isdigit() else 0
        elif body and body != "nop":
            atoms += 1
    return atoms


def check_selfies_text(selfies: str, limits: MoleculeLimits, *, field: str) -> None:
    """Refuse a SELFIES with more symbols or (estimated) atoms than the limits allow."""
    tokens = selfies.count("[")
    if tokens > limits.max_selfies_tokens:
        raise _exceeded(
            field, "SELFIES symbol count", tokens, "max_selfies_tokens", limits.max_selfies_tokens
        )
    if tokens > limits.max_atoms:
        atoms = _count_selfies_atoms(selfies)
        if atoms > limits.max_atoms:
            raise _exceeded(
                field, "atom count of the SELFIES", atoms, "max_atoms", limits.max_atoms
            )


def check_inchi_text(inchi: str, limits: MoleculeLimits, *, field: str) -> None:
    """Refuse an InChI longer than the limit."""
    if len(inchi) > limits.max_inchi_length:
        raise _exceeded(
            field, "InChI length", len(inchi), "max_inchi_length", limits.max_inchi_length
        )


def _declared_atoms(molfile: str) -> tuple[int, int] | None:
    """Atom count the counts line declares, and that line's 1-based number, if readable."""
    start = 0
    for _ in range(3):
        start = molfile.find("\n", start) + 1
        if start == 0:
            return None
    end = molfile.find("\n", start)
    counts = molfile[start : end if end >= 0 else len(molfile)]
    if "V3000" in counts:
        match = _V3000_COUNTS.search(molfile, start)
        if match is None:
            return None
        return int(match.group(1)[:9]), molfile.count("\n", 0, match.start()) + 1
    head = counts[:3].strip()
    return (int(head), 4) if head.isdigit() else None


def check_molfile_text(molfile: str, limits: MoleculeLimits, *, field: str) -> None:
    """Refuse a Molfile over the byte limit or whose counts line declares too many atoms."""
    limit = limits.max_molfile_bytes
    # A character is one to four bytes: only the uncertain middle needs encoding.
    if len(molfile) > limit or (
        len(molfile) * 4 > limit and len(molfile.encode("utf-8", "surrogatepass")) > limit
    ):
        size = len(molfile.encode("utf-8", "surrogatepass"))
        raise _exceeded(field, "Molfile size in bytes", size, "max_molfile_bytes", limit)
    declared = _declared_atoms(molfile)
    if declared is not None and declared[0] > limits.max_atoms:
        raise _exceeded(
            field,
            "atom count declared by the Molfile",
            declared[0],
            "max_atoms",
            limits.max_atoms,
            line=declared[1],
        )


def check_atom_count(num_atoms: int, limits: MoleculeLimits, *, field: str) -> None:
    """Refuse a parsed molecule with more atoms than the limit."""
    if num_atoms > limits.max_atoms:
        raise _exceeded(field, "atom count", num_atoms, "max_atoms", limits.max_atoms)
