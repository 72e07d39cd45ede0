"""Reading one molecule from text: the single path every notation and every RPC takes.

`read_molecule` checks the text against the limits, hands it to RDKit (after selfies for
SELFIES), and turns RDKit's silence-and-log failure style into `InvalidArgument` with the
field path, RDKit's own reason and, where RDKit gives one, a position or line.

Reasons (ErrorInfo.reason and BadRequest.FieldViolation.reason) raised here:
    LIMIT_EXCEEDED        over a `MoleculeLimits` bound
    VALUE_OUT_OF_RANGE    an isotope or charge RDKit would silently change
    MISSING_INPUT         no notation set in the `input` oneof
    INVALID_SMILES, INVALID_SELFIES, INVALID_INCHI, INVALID_MOLFILE
                          RDKit (or selfies) cannot read the text
    CHEMISTRY_PROBLEM     the text reads but sanitization fails (valence, kekulization),
                          or `strict` is set and RDKit detects a problem
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from typing import Any, Final

import selfies
from rdkit import Chem
from rdkit.Chem import rdinchi

from qulab.server.domain._molecule_limits import (
    MoleculeLimits,
    check_atom_count,
    check_inchi_text,
    check_molfile_text,
    check_selfies_text,
    check_smiles_text,
)
from qulab.server.domain._rdkit_log import rdkit_log
from qulab.server.domain.options import ParseSettings
from qulab.server.errors import FieldViolation, InvalidArgument
from qulab.v1 import molecule_pb2

__all__ = [
    "CHEMISTRY_PROBLEM",
    "KINDS",
    "MISSING_INPUT",
    "Reading",
    "describe_failure",
    "input_of",
    "read_molecule",
]

KINDS: Final = ("smiles", "selfies", "inchi", "molfile")
_NAMES: Final = {"smiles": "SMILES", "selfies": "SELFIES", "inchi": "InChI", "molfile": "Molfile"}
MISSING_INPUT = "MISSING_INPUT"
CHEMISTRY_PROBLEM = "CHEMISTRY_PROBLEM"

_POSITION = re.compile(r"check for mistakes around position (\d+)")
_LINE = re.compile(r"on line (\d+)|\(line: (\d+)\)")
# Lines of RDKit's log that repeat the input or locate the failure in RDKit's own sources.
_NOISE_PREFIXES = ("Failed parsing SMILES", "Violation occurred on line", "****", "----")
_MAX_DESCRIPTION = 500
_MAX_ECHO = 64


@dataclass(slots=True)
class Reading:
    """A molecule read from text, with what RDKit had to say about it."""

    mol: Any
    """The RDKit molecule: sanitized, or (with `sanitize` off) with its property cache and
    ring information computed leniently."""
    problems: list[molecule_pb2.ChemistryProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def input_of(
    message: molecule_pb2.ParseMoleculeRequest | molecule_pb2.MoleculeInput, *, prefix: str = ""
) -> tuple[str, str]:
    """The notation set in a message's `input` oneof and its text. `prefix` is the field
    path of the message in its request (e.g. "molecules[3].")."""
    kind = message.WhichOneof("input")
    if kind is None:
        raise InvalidArgument(
            FieldViolation(
                field=f"{prefix}input" if prefix else "input",
                description=f"no molecule given: set one of {', '.join(KINDS)}",
                reason=MISSING_INPUT,
            )
        )
    return kind, getattr(message, kind)


@functools.lru_cache(maxsize=4)
def _smiles_params(sanitize: bool, remove_hydrogens: bool) -> Any:
    # Typed as Any: RDKit's generated stubs give its attributes the wrong types.
    params: Any = Chem.SmilesParserParams()
    params.sanitize = sanitize
    params.removeHs = remove_hydrogens
    return params


def _parse(kind: str, text: str, sanitize: bool, remove_hydrogens: bool) -> tuple[Any, str]:
    """RDKit's reader for `kind` (SELFIES arrive decoded to SMILES): the molecule or None,
    and the InChI library's message (empty for the other notations)."""
    if kind == "inchi":
        try:
            mol, _, message, inchi_log = rdinchi.InchiToMol(text, sanitize, remove_hydrogens)
        except ValueError as exc:
            return None, str(exc)
        if not message and mol is None:
            message = next((ln for ln in reversed(inchi_log.splitlines()) if ln.strip()), "")
        return mol, message.strip()
    if kind == "molfile":
        return (
            Chem.MolFromMolBlock(
                text, sanitize=sanitize, removeHs=remove_hydrogens, strictParsing=True
            ),
            "",
        )
    return Chem.MolFromSmiles(text, _smiles_params(sanitize, remove_hydrogens)), ""


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_ECHO else f"{text[:24]}… ({len(text)} characters)"


def describe_failure(lines: list[str], text: str = "") -> str:
    """RDKit's log lines about one failure, as one line: prefixes, the echoed input with
    its caret marker, and stack traces removed; a long input shortened where echoed."""
    kept: list[str] = []
    skip = 0
    for raw in lines:
        if skip:
            skip -= 1
            continue
        line = raw.strip().removeprefix("SMILES Parse Error: ")
        if line.startswith("check for mistakes around position"):
            skip = 2  # the echoed input and the "~~~^" under it
            continue
        if line.startswith("Stacktrace:"):
            break
        if not line or line.startswith(_NOISE_PREFIXES) or line in kept:
            continue
        kept.append(line)
    summary = "; ".join(kept)
    if text and len(text) > _MAX_ECHO:
        summary = summary.replace(text, _shorten(text))
    if len(summary) > _MAX_DESCRIPTION:
        summary = summary[: _MAX_DESCRIPTION - 1] + "…"
    return summary


def _problem(found: Any) -> molecule_pb2.ChemistryProblem:
    # Valence problems name one atom, kekulization problems a set of atoms.
    if hasattr(found, "GetAtomIndices"):
        atoms = list(found.GetAtomIndices())
    elif hasattr(found, "GetAtomIdx"):
        atoms = [found.GetAtomIdx()]
    else:
        atoms = []
    return molecule_pb2.ChemistryProblem(
        type=found.GetType(), message=found.Message(), atom_indices=atoms
    )


def _prepare_unsanitized(mol: Any, warnings: list[str]) -> list[molecule_pb2.ChemistryProblem]:
    """Compute what later steps need without sanitizing, and list RDKit's complaints."""
    try:
        # The problems come back as objects; RDKit's log lines about them would repeat them.
        with rdkit_log():
            mol.UpdatePropertyCache(strict=False)
            # The ring perception sanitization uses, so num_rings means the same thing.
            Chem.GetSymmSSSR(mol)
            return [_problem(found) for found in Chem.DetectChemistryProblems(mol)]
    except (RuntimeError, ValueError) as exc:
        warnings.append(f"RDKit could not check the unsanitized molecule: {exc}")
        return []


def _problem_violations(
    problems: list[molecule_pb2.ChemistryProblem], field_path: str
) -> list[FieldViolation]:
    return [
        FieldViolation(
            field=field_path, description=f"{p.type}: {p.message}", reason=CHEMISTRY_PROBLEM
        )
        for p in problems
    ]


def _reader_of(kind: str) -> str:
    return "smiles" if kind == "selfies" else kind


def _unreadable(
    kind: str,
    text: str,
    settings: ParseSettings,
    log: list[str],
    message: str,
    field_path: str,
) -> InvalidArgument:
    """The error for text RDKit returned no molecule for: a chemistry problem when the
    text reads without sanitization, else a syntax error with RDKit's reason. For a
    SELFIES, `text` is the SMILES it decodes to."""
    if settings.sanitize:
        with rdkit_log():
            lenient, _ = _parse(_reader_of(kind), text, False, settings.remove_hydrogens)
        if lenient is not None:
            problems = _prepare_unsanitized(lenient, [])
            if problems:
                return InvalidArgument(*_problem_violations(problems, field_path))
    reason = describe_failure(log, text) or message or f"RDKit cannot read this {_NAMES[kind]}"
    if message and message not in reason:
        reason = f"{message}; {reason}"
    position = line = None
    if kind == "smiles":
        found = next((m for m in map(_POSITION.search, log) if m), None)
        # RDKit counts from 1; FieldViolation.position counts from 0.
        position = int(found.group(1)) - 1 if found else None
    elif kind == "molfile":
        found = next((m for m in map(_LINE.search, log) if m), None)
        line = int(found.group(1) or found.group(2)) if found else None
    if kind == "selfies":
        reason = f"it decodes to the SMILES {_shorten(text)!r}, which RDKit cannot read: {reason}"
    return InvalidArgument(
        FieldViolation(
            field=field_path,
            description=reason,
            reason=f"INVALID_{kind.upper()}",
            position=position,
            line=line,
        )
    )


def _decode_selfies(text: str, limits: MoleculeLimits, field_path: str) -> str:
    check_selfies_text(text, limits, field=field_path)
    try:
        smiles: str = selfies.decoder(text)
    except selfies.DecoderError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else "cannot decode"
        raise InvalidArgument(
            FieldViolation(field=field_path, description=first_line, reason="INVALID_SELFIES")
        ) from exc
    if not smiles:
        raise InvalidArgument(
            FieldViolation(
                field=field_path,
                description="the SELFIES decodes to no atoms",
                reason="INVALID_SELFIES",
            )
        )
    try:
        check_smiles_text(smiles, limits, field=field_path, what="SMILES the SELFIES decodes to")
    except InvalidArgument as exc:
        # A position would point into the decoded SMILES, not into the text the caller sent.
        raise InvalidArgument(*(replace(v, position=None) for v in exc.violations)) from None
    return smiles


def read_molecule(
    kind: str, text: str, settings: ParseSettings, limits: MoleculeLimits, *, field_path: str
) -> Reading:
    """Read one molecule written in notation `kind` (one of `KINDS`).

    Raises `InvalidArgument` naming `field_path` when the text is over a limit, cannot be
    read, fails sanitization, or (with `strict`) has a chemistry problem. A SMILES error
    carries `position`, the 0-based character offset RDKit points at (RDKit itself reports
    it 1-based); a Molfile error carries `line` (1-based) when RDKit names one.
    """
    if kind == "smiles":
        check_smiles_text(text, limits, field=field_path)
        parsed = text
    elif kind == "selfies":
        parsed = _decode_selfies(text, limits, field_path)
    elif kind == "inchi":
        check_inchi_text(text, limits, field=field_path)
        parsed = text
    elif kind == "molfile":
        check_molfile_text(text, limits, field=field_path)
        parsed = text
    else:
        raise ValueError(f"unknown molecule notation {kind!r}")
    with rdkit_log() as log:
        mol, message = _parse(
            _reader_of(kind), parsed, settings.sanitize, settings.remove_hydrogens
        )
    if mol is None:
        raise _unreadable(kind, parsed, settings, log, message, field_path)
    check_atom_count(mol.GetNumAtoms(), limits, field=field_path)
    reading = Reading(mol=mol)
    if message:
        reading.warnings.append(f"InChI: {message}")
    reading.warnings.extend(line for line in (ln.strip() for ln in log) if line)
    if not settings.sanitize:
        reading.problems = _prepare_unsanitized(mol, reading.warnings)
        if reading.problems and settings.strict:
            raise InvalidArgument(*_problem_violations(reading.problems, field_path))
    return reading
