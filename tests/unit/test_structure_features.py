"""Structure feature rows against pymatgen's (and spglib's) own reading of the same structure.

The `Structure` messages are built here from pymatgen structures (CIFs under tests/data/cif,
see SOURCES.md there, and structures made in code), so the reference values and the input
come from the same object, independently of QuLab's parser.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import gemmi
import numpy as np
import numpy.typing as npt
import pytest
import spglib
from pymatgen.core import Composition, Element, Lattice
from pymatgen.core import Structure as PmgStructure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from pymatgen.symmetry.groups import SpaceGroup

from qulab.server.domain import structure_features as module
from qulab.server.domain.structure_features import FEATURE_NAMES, structure_features
from qulab.tensors import to_tensor
from qulab.v1 import structure_pb2

CIF_DATA = Path(__file__).resolve().parent.parent / "data" / "cif"
ORDERED = (
    "diffpy/PbTe.cif",
    "diffpy/graphite.cif",
    "gemmi/1011031.cif",
    "gemmi/2013551.cif",
    "pymatgen/CsI3Pb.cif",
    "pymatgen/OneLineSymmP1.cif",
)
DISORDERED = ("pymatgen/Li10GeP2S12.cif", "pymatgen/site_type_symbol_test.cif")
LARGE = "cod-tools/1004001-disorder.cif"
PROPERTIES = ("atomic_number", "atomic_weight", "covalent_radius", "vdw_radius", "period", "group")
# Partially occupied sites closer than this are alternatives, not neighbours (module doc).
ALTERNATIVES = 0.5
NEIGHBOUR_RADIUS = 6.0
T = TypeVar("T")


def quietly(make: Callable[[], T]) -> T:
    """Call pymatgen: its CIF notes and spglib's deprecation notice are not under test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make()


@functools.cache
def read_cif(name: str) -> PmgStructure:
    return quietly(functools.partial(PmgStructure.from_file, CIF_DATA / name))


def analyzer(structure: PmgStructure) -> SpacegroupAnalyzer:
    return quietly(functools.partial(SpacegroupAnalyzer, structure))


def message_of(structure: PmgStructure, *, symmetry: bool = True) -> structure_pb2.Structure:
    """Our Structure message for a pymatgen structure: one site per species of each
    pymatgen site (with that species' occupancy), symmetry from SpacegroupAnalyzer."""
    numbers, occupancies, fractional, sites = [], [], [], []
    for site in structure:
        for species, occupancy in site.species.items():
            numbers.append(species.Z)
            occupancies.append(occupancy)
            fractional.append(site.frac_coords)
            sites.append(
                structure_pb2.Site(
                    element=species.symbol,
                    atomic_number=species.Z,
                    occupancy=occupancy,
                    fractional=site.frac_coords,
                    cartesian=site.coords,
                )
            )
    lattice = structure.lattice
    fractional_array = np.array(fractional, dtype=np.float64)
    message = structure_pb2.Structure(
        lattice=structure_pb2.Lattice(
            a=lattice.a,
            b=lattice.b,
            c=lattice.c,
            alpha=lattice.alpha,
            beta=lattice.beta,
            gamma=lattice.gamma,
            matrix=to_tensor(lattice.matrix),
        ),
        volume=structure.volume,
        density=float(structure.density),
        sites=sites,
        fractional_coordinates=to_tensor(fractional_array),
        cartesian_coordinates=to_tensor(fractional_array @ lattice.matrix),
        atomic_numbers=to_tensor(np.array(numbers, dtype=np.int32)),
        occupancies=to_tensor(np.array(occupancies, dtype=np.float64)),
    )
    if symmetry:
        found = analyzer(structure)
        message.detected_symmetry.CopyFrom(
            structure_pb2.DetectedSymmetry(
                international=found.get_space_group_symbol(),
                number=found.get_space_group_number(),
                hall=found.get_hall(),
                point_group=found.get_point_group_symbol(),
                crystal_system=found.get_crystal_system(),
                tolerance=0.01,
            )
        )
    return message


def features(structure: PmgStructure, *, symmetry: bool = True) -> dict[str, float]:
    row = structure_features(message_of(structure, symmetry=symmetry))
    return dict(zip(FEATURE_NAMES, row.tolist(), strict=True))


def rock_salt() -> PmgStructure:
    return PmgStructure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def half_lithium() -> PmgStructure:
    """A Li site half occupied next to a full O site: a vacancy, 1.5 atoms per cell."""
    return PmgStructure(Lattice.cubic(4.0), [{"Li": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def skewed(structure: PmgStructure) -> PmgStructure:
    """The same crystal in a badly non-reduced cell (b' = b + 7a, c' = c - 6b + 5a)."""
    change = np.array([[1, 0, 0], [7, 1, 0], [5, -6, 1]])
    new_lattice = Lattice(change @ structure.lattice.matrix)
    return PmgStructure(
        new_lattice,
        [site.species for site in structure],
        [site.coords for site in structure],
        coords_are_cartesian=True,
        to_unit_cell=True,
    )


def every_structure() -> list[tuple[str, PmgStructure]]:
    named = [(name, read_cif(name)) for name in (*ORDERED, *DISORDERED)]
    return [*named, ("rock salt", rock_salt()), ("half lithium", half_lithium())]


STRUCTURES = pytest.mark.parametrize(
    "structure", [s for _, s in every_structure()], ids=[n for n, _ in every_structure()]
)


def reference_nearest(
    structure: PmgStructure, radius: float = NEIGHBOUR_RADIUS
) -> tuple[float, float]:
    """min and occupancy-weighted mean nearest-neighbour distance from pymatgen's
    neighbour list (periodic images included, alternatives left out)."""
    centres, neighbours, _, distances = quietly(
        functools.partial(structure.get_neighbor_list, radius)
    )
    partial = np.array([not site.is_ordered for site in structure])
    alternative = (
        (centres != neighbours)
        & partial[centres]
        & partial[neighbours]
        & (distances < ALTERNATIVES)
    )
    nearest = np.full(len(structure), np.inf)
    np.minimum.at(nearest, centres[~alternative], distances[~alternative])
    assert np.isfinite(nearest).all(), "neighbour radius too small for the reference"
    weights = np.array([site.species.num_atoms for site in structure])
    return float(nearest.min()), float(nearest @ weights / weights.sum())


def test_names_are_unique_and_as_long_as_the_row() -> None:
    row = structure_features(message_of(rock_salt()))
    assert len(FEATURE_NAMES) == row.shape[0] == 173
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert FEATURE_NAMES[0] == "frac_H"
    assert FEATURE_NAMES[117] == "frac_Og"
    assert row.dtype == np.float32
    assert row.shape == (len(FEATURE_NAMES),)


@STRUCTURES
def test_rows_are_finite_float32(structure: PmgStructure) -> None:
    row = structure_features(message_of(structure))
    assert row.dtype == np.float32
    assert np.isfinite(row).all()


@STRUCTURES
def test_composition_is_pymatgens_fractional_composition(structure: PmgStructure) -> None:
    got = features(structure)
    expected = structure.composition.fractional_composition
    for z in range(1, 119):
        symbol = Element.from_Z(z).symbol
        assert got[f"frac_{symbol}"] == pytest.approx(expected[symbol], abs=1e-6), symbol
    assert sum(got[f"frac_{Element.from_Z(z).symbol}"] for z in range(1, 119)) == pytest.approx(1)
    assert got["n_elements"] == len(expected.elements)


@STRUCTURES
def test_cell_columns_match_pymatgen(structure: PmgStructure) -> None:
    got = features(structure)
    lattice = structure.lattice
    for name in ("a", "b", "c", "alpha", "beta", "gamma"):
        assert got[name] == pytest.approx(getattr(lattice, name), rel=1e-6), name
    atoms = structure.composition.num_atoms
    assert got["n_atoms"] == pytest.approx(atoms, rel=1e-6)
    assert got["volume_per_atom"] == pytest.approx(structure.volume / atoms, rel=1e-6)
    # gemmi's and pymatgen's standard atomic weights differ in the last digits.
    assert got["density"] == pytest.approx(float(structure.density), rel=1e-3)
    assert got["n_sites"] == sum(len(site.species) for site in structure)


@STRUCTURES
def test_packing_fraction_uses_covalent_radii(structure: PmgStructure) -> None:
    spheres = sum(
        amount * 4 / 3 * math.pi * gemmi.Element(element.symbol).covalent_r ** 3
        for element, amount in structure.composition.items()
    )
    got = features(structure)["packing_fraction"]
    assert got == pytest.approx(spheres / structure.volume, rel=1e-5)


@STRUCTURES
def test_symmetry_columns_match_spacegroup_analyzer(structure: PmgStructure) -> None:
    got = features(structure)
    found = analyzer(structure)
    assert got["space_group_number"] == found.get_space_group_number()
    one_hot = {name: got[f"crystal_system_{name}"] for name in module._CRYSTAL_SYSTEMS}
    assert one_hot == {name: float(name == found.get_crystal_system()) for name in one_hot}
    operations = quietly(functools.partial(found.get_symmetry_operations))
    inversion = any(np.allclose(op.rotation_matrix, -np.eye(3)) for op in operations)
    assert got["is_centrosymmetric"] == float(inversion)


def test_undetected_symmetry_gives_zeros() -> None:
    got = features(rock_salt(), symmetry=False)
    assert got["space_group_number"] == 0
    assert got["is_centrosymmetric"] == 0
    assert not any(got[f"crystal_system_{name}"] for name in module._CRYSTAL_SYSTEMS)


def test_space_group_tables_agree_with_spglib_and_pymatgen() -> None:
    first_hall: dict[int, int] = {}
    with warnings.catch_warnings():
        # spglib 2.8 announces its new error handling on every call.
        warnings.simplefilter("ignore", DeprecationWarning)
        for hall in range(1, 531):
            first_hall.setdefault(spglib.get_spacegroup_type(hall).number, hall)
        inversions = {
            number: any(
                (rotation == -np.eye(3, dtype=int)).all()
                for rotation in spglib.get_symmetry_from_database(hall)["rotations"]
            )
            for number, hall in first_hall.items()
        }
    assert sorted(inversions) == list(range(1, 231))
    assert sum(inversions.values()) == 92
    for number in range(1, 231):
        assert module._CENTROSYMMETRIC[number] == inversions[number], number
        system = SpaceGroup.from_int_number(number).crystal_system
        one_hot = module._CRYSTAL_SYSTEM_ONE_HOT[number]
        assert one_hot.sum() == 1
        assert module._CRYSTAL_SYSTEMS[int(one_hot.argmax())] == system, number


def test_period_and_group_match_pymatgen_for_every_element() -> None:
    for z in range(1, 119):
        element = Element.from_Z(z)
        assert module._period_and_group(z) == (element.row, element.group), element.symbol


def weighted_statistics(values: dict[str, float], composition: Composition) -> list[float]:
    fractions = composition.fractional_composition
    weights = np.array([fractions[symbol] for symbol in values])
    data = np.array(list(values.values()))
    mean = float(weights @ data)
    std = math.sqrt(float(weights @ (data - mean) ** 2))
    return [mean, std, data.min(), data.max(), data.max() - data.min()]


@STRUCTURES
def test_property_statistics_match_pymatgen_elements(structure: PmgStructure) -> None:
    got = features(structure)
    elements = structure.composition.elements
    reference = {
        "atomic_number": {e.symbol: e.Z for e in elements},
        "atomic_weight": {e.symbol: float(e.atomic_mass) for e in elements},
        "period": {e.symbol: e.row for e in elements},
        "group": {e.symbol: e.group for e in elements},
        "covalent_radius": {e.symbol: gemmi.Element(e.symbol).covalent_r for e in elements},
        "vdw_radius": {e.symbol: gemmi.Element(e.symbol).vdw_r for e in elements},
    }
    assert set(reference) == set(PROPERTIES)
    for prop, values in reference.items():
        expected = weighted_statistics(values, structure.composition)
        names = [f"{prop}_{stat}" for stat in ("mean", "std", "min", "max", "range")]
        # float32 row; pymatgen's and gemmi's atomic weights differ in the last digits.
        assert [got[name] for name in names] == pytest.approx(expected, rel=1e-4, abs=1e-4), prop


def test_single_element_has_zero_spread() -> None:
    iron = PmgStructure(Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])
    got = features(iron)
    for prop in PROPERTIES:
        assert got[f"{prop}_std"] == 0
        assert got[f"{prop}_range"] == 0
    # bcc Fe in a primitive cubic cell of one atom: the neighbours are its own images.
    assert got["min_interatomic_distance"] == pytest.approx(2.87, rel=1e-6)


@pytest.mark.parametrize("name", [*ORDERED, *DISORDERED])
def test_distances_match_pymatgen_neighbour_list(name: str) -> None:
    structure = read_cif(name)
    got = features(structure)
    shortest, mean = reference_nearest(structure)
    assert got["min_interatomic_distance"] == pytest.approx(shortest, rel=1e-5)
    assert got["mean_nearest_neighbour_distance"] == pytest.approx(mean, rel=1e-5)


@pytest.mark.parametrize("name", ["diffpy/PbTe.cif", "pymatgen/CsI3Pb.cif"])
def test_min_distance_is_the_distance_matrix_minimum(name: str) -> None:
    structure = read_cif(name)
    matrix = structure.distance_matrix
    off_diagonal = matrix[~np.eye(len(structure), dtype=bool)].min()
    assert features(structure)["min_interatomic_distance"] == pytest.approx(off_diagonal, 1e-5)


def test_rock_salt_distances() -> None:
    got = features(rock_salt())
    assert got["min_interatomic_distance"] == pytest.approx(5.64 / 2, rel=1e-6)
    assert got["mean_nearest_neighbour_distance"] == pytest.approx(5.64 / 2, rel=1e-6)


@pytest.mark.parametrize("name", ["pymatgen/CsI3Pb.cif", "gemmi/2013551.cif"])
def test_a_non_reduced_cell_gives_the_same_distances(name: str) -> None:
    structure = read_cif(name)
    other = skewed(structure)
    assert min(other.lattice.angles) < 20  # far from reduced
    got, original = features(other, symmetry=False), features(structure, symmetry=False)
    shortest, mean = reference_nearest(other)
    assert got["min_interatomic_distance"] == pytest.approx(shortest, rel=1e-5)
    assert got["mean_nearest_neighbour_distance"] == pytest.approx(mean, rel=1e-5)
    for name_ in ("min_interatomic_distance", "mean_nearest_neighbour_distance", "density"):
        assert got[name_] == pytest.approx(original[name_], rel=1e-5)


def test_a_site_far_from_all_others_is_measured_exactly() -> None:
    # A tight cluster in one corner of a big cell and one atom in the middle: the middle
    # atom's nearest neighbour is much further than the mean site spacing.
    cluster = [[x, y, z] for x, y, z in itertools.product((0.0, 0.05), repeat=3)]
    structure = PmgStructure(Lattice.cubic(20.0), ["C"] * 8 + ["Xe"], [*cluster, [0.5] * 3])
    shortest, mean = reference_nearest(structure, radius=20.0)
    got = features(structure, symmetry=False)
    assert got["min_interatomic_distance"] == pytest.approx(shortest, rel=1e-5)
    assert got["mean_nearest_neighbour_distance"] == pytest.approx(mean, rel=1e-5)
    assert mean > 1.1 * shortest  # the far atom counts


@pytest.mark.parametrize("first_reach", [0.05, 3.0])
@pytest.mark.parametrize("name", ["pymatgen/CsI3Pb.cif", *DISORDERED])
def test_distances_do_not_depend_on_the_first_search_radius(
    name: str, first_reach: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    structure = read_cif(name)
    monkeypatch.setattr(module, "_FIRST_REACH", first_reach)
    got = features(structure, symmetry=False)
    shortest, mean = reference_nearest(structure)
    assert got["min_interatomic_distance"] == pytest.approx(shortest, rel=1e-5)
    assert got["mean_nearest_neighbour_distance"] == pytest.approx(mean, rel=1e-5)


def test_reduced_basis_is_the_same_lattice_with_short_vectors() -> None:
    original = read_cif("pymatgen/CsI3Pb.cif").lattice.matrix
    matrix = skewed(read_cif("pymatgen/CsI3Pb.cif")).lattice.matrix
    reduced = module._reduced_basis(matrix)
    change = reduced @ np.linalg.inv(matrix)
    assert np.allclose(change, np.rint(change), atol=1e-9)
    assert abs(np.linalg.det(np.rint(change))) == pytest.approx(1)
    # CsI3Pb is orthorhombic: its reduced basis is a, b, c up to sign and order.
    assert sorted(np.linalg.norm(reduced, axis=1)) == pytest.approx(
        sorted(np.linalg.norm(original, axis=1))
    )


def test_partial_occupancy_weights_the_composition() -> None:
    got = features(half_lithium())
    assert got["frac_Li"] == pytest.approx(1 / 3)
    assert got["frac_O"] == pytest.approx(2 / 3)
    assert got["n_atoms"] == pytest.approx(1.5)
    assert got["n_sites"] == 2
    assert got["volume_per_atom"] == pytest.approx(64 / 1.5)
    assert got["mean_occupancy"] == pytest.approx(0.75)
    assert got["disorder_fraction"] == pytest.approx(0.5)
    assert got["atomic_number_mean"] == pytest.approx((0.5 * 3 + 8) / 1.5)


def test_shared_position_is_one_site_per_species_but_not_a_neighbour() -> None:
    structure = read_cif("pymatgen/site_type_symbol_test.cif")
    message = message_of(structure)
    assert len(message.sites) > len(structure)  # Ge and Sb share positions
    got = features(structure)
    assert got["min_interatomic_distance"] > 2.0
    assert got["disorder_fraction"] == pytest.approx(
        sum(len(s.species) for s in structure if not s.is_ordered) / len(message.sites)
    )


def test_large_cell_distances_use_the_first_500_sites() -> None:
    structure = read_cif(LARGE)
    assert len(structure) > module._MAX_DISTANCE_SITES
    assert all(len(site.species) == 1 for site in structure)  # message sites = pymatgen's
    first = PmgStructure.from_sites(structure.sites[: module._MAX_DISTANCE_SITES])
    shortest, mean = reference_nearest(first)
    got = features(structure)
    assert got["min_interatomic_distance"] == pytest.approx(shortest, rel=1e-5)
    assert got["mean_nearest_neighbour_distance"] == pytest.approx(mean, rel=1e-5)
    assert got["n_sites"] == len(structure)
    assert np.isfinite(list(got.values())).all()


def sodium_chloride() -> structure_pb2.Structure:
    return message_of(PmgStructure(Lattice.cubic(4.0), ["Na", "Cl"], [[0] * 3, [0.5] * 3]))


@pytest.mark.parametrize(
    ("arrays", "complaint"),
    [
        ({"atomic_numbers": np.array([0, 17], dtype=np.int32)}, "atomic number 0"),
        ({"atomic_numbers": np.array([11, 119], dtype=np.int32)}, "atomic number 119"),
        ({"occupancies": np.zeros(2)}, "no site is occupied"),
        ({"occupancies": np.array([1.0, -0.5])}, "not negative"),
        (
            {
                "atomic_numbers": np.zeros(0, dtype=np.int32),
                "occupancies": np.zeros(0),
                "fractional_coordinates": np.zeros((0, 3)),
            },
            "no sites",
        ),
        ({"fractional_coordinates": np.zeros((3, 3))}, "fractional_coordinates"),
        ({"fractional_coordinates": np.array([[0, 0, 0], [np.nan] * 3])}, "must be finite"),
    ],
)
def test_structures_the_parser_never_makes_are_refused(
    arrays: dict[str, npt.NDArray[np.generic]], complaint: str
) -> None:
    message = sodium_chloride()
    for field, array in arrays.items():
        getattr(message, field).CopyFrom(to_tensor(array))
    with pytest.raises(ValueError, match=complaint):
        structure_features(message)


def test_a_degenerate_cell_is_refused() -> None:
    message = sodium_chloride()
    message.lattice.matrix.CopyFrom(to_tensor(np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1]])))
    with pytest.raises(ValueError, match="degenerate"):
        structure_features(message)


def test_every_column_is_documented() -> None:
    doc = module.__doc__ or ""
    families = ("frac_", "crystal_system_", *PROPERTIES)
    plain = [name for name in FEATURE_NAMES if not name.startswith(families)]
    for name in (*plain, "frac_H", "frac_Og", *PROPERTIES, *module._CRYSTAL_SYSTEMS):
        assert f"`{name}`" in doc, name
