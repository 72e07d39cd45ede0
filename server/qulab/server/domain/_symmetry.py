"""Symmetry: expanding an asymmetric unit with a list of operations, finding the space group
of the sites with spglib, and spglib's standardized cells.

The expansion is ours rather than gemmi's `get_all_unit_cell_sites` because gemmi can only
expand with tabulated groups (its Python API cannot set cell images from an arbitrary
operation list), and because we want one merge tolerance, in Å, for every source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import spglib

from qulab.v1 import structure_pb2

__all__ = [
    "MERGE_TOLERANCE",
    "Detection",
    "detect",
    "expand",
    "spglib_types",
    "standardize",
]

# spglib >= 2.5: raise SpglibError instead of returning None and setting a global message.
spglib.error.OLD_ERROR_HANDLING = False

# Images of one site closer than this (Å) are the same site (a special position). Large
# enough for coordinates rounded to four decimals in a 50 Å cell, far below any real
# interatomic distance.
MERGE_TOLERANCE = 0.05

_CRYSTAL_SYSTEMS = (
    (2, "triclinic"),
    (15, "monoclinic"),
    (74, "orthorhombic"),
    (142, "tetragonal"),
    (167, "trigonal"),
    (194, "hexagonal"),
    (230, "cubic"),
)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def crystal_system(number: int) -> str:
    """The crystal system of an International Tables space-group number."""
    for last, name in _CRYSTAL_SYSTEMS:
        if number <= last:
            return name
    raise ValueError(f"no space group {number}")


def expand(lattice: Floats, fractional: Floats, seitz: Floats) -> tuple[Ints, Floats]:
    """The unit-cell images of each asymmetric-unit site under the operations.

    `seitz` is (n_ops, 4, 4) with the identity first. Returns the index of the asymmetric
    site each image came from and the images' fractional coordinates in [0, 1), images of
    one site within MERGE_TOLERANCE of each other counted once (the first kept).

    Images g(x) and h(x) coincide exactly when h^-1 g maps x onto itself, so a site that no
    operation but the identity keeps in place (a general position, most sites) has all its
    images distinct; only sites on special positions need the pairwise comparison.
    """
    rotations = seitz[:, :3, :3]
    translations = seitz[:, :3, 3]
    positions = np.einsum("oij,nj->noi", rotations, fractional) + translations
    positions -= np.floor(positions)
    to_first = positions - positions[:, :1, :]
    to_first -= np.round(to_first)
    fixed = np.linalg.norm(to_first @ lattice, axis=-1) < MERGE_TOLERANCE
    keep = np.ones(positions.shape[:2], bool)
    special = np.nonzero(fixed[:, 1:].any(axis=1))[0]
    if len(special):
        keep[special] = _first_of_each_image(positions[special], lattice)
    site_index, _ = np.nonzero(keep)
    images = positions[keep]
    images[images >= 1.0 - 1e-12] = 0.0
    return site_index.astype(np.int64), images


def _first_of_each_image(images: Floats, lattice: Floats) -> npt.NDArray[np.bool_]:
    """For sites on special positions, (sites, ops, 3): which images to keep. In passes over
    all the sites at once, each pass keeps every site's first unclaimed image and claims the
    images that coincide with it; as many passes as the largest multiplicity."""
    claimed = np.zeros(images.shape[:2], bool)
    keep = np.zeros(images.shape[:2], bool)
    while not claimed.all():
        rows = np.nonzero(~claimed.all(axis=1))[0]
        first = np.argmin(claimed[rows], axis=1)
        delta = images[rows] - images[rows, first][:, None, :]
        delta -= np.round(delta)
        claimed[rows] |= np.linalg.norm(delta @ lattice, axis=-1) < MERGE_TOLERANCE
        claimed[rows, first] = True
        keep[rows, first] = True
    return keep


def spglib_types(
    fractional: Floats, lattice: Floats, numbers: Sequence[int], occupancies: Floats
) -> tuple[Floats, npt.NDArray[np.int32], Ints]:
    """spglib's view of possibly disordered sites: one point per occupied position, its type
    the set of (element, occupancy) found there, so a mixed site is one kind of atom.

    Returns positions, types and, for each input site, the index of its point."""
    n = len(numbers)
    point_of = np.full(n, -1, np.int64)
    keys: list[tuple[tuple[int, float], ...]] = []
    points: list[int] = []
    partial = np.nonzero(occupancies < 1.0 - 1e-6)[0]
    partial_set = set(partial.tolist())
    for i in range(n):
        if point_of[i] >= 0:
            continue
        members = [i]
        if i in partial_set:
            delta = fractional[partial] - fractional[i]
            delta -= np.round(delta)
            near = partial[np.linalg.norm(delta @ lattice, axis=1) < MERGE_TOLERANCE]
            members = [int(j) for j in near if point_of[j] < 0] or [i]
        point_of[members] = len(points)
        points.append(i)
        keys.append(tuple(sorted((numbers[j], round(float(occupancies[j]), 4)) for j in members)))
    kinds = {key: k for k, key in enumerate(dict.fromkeys(keys))}
    types = np.array([kinds[key] + 1 for key in keys], np.int32)
    return fractional[points], types, point_of


@dataclass(frozen=True, slots=True)
class Detection:
    """What spglib found (or why not)."""

    symmetry: structure_pb2.DetectedSymmetry | None
    failure: str


def detect(
    lattice: Floats, positions: Floats, types: npt.NDArray[np.int32], tolerance: float
) -> Detection:
    try:
        dataset = spglib.get_symmetry_dataset(
            (lattice, positions, types),  # type: ignore[arg-type]  # spglib accepts arrays
            symprec=tolerance,
        )
    except spglib.SpglibError as exc:
        return Detection(None, str(exc))
    if dataset is None:  # pragma: no cover - only with OLD_ERROR_HANDLING
        return Detection(None, "spglib found no space group")
    number = int(dataset.number)
    return Detection(
        structure_pb2.DetectedSymmetry(
            international=str(dataset.international),
            number=number,
            hall=str(dataset.hall),
            point_group=str(dataset.pointgroup),
            crystal_system=crystal_system(number),
            tolerance=tolerance,
        ),
        "",
    )


def standardize(
    lattice: Floats,
    positions: Floats,
    types: npt.NDArray[np.int32],
    tolerance: float,
    *,
    primitive: bool,
) -> tuple[Floats, Floats, npt.NDArray[np.int32]] | str:
    """spglib's standardized conventional (or primitive) cell, or why it failed."""
    try:
        cell = spglib.standardize_cell(
            (lattice, positions, types),  # type: ignore[arg-type]  # spglib accepts arrays
            to_primitive=primitive,
            symprec=tolerance,
        )
    except spglib.SpglibError as exc:
        return str(exc)
    if cell is None:  # pragma: no cover - only with OLD_ERROR_HANDLING
        return "spglib found no standardized cell"
    new_lattice, new_positions, new_types = cell
    return (
        np.asarray(new_lattice, np.float64),
        np.asarray(new_positions, np.float64),
        np.asarray(new_types, np.int32),
    )
