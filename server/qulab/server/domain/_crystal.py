"""What the structure readers hand over: the cell and the expanded sites as numpy arrays,
before anything is derived from them, plus the element table every structure module uses.

`CellContents` is not a copy of the `Structure` message: it is the readers' common output
(arrays, not per-site messages), from which `structures.assemble` derives the message once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import gemmi
import numpy as np
import numpy.typing as npt

from qulab.server.domain.structure_options import StructureLimits
from qulab.server.errors import FieldViolation, InvalidArgument
from qulab.v1 import structure_pb2

__all__ = [
    "CIF_CELL_TAGS",
    "CellContents",
    "StructureLimits",
    "cell_parameters",
    "element_number",
    "refuse",
]

Floats = npt.NDArray[np.float64]

# The CIF tags of the unit cell, in the order of `cell_parameters`.
CIF_CELL_TAGS = (
    "_cell_length_a",
    "_cell_length_b",
    "_cell_length_c",
    "_cell_angle_alpha",
    "_cell_angle_beta",
    "_cell_angle_gamma",
)


@dataclass(slots=True)
class CellContents:
    """One structure as a reader found it: rows of `lattice` are the cell vectors in Å,
    site i is (labels[i], elements[i], occupancies[i], fractional[i])."""

    name: str
    source_format: structure_pb2.StructureFormat.ValueType
    lattice: Floats  # (3, 3)
    labels: list[str]
    elements: list[str]  # canonical symbols, "H" for D and T
    occupancies: Floats  # (n,)
    fractional: Floats  # (n, 3)
    selective_dynamics: npt.NDArray[np.bool_] | None = None  # (n, 3)
    velocities: Floats | None = None  # (n, 3), Å/fs, Cartesian
    declared: structure_pb2.DeclaredSpaceGroup | None = None
    formula_sum: str = ""  # CIF _chemical_formula_sum, as written
    formula_units: float = 0.0  # CIF _cell_formula_units_Z, 0 when absent
    declared_volume: float = 0.0  # CIF _cell_volume, 0 when absent
    warnings: list[structure_pb2.StructureWarning] = field(default_factory=list)

    def warn(
        self,
        kind: structure_pb2.StructureWarningKind.ValueType,
        message: str,
        sites: list[str] | None = None,
    ) -> None:
        self.warnings.append(
            structure_pb2.StructureWarning(kind=kind, message=message, sites=sites or [])
        )


def cell_parameters(lattice: Floats) -> tuple[float, float, float, float, float, float]:
    """a, b, c (Å) and alpha, beta, gamma (degrees) of the cell whose rows are `lattice`."""
    (aa, ab, ac), (_, bb, bc), (_, _, cc) = (lattice @ lattice.T).tolist()
    a, b, c = math.sqrt(aa), math.sqrt(bb), math.sqrt(cc)

    def angle(dot: float, length: float) -> float:
        return math.degrees(math.acos(max(-1.0, min(1.0, dot / length))))

    return a, b, c, angle(bc, b * c), angle(ac, a * c), angle(ab, a * b)


@functools.lru_cache(maxsize=4096)
def element_number(symbol: str) -> int:
    """Atomic number of an element symbol in any letter case ("FE", "fe", "Fe"); deuterium
    and tritium count as hydrogen. 0 when it is not an element (gemmi's "X")."""
    text = symbol.strip()
    if text in ("D", "T"):
        return 1
    return int(gemmi.Element(text).atomic_number) if text.isalpha() and len(text) <= 3 else 0


def refuse(
    description: str,
    *,
    field_name: str = "content",
    reason: str = "INVALID_STRUCTURE",
    line: int | None = None,
) -> InvalidArgument:
    """The error for an input that cannot be read as a structure."""
    return InvalidArgument(
        FieldViolation(field=field_name, description=description, reason=reason, line=line)
    )
