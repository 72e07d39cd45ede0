"""One crystal structure in, one fixed-length float32 feature row out (EncodeStructure).

The columns are what a materials-ML user expects from matminer's composition (Magpie-style)
and structure featurizers, computed from the parsed `Structure` message alone. Only
`lattice.matrix`, `atomic_numbers`, `occupancies`, `fractional_coordinates` and
`detected_symmetry.number` are read; everything else (lattice parameters, volume, density)
is derived again from those, so a row never mixes two disagreeing sources.

"Occupancy-weighted" means every site counts with its occupancy: a site that is Li 0.5
adds half a Li atom. The composition `x_Z` is the occupancy-weighted amount of element Z
over the total; the element-property statistics are taken over that composition.

| column | meaning | unit |
|---|---|---|
| `frac_H` ... `frac_Og` | `x_Z` for Z = 1..118, summing to 1 | - |
| `a`, `b`, `c` | lengths of the cell vectors | Å |
| `alpha`, `beta`, `gamma` | angles b-c, a-c, a-b | degrees |
| `volume_per_atom` | cell volume over the occupancy-weighted atom count | Å³ |
| `density` | occupancy-weighted mass over the cell volume | g/cm³ |
| `packing_fraction` | occupancy-weighted sum of 4/3·π·r_cov³ over the cell volume | - |
| `n_sites` | sites in the cell, one per species on a shared position | count |
| `n_atoms` | occupancy-weighted atom count | count |
| `n_elements` | elements with `x_Z` > 0 | count |
| `mean_occupancy` | mean occupancy over the sites | - |
| `disorder_fraction` | share of sites with occupancy below 1 | - |
| `space_group_number` | detected International Tables number, 0 when undetected | - |
| `crystal_system_<name>` | one-hot crystal system, 7 columns `triclinic` ... `cubic` | 0/1 |
| `is_centrosymmetric` | 1 when the space group contains the inversion | 0/1 |
| `<property>_mean` | `sum_Z x_Z p_Z` | as property |
| `<property>_std` | population standard deviation of `p_Z` under the weights `x_Z` | as property |
| `<property>_min`, `_max` | smallest, largest `p_Z` over the elements present | as property |
| `<property>_range` | max - min | as property |
| `min_interatomic_distance` | smallest distance between two sites or images | Å |
| `mean_nearest_neighbour_distance` | mean over sites of the nearest-neighbour distance | Å |

Masses are gemmi's standard atomic weights. The packing fraction can exceed 1 (covalent
spheres overlap). The crystal systems are `triclinic`, `monoclinic`, `orthorhombic`,
`tetragonal`, `trigonal` (rhombohedral lattices included), `hexagonal`, `cubic`, taken
from the space-group number like `is_centrosymmetric` (1 when the point group is one of
the 11 Laue classes); all three symmetry columns are 0 when symmetry is undetected. The
mean nearest-neighbour distance is occupancy-weighted.

The properties are `atomic_number`; `atomic_weight` (u); `covalent_radius` and
`vdw_radius` (Å, gemmi's tables: gemmi gives 1.0 as van der Waals radius of the elements it
has none for, Z > 103); `period`; `group` (1-18, lanthanides and actinides counted in group 3).

Distances are exact minimum-image distances: periodic images are searched as far out as
a site's nearest neighbour lies, whatever the cell's shape. Two sites that are both
partially occupied and closer than 0.5 Å are taken as alternatives (partial occupants of
one position, or two positions of one disordered atom) and not as neighbours; a site's own
periodic images are its neighbours. For a cell of more than 500 occupied sites, both
distance columns are computed over the first 500 of them only (their distances to each
other and to each other's images), which bounds the cost.

A structure without sites, with an element outside 1..118, with no occupied site or with a
degenerate cell raises `ValueError`: the parser never produces one. Every other structure
gives a finite row. Pure numpy; no gRPC here.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Final

import gemmi
import numpy as np
import numpy.typing as npt

from qulab.tensors import from_tensor
from qulab.v1 import structure_pb2

__all__ = ["FEATURE_NAMES", "structure_features"]

Floats = npt.NDArray[np.float64]

_MAX_Z: Final = 118
_MAX_DISTANCE_SITES: Final = 500
# Partially occupied sites closer than this are alternatives, not neighbours (the parser
# uses the same distance for its overlapping-sites warning).
_ALTERNATIVE_SITES_DISTANCE: Final = 0.5
_FULL_OCCUPANCY: Final = 1.0 - 1e-6
# g/cm³ per u/Å³ (1e24 Å³ per cm³ over Avogadro's number).
_DENSITY_UNIT: Final = 1.66053906660
# Largest number of float64 values one block of the distance matrix may hold.
_DISTANCE_BLOCK: Final = 1 << 20
# The first search radius, in mean site spacings ((volume / sites) ** 1/3): nearest
# neighbours are closer than that in close-packed, covalent and molecular crystals alike.
_FIRST_REACH: Final = 1.25
_CRYSTAL_SYSTEMS: Final = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "trigonal",
    "hexagonal",
    "cubic",
)
_PROPERTIES: Final = (
    "atomic_number",
    "atomic_weight",
    "covalent_radius",
    "vdw_radius",
    "period",
    "group",
)
_STATISTICS: Final = ("mean", "std", "min", "max", "range")


def _period_and_group(z: int) -> tuple[int, int]:
    """Period and group (1-18) of element z; lanthanides and actinides are group 3."""
    if z <= 2:
        return 1, 1 if z == 1 else 18
    for period, (first, last) in enumerate(((3, 10), (11, 18)), start=2):
        if z <= last:
            position = z - first + 1
            return period, position if position <= 2 else position + 10
    for period, (first, last) in enumerate(((19, 36), (37, 54)), start=4):
        if z <= last:
            return period, z - first + 1
    period, first = (6, 55) if z <= 86 else (7, 87)
    position = z - first + 1
    if position <= 2:
        return period, position
    return period, 3 if position <= 17 else position - 14


def _element_table() -> tuple[tuple[str, ...], Floats]:
    """Symbols of elements 1..118 and their properties as rows (in `_PROPERTIES` order)."""
    symbols = []
    table = np.empty((len(_PROPERTIES), _MAX_Z), dtype=np.float64)
    for z in range(1, _MAX_Z + 1):
        element = gemmi.Element(z)
        period, group = _period_and_group(z)
        symbols.append(element.name)
        table[:, z - 1] = (z, element.weight, element.covalent_r, element.vdw_r, period, group)
    return tuple(symbols), table


def _space_group_table() -> tuple[Floats, Floats]:
    """Per space-group number 0..230: the crystal-system one-hot and the centrosymmetry
    flag (row 0, for undetected symmetry, is all zero)."""
    systems = np.zeros((231, len(_CRYSTAL_SYSTEMS)), dtype=np.float64)
    centrosymmetric = np.zeros(231, dtype=np.float64)
    for number in range(1, 231):
        group = gemmi.find_spacegroup_by_number(number)
        systems[number, _CRYSTAL_SYSTEMS.index(group.crystal_system_str())] = 1.0
        centrosymmetric[number] = float(group.is_centrosymmetric())
    return systems, centrosymmetric


_SYMBOLS, _ELEMENT_PROPERTIES = _element_table()
_COVALENT_VOLUME: Final = 4.0 / 3.0 * math.pi * _ELEMENT_PROPERTIES[2] ** 3
_WEIGHT: Final = _ELEMENT_PROPERTIES[1]
_CRYSTAL_SYSTEM_ONE_HOT, _CENTROSYMMETRIC = _space_group_table()

FEATURE_NAMES: Final[tuple[str, ...]] = (
    *(f"frac_{symbol}" for symbol in _SYMBOLS),
    "a",
    "b",
    "c",
    "alpha",
    "beta",
    "gamma",
    "volume_per_atom",
    "density",
    "packing_fraction",
    "n_sites",
    "n_atoms",
    "n_elements",
    "mean_occupancy",
    "disorder_fraction",
    "space_group_number",
    *(f"crystal_system_{name}" for name in _CRYSTAL_SYSTEMS),
    "is_centrosymmetric",
    *(f"{prop}_{stat}" for prop in _PROPERTIES for stat in _STATISTICS),
    "min_interatomic_distance",
    "mean_nearest_neighbour_distance",
)
"""The column names of `structure_features`, in row order (see the module docstring)."""


def structure_features(structure: structure_pb2.Structure) -> npt.NDArray[np.float32]:
    """The feature row of a parsed structure: shape `(len(FEATURE_NAMES),)`, float32.

    Raises `ValueError` for a structure the parser would not produce (no sites, an element
    outside 1..118, nothing occupied, a degenerate cell, non-finite coordinates, arrays of
    mismatched shapes, a space-group number outside 0..230).
    """
    matrix, numbers, occupancies, fractional = _arrays(structure)
    volume = abs(float(np.linalg.det(matrix)))
    if not volume > 0.0:
        raise ValueError(f"the cell is degenerate (volume {volume} Å³)")
    occupied = occupancies > 0.0
    n_atoms = float(occupancies.sum())
    if not occupied.any():
        raise ValueError("no site is occupied")

    composition = np.bincount(numbers - 1, weights=occupancies, minlength=_MAX_Z) / n_atoms
    number = structure.detected_symmetry.number if structure.HasField("detected_symmetry") else 0
    if not 0 <= number <= 230:
        raise ValueError(f"detected space group number {number} is outside 1..230")
    weights = occupancies[occupied][:_MAX_DISTANCE_SITES]
    nearest = _nearest_distances(matrix, fractional[occupied][:_MAX_DISTANCE_SITES], weights)
    scalars = np.array(
        (
            volume / n_atoms,
            n_atoms * float(composition @ _WEIGHT) * _DENSITY_UNIT / volume,
            n_atoms * float(composition @ _COVALENT_VOLUME) / volume,
            numbers.size,
            n_atoms,
            np.count_nonzero(composition),
            occupancies.mean(),
            np.count_nonzero(occupancies < _FULL_OCCUPANCY) / numbers.size,
            number,
        ),
        dtype=np.float64,
    )
    distances = np.array((nearest.min(), nearest @ weights / weights.sum()), dtype=np.float64)
    row: Floats = np.concatenate(
        (
            composition,
            _cell_parameters(matrix),
            scalars,
            _CRYSTAL_SYSTEM_ONE_HOT[number],
            _CENTROSYMMETRIC[number : number + 1],
            _statistics(composition).ravel(),
            distances,
        )
    )
    if not np.isfinite(row).all():
        bad = [FEATURE_NAMES[i] for i in np.flatnonzero(~np.isfinite(row))]
        raise ValueError(f"non-finite features {bad}")
    return row.astype(np.float32)


def _arrays(
    structure: structure_pb2.Structure,
) -> tuple[Floats, npt.NDArray[np.intp], Floats, Floats]:
    """Cell matrix, atomic numbers (1..118), occupancies and fractional coordinates."""
    matrix = np.asarray(from_tensor(structure.lattice.matrix), dtype=np.float64)
    numbers = np.asarray(from_tensor(structure.atomic_numbers), dtype=np.intp)
    occupancies = np.asarray(from_tensor(structure.occupancies), dtype=np.float64)
    fractional = np.asarray(from_tensor(structure.fractional_coordinates), dtype=np.float64)
    count = numbers.size
    if matrix.shape != (3, 3):
        raise ValueError(f"lattice.matrix has shape {matrix.shape}, not (3, 3)")
    if count == 0:
        raise ValueError("the structure has no sites")
    if numbers.shape != (count,) or occupancies.shape != (count,):
        raise ValueError(
            f"atomic_numbers {numbers.shape} and occupancies {occupancies.shape} "
            f"do not both have shape ({count},)"
        )
    if fractional.shape != (count, 3):
        raise ValueError(f"fractional_coordinates has shape {fractional.shape}, not ({count}, 3)")
    outside = np.flatnonzero((numbers < 1) | (numbers > _MAX_Z))
    if outside.size:
        first = int(outside[0])
        raise ValueError(f"site {first} has atomic number {numbers[first]}, not 1..{_MAX_Z}")
    if (occupancies < 0.0).any() or not np.isfinite(occupancies).all():
        raise ValueError("occupancies must be finite and not negative")
    if not (np.isfinite(matrix).all() and np.isfinite(fractional).all()):
        raise ValueError("lattice.matrix and fractional_coordinates must be finite")
    return matrix, numbers, occupancies, fractional


def _cell_parameters(matrix: Floats) -> Floats:
    """a, b, c and alpha (b-c), beta (a-c), gamma (a-b) in degrees."""
    gram = matrix @ matrix.T
    lengths = np.sqrt(np.diagonal(gram))
    first, second = [1, 0, 0], [2, 2, 1]
    cosines = gram[first, second] / (lengths[first] * lengths[second])
    return np.concatenate((lengths, np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))))


def _statistics(composition: Floats) -> Floats:
    """Rows of `_PROPERTIES`, columns of `_STATISTICS`, weighted by the composition."""
    values = _ELEMENT_PROPERTIES
    mean = values @ composition
    variance = ((values - mean[:, None]) ** 2) @ composition
    present = values[:, composition > 0.0]
    low, high = present.min(axis=1), present.max(axis=1)
    return np.stack((mean, np.sqrt(np.maximum(variance, 0.0)), low, high, high - low), axis=1)


def _reduced_basis(matrix: Floats) -> Floats:
    """An equivalent basis in which no vector can be shortened by adding a whole multiple
    of another one. The distance search is exact in any basis, but a skewed one (e.g.
    a = (1, 0, 0), b = (5, 1, 0)) has thin cells and makes it search many more of them.
    """
    basis = [list(map(float, row)) for row in matrix]
    for _ in range(100):
        changed = False
        for i, j in itertools.permutations(range(3), 2):
            bi, bj = basis[i], basis[j]
            norm = bj[0] * bj[0] + bj[1] * bj[1] + bj[2] * bj[2]
            multiple = round((bi[0] * bj[0] + bi[1] * bj[1] + bi[2] * bj[2]) / norm)
            if multiple:
                basis[i] = [bi[k] - multiple * bj[k] for k in range(3)]
                changed = True
        if not changed:
            break
    return np.array(basis, dtype=np.float64)


def _nearest_distances(matrix: Floats, fractional: Floats, occupancies: Floats) -> Floats:
    """Per site, the distance to its nearest neighbour (see the module docstring for what
    counts as one).

    Exact whatever the cell's shape: the periodic images within a distance `reach` of the
    cell are all the neighbours a site can have within `reach`. The first `reach` covers
    nearly every structure. A site whose nearest neighbour lies further out still gets an
    upper bound (a farther neighbour found, or its own image one shortest cell vector
    away), and the largest bound is a `reach` that covers every site.
    """
    reduced = _reduced_basis(matrix)
    inverse: Floats = np.asarray(np.linalg.inv(reduced), dtype=np.float64)
    # Coordinates in the reduced basis, in [0, 1): fractional @ matrix is Cartesian.
    positions = fractional @ (matrix @ inverse)
    positions -= np.floor(positions)
    partial = occupancies < _FULL_OCCUPANCY
    spacing = (abs(float(np.linalg.det(reduced))) / positions.shape[0]) ** (1 / 3)
    reach = _FIRST_REACH * spacing
    nearest = _nearest_within(positions, reduced, inverse, reach, partial)
    if nearest.max() > reach:
        shortest = math.sqrt(float(np.einsum("ij,ij->i", reduced, reduced).min()))
        reach = float(np.minimum(nearest, shortest).max())
        nearest = _nearest_within(positions, reduced, inverse, reach, partial)
    return nearest


def _nearest_within(
    positions: Floats,
    reduced: Floats,
    inverse: Floats,
    reach: float,
    partial: npt.NDArray[np.bool_],
) -> Floats:
    """Per site, the distance to its nearest neighbour where that is within `reach`;
    elsewhere a larger distance to some neighbour, or infinity."""
    images, sources, home = _images(positions, inverse, reach)
    cartesian, image_cartesian = positions @ reduced, images @ reduced
    norms = np.einsum("ij,ij->i", cartesian, cartesian)
    image_norms = np.einsum("ij,ij->i", image_cartesian, image_cartesian)
    # Home copies come in site order (one per site, all at the zero offset).
    home_columns = np.flatnonzero(home)
    partial_columns = np.flatnonzero(partial[sources])
    count = positions.shape[0]
    nearest = np.empty(count, dtype=np.float64)
    rows = max(1, _DISTANCE_BLOCK // sources.size)
    for start in range(0, count, rows):
        block = np.arange(start, min(count, start + rows))
        # |x - y|² as |x|² + |y|² - 2 x·y: one matrix product. The cancellation costs
        # about 1e-13 Å² at cell sizes, far below what a float32 row keeps.
        squared = cartesian[block] @ (-2.0 * image_cartesian.T)
        squared += norms[block, None]
        squared += image_norms
        squared[block - start, home_columns[block]] = np.inf
        partial_rows = np.flatnonzero(partial[block])
        if partial_rows.size and partial_columns.size:
            pairs = np.ix_(partial_rows, partial_columns)
            close = squared[pairs]
            alternative = (close < _ALTERNATIVE_SITES_DISTANCE**2) & (
                sources[partial_columns] != block[partial_rows, None]
            )
            close[alternative] = np.inf
            squared[pairs] = close
        nearest[block] = squared.min(axis=1)
    return np.sqrt(np.maximum(nearest, 0.0))


def _images(
    positions: Floats, inverse: Floats, reach: float
) -> tuple[Floats, npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Every periodic image (fractional, in the reduced basis) closer than `reach` to the
    cell, the site each is an image of, and whether it is that site itself."""
    # A displacement of length r changes fractional coordinate k by at most r times the
    # length of reciprocal vector k (column k of the inverse).
    margin = reach * np.sqrt((inverse**2).sum(axis=0)) * (1 + 1e-9) + 1e-9
    offsets = _offsets(tuple(int(step) for step in np.ceil(margin)))
    # One (offsets, sites) array per axis: the inner loops run over sites, not over 3.
    shifted = [positions[:, axis] + offsets[:, axis, None] for axis in range(3)]
    keep = np.ones(shifted[0].shape, dtype=bool)
    for axis, coordinate in enumerate(shifted):
        keep &= np.abs(coordinate - 0.5) < 0.5 + margin[axis]
    sources = np.broadcast_to(np.arange(positions.shape[0]), keep.shape)[keep]
    home = np.broadcast_to((offsets == 0.0).all(axis=1)[:, None], keep.shape)[keep]
    return np.stack([coordinate[keep] for coordinate in shifted], axis=1), sources, home


@functools.lru_cache(maxsize=64)
def _offsets(steps: tuple[int, ...]) -> Floats:
    """The cell offsets -steps[k]..steps[k] along each axis k, as rows."""
    ranges = (range(-step, step + 1) for step in steps)
    return np.array(list(itertools.product(*ranges)), dtype=np.float64)
