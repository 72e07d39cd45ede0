"""Structures out as text: CIF (every site in P 1, with its occupancy) and VASP 5 POSCAR.

CIF keeps everything the cell holds but selective dynamics and velocities (CIF has no tags
for them); POSCAR keeps everything but partial occupancy, which it cannot express and so is
refused rather than rounded.
"""

from __future__ import annotations

import re
from typing import Final

import gemmi
import numpy as np

from qulab.server.domain._crystal import (
    CIF_CELL_TAGS,
    CellContents,
    cell_parameters,
    element_number,
    refuse,
)

__all__ = ["write_cif", "write_poscar"]

_NOT_REPRESENTABLE: Final = "NOT_REPRESENTABLE"
_OCCUPANCY_TOLERANCE: Final = 1e-9


def write_cif(cells: list[CellContents]) -> str:
    """The structures as CIF 1.1 text: one data block each, every site listed in P 1."""
    out: list[str] = ["# written by QuLab\n"]
    for cell in cells:
        parameters = cell_parameters(cell.lattice)
        name = re.sub(r"\s+", "_", cell.name.strip()) or "structure"
        out.append(f"data_{name}\n")
        for tag, value in zip(CIF_CELL_TAGS, parameters, strict=True):
            out.append(f"{tag} {value!r}\n")
        out.append("_symmetry_space_group_name_H-M 'P 1'\n_symmetry_Int_Tables_number 1\n")
        out.append("loop_\n_symmetry_equiv_pos_as_xyz\n'x, y, z'\n")
        out.append(
            "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
            "_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n"
        )
        # Coordinates relative to the file's own cell vectors: a CIF fixes the Cartesian
        # frame (a along x), so a POSCAR's rotated frame does not survive, its cell does.
        for label, element, xyz, occ in zip(
            cell.labels, cell.elements, cell.fractional, cell.occupancies, strict=True
        ):
            quoted = gemmi.cif.quote(label or element)
            x, y, z = (float(v) for v in xyz)
            out.append(f"{quoted} {element} {x!r} {y!r} {z!r} {float(occ)!r}\n")
    return "".join(out)


def write_poscar(cell: CellContents) -> str:
    """The cell as VASP 5 POSCAR text: species and counts lines (sites grouped by element in
    order of first appearance), Direct coordinates, selective dynamics flags and a
    velocities block when the cell has them. Partial occupancy is refused."""
    count = len(cell.elements)
    if count == 0:
        raise refuse(
            "POSCAR needs at least one site, the structure has none",
            field_name="output_format",
            reason=_NOT_REPRESENTABLE,
        )
    partial = np.flatnonzero(np.abs(cell.occupancies - 1.0) > _OCCUPANCY_TOLERANCE)
    if partial.size:
        site = int(partial[0])
        raise refuse(
            f"POSCAR cannot hold partial occupancy: site {cell.labels[site]} has "
            f"{float(cell.occupancies[site]):g}",
            field_name="output_format",
            reason=_NOT_REPRESENTABLE,
        )
    rank: dict[str, int] = {}
    for element in cell.elements:
        if element not in rank:
            if element_number(element) == 0:
                raise refuse(
                    f"POSCAR needs element symbols, the structure has {element!r}",
                    field_name="output_format",
                    reason=_NOT_REPRESENTABLE,
                )
            rank[element] = len(rank)
    keys = np.array([rank[element] for element in cell.elements])
    # A stable sort keeps the file's order within each element, and is the identity when
    # the sites are already grouped.
    order = np.argsort(keys, kind="stable")
    counts = np.bincount(keys, minlength=len(rank))

    comment = cell.name.replace("\r", " ").replace("\n", " ").strip() or "QuLab"
    out = [comment, "1.0"]
    out.extend(_row(row, "21.16f") for row in cell.lattice.tolist())
    out.append("".join(f" {symbol:>4}" for symbol in rank))
    out.append("".join(f" {int(n):>4}" for n in counts))
    flags = cell.selective_dynamics
    if flags is not None:
        out.append("Selective dynamics")
    out.append("Direct")
    fractional = cell.fractional[order].tolist()
    if flags is None:
        out.extend(_row(row, "19.16f") for row in fractional)
    else:
        for row, free in zip(fractional, flags[order].tolist(), strict=True):
            out.append(_row(row, "19.16f") + "  " + " ".join("T" if f else "F" for f in free))
    if cell.velocities is not None:
        # A blank header means Cartesian Å/fs, as in VASP's own CONTCAR; 17 significant
        # digits read back as the same doubles.
        out.append("")
        out.extend(_row(row, "24.16e") for row in cell.velocities[order].tolist())
    return "\n".join(out) + "\n"


def _row(values: list[float], spec: str) -> str:
    # The leading space is the separator: a wide number may fill its whole field.
    return "".join(f" {value:{spec}}" for value in values)
