"""Effective option values for structure requests (the defaults the proto documents, applied
in one place) and the server's bounds on structures. Light to import (no gemmi, no spglib):
servicers use it for provenance."""

from __future__ import annotations

from dataclasses import dataclass

from qulab.v1 import structure_pb2

__all__ = [
    "DEFAULT_OCCUPANCY_TOLERANCE",
    "DEFAULT_SYMMETRY_TOLERANCE",
    "StructureLimits",
    "StructureSettings",
    "structure_parameters",
    "structure_settings",
]

DEFAULT_SYMMETRY_TOLERANCE = 0.01
DEFAULT_OCCUPANCY_TOLERANCE = 0.05


@dataclass(frozen=True, slots=True)
class StructureLimits:
    """Bounds on structure inputs (inclusive)."""

    max_bytes: int = 4 * 1024 * 1024
    """Bytes in one structure file."""
    max_sites: int = 20_000
    """Sites of one structure after symmetry expansion (and atoms in a POSCAR)."""


@dataclass(frozen=True, slots=True)
class StructureSettings:
    symmetry_tolerance: float
    cell: structure_pb2.CellChoice.ValueType
    occupancy_tolerance: float
    species: tuple[str, ...]
    strict: bool
    detect_symmetry: bool


def structure_settings(options: structure_pb2.StructureOptions) -> StructureSettings:
    return StructureSettings(
        symmetry_tolerance=(
            options.symmetry_tolerance
            if options.HasField("symmetry_tolerance")
            else DEFAULT_SYMMETRY_TOLERANCE
        ),
        cell=options.cell,
        occupancy_tolerance=(
            options.occupancy_tolerance
            if options.HasField("occupancy_tolerance")
            else DEFAULT_OCCUPANCY_TOLERANCE
        ),
        species=tuple(options.species),
        strict=options.strict,
        detect_symmetry=(options.detect_symmetry if options.HasField("detect_symmetry") else True),
    )


def structure_parameters(options: structure_pb2.StructureOptions, **extra: str) -> dict[str, str]:
    """Every effective option, defaults applied, as text (for Provenance.parameters)."""
    settings = structure_settings(options)
    return {
        "symmetry_tolerance": repr(settings.symmetry_tolerance),
        "cell": structure_pb2.CellChoice.Name(settings.cell),
        "occupancy_tolerance": repr(settings.occupancy_tolerance),
        "species": " ".join(settings.species),
        "strict": str(settings.strict).lower(),
        "detect_symmetry": str(settings.detect_symmetry).lower(),
        **extra,
    }
