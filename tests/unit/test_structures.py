"""parse_structure's options: the requested cell (against pymatgen's standard cells), symmetry
tolerance (the spglib corpus's own space-group numbers), occupancy tolerance, strictness,
format detection, and the species a VASP 4 file needs."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from google.rpc import code_pb2

from qulab.client import from_tensor
from qulab.server.domain.structure_options import StructureLimits
from qulab.server.domain.structures import encode_structures, parse_structure
from qulab.server.errors import InvalidArgument
from qulab.v1 import structure_pb2
from tests.integration._status import unpack_status

DATA = Path(__file__).parent.parent / "data"
LIMITS = StructureLimits()
W = structure_pb2.StructureWarningKind
PBTE = DATA / "cif" / "diffpy" / "PbTe.cif"
SPGLIB = sorted((DATA / "poscar" / "spglib").iterdir())


def parse(content: bytes, **options: object) -> list[structure_pb2.Structure]:
    request = structure_pb2.ParseStructureRequest(
        content=content, options=structure_pb2.StructureOptions(**options)
    )
    return list(parse_structure(request, LIMITS).structures)


def kinds(structure: structure_pb2.Structure) -> set[int]:
    return {w.kind for w in structure.warnings}


def _pymatgen_cells(path: Path) -> tuple[object, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pymatgen.io.cif import CifParser
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        (structure,) = CifParser(str(path)).parse_structures(primitive=False)
        analyzer = SpacegroupAnalyzer(structure, symprec=0.01)
        return (
            analyzer.get_primitive_standard_structure(),
            analyzer.get_conventional_standard_structure(),
        )


@pytest.mark.parametrize(
    ("cell", "which"),
    [(structure_pb2.CELL_CHOICE_PRIMITIVE, 0), (structure_pb2.CELL_CHOICE_CONVENTIONAL, 1)],
)
def test_standard_cells_match_pymatgen(cell: int, which: int) -> None:
    (structure,) = parse(PBTE.read_bytes(), cell=cell)
    reference = _pymatgen_cells(PBTE)[which]
    assert len(structure.sites) == len(reference)  # type: ignore[arg-type]
    assert structure.volume == pytest.approx(reference.volume, rel=1e-6)  # type: ignore[attr-defined]
    composition = reference.composition.as_dict()  # type: ignore[attr-defined]
    assert {s.element for s in structure.sites} == set(composition)
    for element, amount in composition.items():
        assert sum(s.element == element for s in structure.sites) == amount
    assert structure.detected_symmetry.number == 225
    assert kinds(structure) == set()


def test_a_primitive_cell_of_a_disordered_structure_is_not_made() -> None:
    path = DATA / "cif" / "pymatgen" / "site_type_symbol_test.cif"
    (given,) = parse(path.read_bytes())
    (structure,) = parse(path.read_bytes(), cell=structure_pb2.CELL_CHOICE_PRIMITIVE)
    assert W.STRUCTURE_WARNING_KIND_CELL_NOT_STANDARDIZED in kinds(structure)
    assert len(structure.sites) == len(given.sites)
    assert structure.volume == given.volume


def _species(path: Path) -> list[str]:
    """Distinct stand-in elements, one per count of a VASP 4 file (line 6)."""
    counts = path.read_text().splitlines()[5].split()
    return ["H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg"][: len(counts)]


# The layer file's number (78) is a layer group, and the virtual structure's name lists
# several: neither is one space-group number.
SPACE_GROUP_NAMED = [p for p in SPGLIB if not p.name.startswith(("layer", "virtual"))]


@pytest.mark.parametrize("path", SPACE_GROUP_NAMED, ids=lambda p: p.name)
def test_spglib_corpus_symmetry_is_the_number_in_the_name(path: Path) -> None:
    """spglib's test files name their space group; the distorted one needs tolerance 0.1."""
    expected = int(re.findall(r"\d+", path.name)[0])
    text = path.read_bytes()
    species = _species(path)
    loose = 0.1 if path.name.startswith("distorted") else 0.01
    (structure,) = parse(text, species=species, symmetry_tolerance=loose)
    assert structure.detected_symmetry.number == expected
    assert structure.detected_symmetry.tolerance == loose
    if path.name.startswith("distorted"):
        (tight,) = parse(text, species=species, symmetry_tolerance=1e-5)
        assert tight.detected_symmetry.number != expected


def test_vasp4_without_species_is_refused_with_the_option_named() -> None:
    path = DATA / "poscar" / "spglib" / "cubic_POSCAR-225"
    with pytest.raises(InvalidArgument) as caught:
        parse(path.read_bytes())
    assert "options.species" in caught.value.message


def _shared_site_cif(first: float, second: float) -> bytes:
    return (
        "data_shared\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_symmetry_space_group_name_H-M 'P 1'\n"
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
        "_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n"
        f"Ge1 Ge 0 0 0 {first}\nSb1 Sb 0 0 0 {second}\n"
    ).encode()


def test_occupancy_sums_above_one_are_warned_then_refused() -> None:
    (fine,) = parse(_shared_site_cif(0.5, 0.5))
    assert kinds(fine) == set()
    (warned,) = parse(_shared_site_cif(0.52, 0.52))
    assert W.STRUCTURE_WARNING_KIND_OCCUPANCY_ABOVE_ONE in kinds(warned)
    with pytest.raises(InvalidArgument) as caught:
        parse(_shared_site_cif(0.6, 0.6))
    assert caught.value.reason == "OCCUPANCY_ABOVE_ONE"
    (tolerated,) = parse(_shared_site_cif(0.6, 0.6), occupancy_tolerance=0.25)
    assert W.STRUCTURE_WARNING_KIND_OCCUPANCY_ABOVE_ONE in kinds(tolerated)
    assert sorted(s.occupancy for s in tolerated.sites) == [0.6, 0.6]


def test_strict_refuses_what_is_otherwise_a_warning() -> None:
    overlap = (DATA / "poscar" / "pymatgen" / "POSCAR_overlap").read_bytes()
    (structure,) = parse(overlap)
    assert W.STRUCTURE_WARNING_KIND_OVERLAPPING_SITES in kinds(structure)
    with pytest.raises(InvalidArgument) as caught:
        parse(overlap, strict=True)
    assert caught.value.reason == "STRICT"
    assert "closer than 0.5 Å" in caught.value.message


def test_format_is_detected_and_a_wrong_one_is_refused() -> None:
    poscar = (DATA / "poscar" / "pymatgen" / "POSCAR_Fe3O4").read_bytes()
    (structure,) = parse(poscar)
    assert structure.source_format == structure_pb2.STRUCTURE_FORMAT_POSCAR
    (structure,) = parse(PBTE.read_bytes())
    assert structure.source_format == structure_pb2.STRUCTURE_FORMAT_CIF
    request = structure_pb2.ParseStructureRequest(
        content=poscar, format=structure_pb2.STRUCTURE_FORMAT_CIF
    )
    with pytest.raises(InvalidArgument):
        parse_structure(request, LIMITS)


def test_detection_can_be_turned_off() -> None:
    (structure,) = parse(PBTE.read_bytes(), detect_symmetry=False)
    assert not structure.HasField("detected_symmetry")
    assert kinds(structure) == set()


def test_tensors_and_lists_agree() -> None:
    (structure,) = parse((DATA / "poscar" / "pymatgen" / "CONTCAR.MD").read_bytes())
    n = len(structure.sites)
    np.testing.assert_array_equal(
        from_tensor(structure.fractional_coordinates), [s.fractional for s in structure.sites]
    )
    np.testing.assert_array_equal(
        from_tensor(structure.cartesian_coordinates), [s.cartesian for s in structure.sites]
    )
    np.testing.assert_array_equal(
        from_tensor(structure.atomic_numbers), [s.atomic_number for s in structure.sites]
    )
    np.testing.assert_array_equal(
        from_tensor(structure.velocities), [s.velocity for s in structure.sites]
    )
    assert from_tensor(structure.occupancies).shape == (n,)


def test_encode_item_errors_name_the_item_or_the_request_option() -> None:
    vasp4 = (DATA / "poscar" / "spglib" / "cubic_POSCAR-225").read_bytes()
    request = structure_pb2.EncodeStructureRequest(
        structures=[
            structure_pb2.StructureInput(content=PBTE.read_bytes()),
            structure_pb2.StructureInput(content=vasp4),
        ],
        options=structure_pb2.StructureOptions(species=["Na"]),  # one; the file has 3 counts
    )
    answer = encode_structures(request, LIMITS, first_index=5)
    assert [s.code for s in answer.item_status] == [0, code_pb2.INVALID_ARGUMENT]
    fields = [v.field for v in unpack_status(answer.item_status[1]).violations]
    assert fields == ["options.species"]
    request.options.ClearField("species")
    answer = encode_structures(request, LIMITS, first_index=5)
    fields = [v.field for v in unpack_status(answer.item_status[1]).violations]
    assert fields == ["structures[6].content"]
