"""The POSCAR reader and writer against the corpus in tests/data/poscar (see SOURCES.md):
the synthetic variants against expected.json, the real files against ASE and pymatgen where
SOURCES.md says they are right, and against the file text itself where neither is."""

from __future__ import annotations

import io
import json
import random
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import ase.data
import ase.io
import ase.units
import numpy as np
import numpy.typing as npt
import pytest
from pymatgen.io.vasp import Poscar

from qulab.server.domain._crystal import CellContents, StructureLimits
from qulab.server.domain._poscar import looks_like_poscar, read_poscar
from qulab.server.domain._writers import write_poscar
from qulab.server.errors import InvalidArgument
from qulab.v1 import structure_pb2

DATA = Path(__file__).resolve().parent.parent / "data" / "poscar"
EXPECTED = json.loads((DATA / "synthetic" / "expected.json").read_text())
LIMITS = StructureLimits()
TOLERANCE = 1e-6

SYNTHETIC = sorted(
    path.name
    for path in (DATA / "synthetic").glob("syn_*.vasp")
    if path.name != "syn_count_mismatch.vasp"
)
REAL = sorted(
    f"{folder}/{path.name}"
    for folder in ("pymatgen", "spglib")
    for path in (DATA / folder).iterdir()
)
# SOURCES.md: ASE fails on this one (and pymatgen reads it right).
ASE_FAILS = {"pymatgen/POSCAR_symbols_natoms_multilines"}
# Element symbols to hand a VASP 4 file: distinct, and not what its comments say (Og, Ts, ...).
SOME_ELEMENTS = ase.data.chemical_symbols[:0:-1]


def text(name: str) -> str:
    # Bytes, not read_text(): universal newlines would hide the CR in CRLF files.
    return (DATA / name).read_bytes().decode("utf-8")


def file_lines(name: str) -> list[str]:
    return text(name).replace("\r\n", "\n").split("\n")


def is_vasp4(name: str) -> bool:
    """No species line: the sixth line of the file starts with a number."""
    return file_lines(name)[5].split()[0].isdigit()


def readable(name: str) -> CellContents:
    """Our reading, with species for the VASP 4 files that do not name their elements."""
    species: list[str] = []
    if name.startswith("spglib/") and is_vasp4(name):
        species = SOME_ELEMENTS[: len(file_lines(name)[5].split())]
    return read_poscar(text(name), species, LIMITS)


def refusal(content: str, species: list[str] | None = None, **limits: int) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        read_poscar(content, species or [], StructureLimits(**limits))
    return caught.value


def ase_atoms(name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ase.io.read(DATA / name, format="vasp")


def pymatgen_poscar(name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Poscar.from_file(DATA / name, check_for_potcar=False)


def assert_same_mod_1(
    ours: npt.NDArray[np.float64], reference: Any, tol: float = TOLERANCE
) -> None:
    difference = np.asarray(ours) - np.asarray(reference, dtype=float)
    difference -= np.round(difference)
    assert np.abs(difference).max() < tol


def reference_fractional() -> npt.NDArray[np.float64]:
    return np.asarray(pymatgen_poscar(EXPECTED["reference"]).structure.frac_coords)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_every_synthetic_variant_is_the_reference_structure(name: str) -> None:
    cell = read_poscar(text(f"synthetic/{name}"), [], LIMITS)

    assert np.abs(cell.lattice - np.array(EXPECTED["lattice_A"])).max() < TOLERANCE
    assert abs(abs(np.linalg.det(cell.lattice)) - EXPECTED["volume_A3"]) < 1e-4
    assert len(cell.elements) == EXPECTED["natoms"]
    formula = "".join(f"{el}{n}" for el, n in Counter(cell.elements).items())
    assert formula == EXPECTED["formula"]
    assert_same_mod_1(cell.fractional, reference_fractional())
    assert cell.source_format == structure_pb2.STRUCTURE_FORMAT_POSCAR
    assert cell.declared is None
    assert np.array_equal(cell.occupancies, np.ones(EXPECTED["natoms"]))


def test_crlf_corpus_file_still_has_its_crlf_and_tabs() -> None:
    raw = (DATA / "synthetic" / "syn_crlf_tabs.vasp").read_bytes()
    assert b"\r\n" in raw
    assert b"\t" in raw


def test_name_and_labels_come_from_the_comment_and_the_counts() -> None:
    name = "pymatgen/POSCAR_Fe3O4"
    cell = read_poscar(text(name), [], LIMITS)

    assert cell.name == file_lines(name)[0].strip()
    symbols, counts = file_lines(name)[5].split(), [int(n) for n in file_lines(name)[6].split()]
    expected = [f"{s}{k}" for s, n in zip(symbols, counts, strict=True) for k in range(1, n + 1)]
    assert cell.labels == expected


def test_count_mismatch_names_the_line_and_the_counts() -> None:
    name = "synthetic/syn_count_mismatch.vasp"
    lines = [line for line in file_lines(name) if line]
    counts = lines[6].split()
    coordinate_lines = len(lines) - 8

    error = refusal(text(name))

    violation = error.violations[0]
    assert violation.field == "content"
    assert violation.line == len(lines)
    assert " ".join(counts) in violation.description
    assert str(sum(map(int, counts))) in violation.description
    assert f"found {coordinate_lines}" in violation.description


# SOURCES.md: ASE reads the spglib VASP 4 files wrong (elements from the comment) or not at all.
ASE_RIGHT = [
    n for n in REAL if n not in ASE_FAILS and not (n.startswith("spglib/") and is_vasp4(n))
]


@pytest.mark.parametrize("name", ASE_RIGHT)
def test_real_file_agrees_with_ase(name: str) -> None:
    atoms = ase_atoms(name)
    cell = read_poscar(text(name), [], LIMITS)

    assert cell.elements == atoms.get_chemical_symbols()
    assert np.abs(cell.lattice - atoms.cell.array).max() < TOLERANCE
    assert_same_mod_1(cell.fractional, atoms.get_scaled_positions(wrap=False))
    if atoms.has("momenta"):
        assert cell.velocities is not None
        raw = atoms.get_velocities() / (ase.units.Ang / ase.units.fs)
        assert np.abs(cell.velocities - raw).max() < 1e-12
    else:
        assert cell.velocities is None


@pytest.mark.parametrize("name", ["pymatgen/CONTCAR.MD", "pymatgen/CONTCAR.MD.npt"])
def test_md_velocities_agree_with_pymatgen(name: str) -> None:
    reference = np.asarray(pymatgen_poscar(name).velocities)
    cell = read_poscar(text(name), [], LIMITS)

    assert cell.velocities is not None
    assert np.abs(reference).max() > 0
    assert np.abs(cell.velocities - reference).max() < 1e-12


def test_velocities_with_a_direct_header_are_converted_with_the_lattice() -> None:
    lines = file_lines("synthetic/syn_velocities_block.vasp")
    header = lines.index("Cartesian")
    written = np.array([line.split() for line in lines[header + 1 : header + 15]], dtype=float)
    lines[header] = "Direct"

    cell = read_poscar("\n".join(lines), [], LIMITS)

    assert cell.velocities is not None
    expected = written @ np.array(EXPECTED["lattice_A"])
    assert np.abs(cell.velocities - expected).max() < 1e-9


def test_repeated_wrapped_species_blocks_agree_with_pymatgen() -> None:
    name = "pymatgen/POSCAR_symbols_natoms_multilines"
    structure = pymatgen_poscar(name).structure
    cell = read_poscar(text(name), [], LIMITS)

    assert len(cell.elements) == 53
    assert Counter(cell.elements) == Counter({"Cr": 16, "Fe": 35, "Ni": 2})
    assert abs(abs(np.linalg.det(cell.lattice)) - 621.3464) < 1e-4
    assert cell.elements == [site.specie.symbol for site in structure]
    assert np.abs(cell.lattice - structure.lattice.matrix).max() < TOLERANCE
    assert_same_mod_1(cell.fractional, structure.frac_coords)
    per_element = Counter[str]()
    for label, element in zip(cell.labels, cell.elements, strict=True):
        per_element[element] += 1
        assert label == f"{element}{per_element[element]}"


def test_vasp4_negative_scale_reads_elements_from_atom_labels() -> None:
    name = "pymatgen/POSCAR_FePO4_vasp4_negscale"
    cell = read_poscar(text(name), [], LIMITS)
    atoms = ase_atoms(name)

    assert Counter(cell.elements) == Counter({"Fe": 4, "P": 4, "O": 16})
    assert cell.elements == [line.split()[3] for line in file_lines(name)[7:31]]
    assert abs(abs(np.linalg.det(cell.lattice)) - 300.6569) < 1e-4
    assert abs(np.linalg.det(cell.lattice) - atoms.get_volume()) < 1e-6
    assert np.abs(cell.lattice - atoms.cell.array).max() < TOLERANCE


def test_vasp4_species_in_the_comment_line() -> None:
    cell = read_poscar(text("synthetic/syn_vasp4_species_in_comment.vasp"), [], LIMITS)

    assert Counter(cell.elements) == Counter({"Fe": 6, "O": 8})


@pytest.mark.parametrize("name", [n for n in REAL if n.startswith("spglib/") and is_vasp4(n)])
def test_vasp4_without_names_is_refused_and_read_with_species(name: str) -> None:
    lines = file_lines(name)
    counts = [int(n) for n in lines[5].split()]
    species = SOME_ELEMENTS[: len(counts)]

    error = refusal(text(name))
    assert "options.species" in error.violations[0].description
    assert error.violations[0].line == 6

    cell = read_poscar(text(name), species, LIMITS)
    scale = float(lines[1].split()[0])
    written = np.array([line.split()[:3] for line in lines[2:5]], dtype=float)
    assert scale > 0
    assert np.abs(cell.lattice - scale * written).max() < 1e-12
    assert cell.elements == [s for s, n in zip(species, counts, strict=True) for _ in range(n)]
    assert lines[6].strip()[0] in "dD"
    direct = np.array([line.split()[:3] for line in lines[7 : 7 + sum(counts)]], dtype=float)
    assert np.abs(cell.fractional - direct).max() < 1e-12


def test_species_must_match_the_species_line() -> None:
    content = text("pymatgen/POSCAR_Fe3O4")

    assert read_poscar(content, ["fe", "O"], LIMITS).elements[0] == "Fe"
    error = refusal(content, ["O", "Fe"])
    assert error.violations[0].field == "options.species"
    assert error.violations[0].line == 6


def test_species_for_vasp4_must_be_one_per_count() -> None:
    error = refusal(text("spglib/cubic_POSCAR-225"), ["K", "Sn"])
    assert error.violations[0].field == "options.species"
    assert "3 counts" in error.violations[0].description


def test_unknown_species_names_token_and_line() -> None:
    lines = file_lines("pymatgen/POSCAR_Fe3O4")
    lines[5] = "Fe Qz"

    error = refusal("\n".join(lines))

    assert error.violations[0].line == 6
    assert "'Qz'" in error.violations[0].description


@pytest.mark.parametrize(
    "name", ["synthetic/syn_selective_direct.vasp", "synthetic/syn_selective_cartesian_abbrev.vasp"]
)
def test_selective_dynamics_flags_are_those_of_the_file(name: str) -> None:
    lines = file_lines(name)
    start = 9
    written = [[flag == "T" for flag in line.split()[3:6]] for line in lines[start : start + 14]]

    cell = read_poscar(text(name), [], LIMITS)

    assert cell.selective_dynamics is not None
    assert cell.selective_dynamics.tolist() == written
    if name.endswith("selective_direct.vasp"):
        assert cell.selective_dynamics[4].tolist() == [False, False, True]


@pytest.mark.parametrize("flags", [".T. .F. .t.", "t f T", ".TRUE. .false. T"])
def test_selective_dynamics_flags_in_fortran_spellings(flags: str) -> None:
    lines = file_lines("synthetic/syn_selective_direct.vasp")
    lines[13] = lines[13].split("F F T")[0] + flags

    cell = read_poscar("\n".join(lines), [], LIMITS)

    assert cell.selective_dynamics is not None
    first = flags.split()
    assert cell.selective_dynamics[4].tolist() == [f.strip(".").lower()[0] == "t" for f in first]


def _grouped(cell: CellContents) -> list[int]:
    rank: dict[str, int] = {}
    for element in cell.elements:
        rank.setdefault(element, len(rank))
    return sorted(range(len(cell.elements)), key=lambda i: rank[cell.elements[i]])


@pytest.mark.parametrize("name", [f"synthetic/{n}" for n in SYNTHETIC] + REAL)
def test_round_trip_through_write_poscar(name: str) -> None:
    cell = readable(name)
    order = _grouped(cell)

    again = read_poscar(write_poscar(cell), [], LIMITS)

    assert again.elements == [cell.elements[i] for i in order]
    assert np.abs(again.lattice - cell.lattice).max() < 1e-12
    assert np.abs(again.fractional - cell.fractional[order]).max() < 1e-12
    if cell.selective_dynamics is None:
        assert again.selective_dynamics is None
    else:
        assert again.selective_dynamics is not None
        assert np.array_equal(again.selective_dynamics, cell.selective_dynamics[order])
    if cell.velocities is None:
        assert again.velocities is None
    else:
        assert again.velocities is not None
        assert np.abs(again.velocities - cell.velocities[order]).max() < 1e-12
    assert again.name == cell.name


@pytest.mark.parametrize(
    "name", ["pymatgen/POSCAR_Fe3O4", "pymatgen/CONTCAR.MD", "synthetic/syn_kartesian_scaled.vasp"]
)
def test_written_file_reads_the_same_in_ase(name: str) -> None:
    written = write_poscar(read_poscar(text(name), [], LIMITS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = ase.io.read(io.StringIO(written), format="vasp")
    reference = ase_atoms(name)

    assert ours.get_chemical_symbols() == reference.get_chemical_symbols()
    assert np.abs(ours.cell.array - reference.cell.array).max() < TOLERANCE
    assert np.abs(ours.positions - reference.positions).max() < TOLERANCE
    assert np.abs(ours.get_velocities() - reference.get_velocities()).max() < 1e-12


def test_written_ungrouped_elements_read_the_same_in_pymatgen() -> None:
    name = "pymatgen/POSCAR_symbols_natoms_multilines"
    written = write_poscar(read_poscar(text(name), [], LIMITS))
    reference = pymatgen_poscar(name).structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = Poscar.from_str(written).structure

    assert ours.composition == reference.composition
    assert written.splitlines()[5].split() == ["Fe", "Cr", "Ni"]
    assert np.abs(ours.lattice.matrix - reference.lattice.matrix).max() < 1e-12
    assert ours.matches(reference)


def test_write_refuses_partial_occupancy() -> None:
    cell = read_poscar(text("pymatgen/POSCAR_C2"), [], LIMITS)
    cell.occupancies = np.array([1.0, 0.5])

    with pytest.raises(InvalidArgument) as caught:
        write_poscar(cell)

    violation = caught.value.violations[0]
    assert violation.field == "output_format"
    assert violation.reason == "NOT_REPRESENTABLE"
    assert "C2" in violation.description
    assert "0.5" in violation.description


def test_write_without_a_name_and_with_newlines() -> None:
    cell = read_poscar(text("pymatgen/POSCAR_C2"), [], LIMITS)

    cell.name = ""
    assert write_poscar(cell).splitlines()[0] == "QuLab"
    cell.name = "two\nlines\r\n"
    assert write_poscar(cell).splitlines()[0] == "two lines"


@pytest.mark.parametrize("name", [f"synthetic/{n}" for n in SYNTHETIC] + REAL)
def test_every_corpus_file_looks_like_a_poscar(name: str) -> None:
    assert looks_like_poscar(text(name))


@pytest.mark.parametrize(
    "content",
    [
        "",
        "data_NaCl\n_cell_length_a 5.64\n_cell_length_b 5.64\n_cell_length_c 5.64\n",
        "3\nwater\nO 0 0 0\nH 0 0 1\nH 0 1 0\n",
        "name\n1 2\n1 0 0\n0 1 0\n0 0 1\n",
    ],
)
def test_other_texts_do_not_look_like_a_poscar(content: str) -> None:
    assert not looks_like_poscar(content)


def _fe3o4_with(line: int, replacement: str) -> str:
    lines = file_lines("pymatgen/POSCAR_Fe3O4")
    lines[line - 1] = replacement
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("", 1),
        ("just one line", 2),
        (_fe3o4_with(2, "0.0"), 2),
        (_fe3o4_with(2, "nan"), 2),
        (_fe3o4_with(2, "1.0 -1.0 1.0"), 2),
        (_fe3o4_with(2, "1.0 1.0"), 2),
        (_fe3o4_with(4, "1.0 inf 0"), 4),
        (_fe3o4_with(5, "-1.477210 4.896343 0.000000"), 3),
        (_fe3o4_with(7, "6 eight"), 7),
        (_fe3o4_with(7, "6 8 1"), 7),
        (_fe3o4_with(7, "0 0"), 7),
        (_fe3o4_with(8, ""), 8),
        (_fe3o4_with(8, "0.5 0.5 0.5"), 8),
        (_fe3o4_with(12, "0.1 nan 0.3"), 12),
        (_fe3o4_with(12, "0.1 0.2"), 12),
        (_fe3o4_with(7, "6 7"), 22),
    ],
)
def test_bad_input_is_refused_at_its_line(content: str, line: int) -> None:
    error = refusal(content)
    assert error.violations[0].line == line
    assert f"line {line}:" in error.violations[0].description


def test_truncated_coordinate_block_is_a_count_mismatch() -> None:
    lines = [line for line in file_lines("pymatgen/POSCAR_Fe3O4") if line][:-3]

    error = refusal("\n".join(lines))

    assert error.violations[0].line == len(lines)
    assert "expected 14 coordinate lines (counts 6 8), found 11" in error.violations[0].description


def test_counts_over_the_limit_are_refused_before_reading_atoms() -> None:
    for counts in ("999999999999 8", "9" * 5000 + " 8", " ".join(["1"] * 30_000)):
        error = refusal(_fe3o4_with(7, counts))
        assert error.violations[0].reason == "LIMIT_EXCEEDED"
        assert error.violations[0].line == 7
    vasp4 = file_lines("pymatgen/POSCAR_FePO4_vasp4_negscale")
    vasp4[5] = "999999999999"
    assert refusal("\n".join(vasp4)).violations[0].reason == "LIMIT_EXCEEDED"
    assert refusal(text("pymatgen/POSCAR_Fe3O4"), max_sites=13).reason == "LIMIT_EXCEEDED"
    assert refusal(text("pymatgen/POSCAR_Fe3O4"), max_bytes=100).reason == "LIMIT_EXCEEDED"


@pytest.mark.parametrize("seed", range(20))
def test_binary_junk_is_refused(seed: int) -> None:
    junk = random.Random(seed).randbytes(4096)
    refusal(junk.decode("latin-1"))
    refusal(text("pymatgen/POSCAR_Fe3O4")[:200] + junk.decode("latin-1"))


@pytest.mark.parametrize(
    ("name", "last_atom_line"),
    [
        ("pymatgen/POSCAR_Fe3O4", 22),
        ("pymatgen/CONTCAR.MD.npt", 16),
        ("synthetic/syn_selective_direct.vasp", 23),
    ],
)
def test_every_truncation_is_refused_or_read(name: str, last_atom_line: int) -> None:
    content = text(name)
    last_atom_start = 0
    for _ in range(last_atom_line - 1):
        last_atom_start = content.index("\n", last_atom_start) + 1
    last_atom_end = content.index("\n", last_atom_start)
    atoms = len(read_poscar(content, [], LIMITS).elements)

    for end in range(len(content)):
        if end <= last_atom_start:
            refusal(content[:end])
            continue
        # A cut inside the last atom's numbers can leave a valid (shorter) number.
        try:
            assert len(read_poscar(content[:end], [], LIMITS).elements) == atoms
        except InvalidArgument:
            assert end < last_atom_end


def _vasp4_with_labels(comment: str, labels: list[str]) -> str:
    lines = file_lines("synthetic/syn_vasp4_species_in_comment.vasp")
    lines[0] = comment
    for k, label in enumerate(labels):
        lines[7 + k] += f" {label}"
    return "\n".join(lines)


def test_vasp4_labels_and_comment_must_agree() -> None:
    labels = ["Fe"] * 6 + ["O"] * 8

    agreeing = read_poscar(_vasp4_with_labels("Fe O", labels), [], LIMITS)
    assert agreeing.elements == labels
    assert read_poscar(_vasp4_with_labels("magnetite", labels), [], LIMITS).elements == labels

    error = refusal(_vasp4_with_labels("O Fe", labels))
    assert "options.species" in error.violations[0].description


@pytest.mark.parametrize(
    ("comment", "labels"),
    [
        ("magnetite", ["fe"] * 6 + ["o"] * 8),
        ("magnetite", ["Fe"] * 5 + ["O"] * 9),
        ("magnetite", ["Fe1"] * 6 + ["O1"] * 8),
        ("FE O", []),
        ("Fe O Fe", []),
        ("Fe3O4", []),
    ],
)
def test_vasp4_guesses_are_refused_when_not_clear_cut(comment: str, labels: list[str]) -> None:
    error = refusal(_vasp4_with_labels(comment, labels))
    assert "options.species" in error.violations[0].description
    assert error.violations[0].line == 6


def test_fortran_exponents_and_comments_after_counts() -> None:
    lines = file_lines("pymatgen/POSCAR_Fe3O4")
    lines[6] = "6 8 ! Fe then O"
    lines[8] = "1.32170D-01 2.64340d-01 0.575230"

    cell = read_poscar("\n".join(lines), [], LIMITS)

    assert np.abs(cell.fractional[0] - [0.13217, 0.26434, 0.57523]).max() < 1e-15
    assert len(cell.elements) == 14


def test_cartesian_positions_take_the_three_scale_factors() -> None:
    name = "synthetic/syn_three_scale_factors.vasp"
    lines = file_lines(name)
    factors = np.array(lines[1].split(), dtype=float)
    cartesian = reference_fractional() @ np.array(EXPECTED["lattice_A"]) / factors
    lines[7] = "Cartesian"
    lines[8:22] = [" ".join(f"{x:.12f}" for x in row) for row in cartesian]

    cell = read_poscar("\n".join(lines), [], LIMITS)

    assert_same_mod_1(cell.fractional, reference_fractional())


@pytest.mark.parametrize(
    "after",
    [
        ["", "           1", "   2.00000000000000", "  0.1E+01 0.0 0.0 0.0"]
        + ["  0.1 0.2 0.3"] * 42,
        ["           1"] + ["  0.1 0.2 0.3"] * 42,
    ],
)
def test_predictor_corrector_without_velocities_is_ignored(after: list[str]) -> None:
    lines = [line for line in file_lines("pymatgen/POSCAR_Fe3O4") if line] + after

    cell = read_poscar("\n".join(lines), [], LIMITS)

    assert cell.velocities is None
    assert len(cell.elements) == 14


def test_wide_numbers_survive_the_round_trip() -> None:
    cell = read_poscar(text("pymatgen/POSCAR_C2"), [], LIMITS)
    cell.lattice = cell.lattice * 1e5
    cell.fractional = np.array([[-12.5, 123.25, -999.0], [1e-17, -0.0, 7.0]])
    cell.velocities = np.array([[1e-300, -1e300, 0.0], [-2.5e-5, 3.0, -0.0]])
    cell.selective_dynamics = np.array([[True, False, True], [False, False, False]])

    again = read_poscar(write_poscar(cell), [], LIMITS)

    assert np.array_equal(again.lattice, cell.lattice)
    assert np.abs(again.fractional - cell.fractional).max() < 1e-12
    assert again.velocities is not None
    assert np.array_equal(again.velocities, cell.velocities)
    assert again.selective_dynamics is not None
    assert np.array_equal(again.selective_dynamics, cell.selective_dynamics)
