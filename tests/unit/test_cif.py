"""CIF reading against the corpus in tests/data/cif (SOURCES.md there: what each file exercises,
what gemmi, pymatgen and ASE made of it, and what QuLab does with it), and against hostile input.

pymatgen is the reference for the cell contents and pymatgen's SpacegroupAnalyzer for the
detected space group, on every file where SOURCES.md says pymatgen reads it right. pymatgen
objects are only ever references: nothing pymatgen makes is handed to QuLab.
"""

from __future__ import annotations

import functools
import hashlib
import re
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
from pymatgen.core import Structure as PmgStructure
from pymatgen.io.cif import CifParser
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from qulab.server.domain._cif import read_cif
from qulab.server.domain._crystal import CellContents
from qulab.server.domain.structure_options import StructureLimits
from qulab.server.domain.structures import parse_structure, write_structure
from qulab.server.errors import InvalidArgument
from qulab.tensors import from_tensor
from qulab.v1 import structure_pb2

DATA = Path(__file__).resolve().parent.parent / "data" / "cif"
LIMITS = StructureLimits()
W = structure_pb2.StructureWarningKind
CIF = structure_pb2.STRUCTURE_FORMAT_CIF
POSCAR = structure_pb2.STRUCTURE_FORMAT_POSCAR
T = TypeVar("T")


class Block(NamedTuple):
    """One structure parse_structure returns: its data block, formula, number of sites, where
    its symmetry came from (SpaceGroupSource without the prefix) and its kinds of warning."""

    name: str
    formula: str
    sites: int
    source: str
    warnings: frozenset[str] = frozenset()


class Refused(NamedTuple):
    """A file parse_structure refuses: a substring of the message and where it says the
    problem is. `where` is "syntax" (the line, given here), "tag" (the data block, and the
    CIF tag with the line of that tag or of the loop holding it), "sites" (the data block and
    a site label) or "file" (no data block holds a structure, so there is nothing to name)."""

    text: str
    where: str
    line: int | None = None


def parsed_as(name: str, formula: str, sites: int, source: str, *kinds: str) -> tuple[Block]:
    return (Block(name, formula, sites, source, frozenset(kinds)),)


_OCC_UNKNOWN = "OCCUPANCY_UNKNOWN"
_NOT_ELEMENT_MAX = "_atom_site_type_symbol: site max: '?' is not an element"
# The atom_site loop lists symmetry copies too (Nd1A*, C8A*...): full atoms on one position.
_DUPLICATED = ("OVERLAPPING_SITES", "FORMULA_MISMATCH", "SYMMETRY_NOT_DETECTED")
_MAGNETIC = "data_5yOhtAoR: _parent_space_group.name_h-m: magnetic CIF (magCIF) is not supported"
_NO_STRUCTURE = "no data block holds a structure"
# Every corpus file and what parse_structure does with it (SOURCES.md says why).
OUTCOMES: dict[str, tuple[Block, ...] | Refused] = {
    "cod-tools/1000002-occupancy-questionmarks.cif": parsed_as(
        "1000002", "C12 H12 O28 Sr4", 56, "HALL", _OCC_UNKNOWN
    ),
    "cod-tools/1000002-test-hall.cif": parsed_as(
        "1000002.cif", "C12 H12 O28 Sr4", 56, "HALL", _OCC_UNKNOWN
    ),
    "cod-tools/1000002-test-hm.cif": parsed_as(
        "1000002.cif", "C12 H12 O28 Sr4", 56, "HERMANN_MAUGUIN", _OCC_UNKNOWN
    ),
    "cod-tools/1000002-test-symop.cif": Refused(_NOT_ELEMENT_MAX, "tag"),
    "cod-tools/1000002-unknown-atom-type.cif": Refused(_NOT_ELEMENT_MAX, "tag"),
    "cod-tools/1000055-unrecognised-spacegroup.cif": parsed_as(
        "1000055", "B6 La", 7, "HERMANN_MAUGUIN"
    ),
    "cod-tools/1001012-no-cell.cif": Refused(
        "data_1001012: _cell_length_a: missing: a structure needs a complete unit cell", "tag"
    ),
    "cod-tools/1004000-atom-names-not-unique.cif": parsed_as(
        "1004000", "C6 H30 N6 S8 W6", 56, "OPERATIONS"
    ),
    "cod-tools/1004001-disorder.cif": parsed_as("d5", "C288 H648 P24 S32 W24", 1504, "OPERATIONS"),
    "cod-tools/2-entries-AMCSD-cifdata.cif": (
        Block(
            "global_00001",
            "F Fe12.2 Mg1.8 O47 Si16",
            96,
            "OPERATIONS",
            frozenset({"FORMULA_MISMATCH"}),
        ),
        Block("global_00002", "Pb4 S4", 8, "OPERATIONS"),
    ),
    "cod-tools/2000000-no-spacegroup.cif": parsed_as(
        "2000000", "C38 H76 Co Nd6 O54", 175, "OPERATIONS", *_DUPLICATED
    ),
    "cod-tools/2000000-no-symops.cif": parsed_as(
        "2000000", "C38 H76 Co Nd6 O54", 175, "HERMANN_MAUGUIN", *_DUPLICATED
    ),
    "cod-tools/2000000-only-ITC-number.cif": parsed_as(
        "2000000", "C38 H76 Co Nd6 O54", 175, "NUMBER", *_DUPLICATED
    ),
    "cod-tools/2000127-unknown-coordinates.cif": Refused(
        "data_2000127: _atom_site_label: the atom_site loop has no site, only '?' values", "tag"
    ),
    "cod-tools/2000135-dummy-atom-coordinates.cif": Refused(
        "data_2000135: _atom_site_fract_x: site (unlabelled): unknown coordinates", "tag"
    ),
    "cod-tools-syntax/4025758-broken-loop.cif": Refused(
        "CIF syntax error: unterminated 'string'", "syntax", 10
    ),
    "cod-tools-syntax/cif2-unicode-deeply-nested.cif": Refused(
        "CIF syntax error: parse error", "syntax", 13
    ),
    "cod-tools-syntax/ctrl-z.cif": Refused("CIF syntax error: parse error", "syntax", 9),
    "cod-tools-syntax/duplicate-tags.cif": Refused(
        "CIF syntax error: duplicate tag _same_line", "syntax", 3
    ),
    "cod-tools-syntax/headerless.cif": Refused(
        "CIF syntax error: expected block header (data_)", "syntax", 1
    ),
    "cod-tools-syntax/non-ascii.cif": Refused("CIF syntax error: parse error", "syntax", 5),
    "cod-tools-syntax/save_block_01.cif": Refused(_NO_STRUCTURE, "file"),
    "cod-tools-syntax/unclosed-quote.cif": Refused(
        'CIF syntax error: unterminated "string"', "syntax", 3
    ),
    "diffpy/LiCl-bad.cif": Refused("CIF syntax error: unterminated 'string'", "syntax", 14),
    "diffpy/PbTe.cif": parsed_as("LeadTelluride", "Pb4 Te4", 8, "OPERATIONS"),
    "diffpy/TeI-unkocc.cif": parsed_as("TeI", "I8 Te8", 16, "HERMANN_MAUGUIN", _OCC_UNKNOWN),
    "diffpy/badspacegroup.cif": parsed_as(
        "1100106",
        "Al2 K Mg O6 Si2",
        12,
        "UNSPECIFIED",
        "SPACE_GROUP_UNREADABLE",
        "ASSUMED_P1",
    ),
    "diffpy/curlybrackets.cif": parsed_as("4341415", "F12 Fe4 Na4", 20, "OPERATIONS"),
    "diffpy/customsg.cif": parsed_as("9008569", "C4", 4, "OPERATIONS", "SPACE_GROUP_INCONSISTENT"),
    "diffpy/graphite.cif": parsed_as("9008569", "C4", 4, "OPERATIONS"),
    "diffpy/nosites.cif": Refused(
        "data_6000333: _atom_site_label: the atom_site loop has no site, only '?' values", "tag"
    ),
    "gemmi/1011031.cif": parsed_as("1011031", "C4 Si4", 8, "OPERATIONS"),
    "gemmi/2013551.cif": parsed_as("2013551", "I2 Mg", 3, "OPERATIONS"),
    # FORMULA_MISMATCH: _chemical_formula_sum rounds the In occupancy 0.0672 to 0.07.
    "gemmi/4003024.cif": parsed_as(
        "4003024", "Cl3 Cs In0.0672 Sn0.9", 6, "OPERATIONS", "FORMULA_MISMATCH"
    ),
    "gemmi/misc_syntax.cif": Refused(_NO_STRUCTURE, "file"),
    "pymatgen/CsI3Pb.cif": parsed_as("4335639", "Cs4 I12 Pb4", 20, "OPERATIONS"),
    "pymatgen/Li10GeP2S12.cif": parsed_as(
        "VESTA_phase_1", "Ge2.06 Li20.2 P3.94 S24", 62, "OPERATIONS"
    ),
    "pymatgen/OneLineSymmP1.cif": parsed_as("2002297", "Ga4 O8 Pb2", 14, "OPERATIONS"),
    "pymatgen/PF_sd_1601634.cif": Refused(
        "data_sm_isp_SD1601634-standardized_unitcell: _atom_site_type_symbol: site OH2: "
        "'OH2' is not an element",
        "tag",
    ),
    "pymatgen/Senegalite_implicit_hydrogen.cif": Refused(
        "site Wat: 'Wat' is not an element", "tag"
    ),
    "pymatgen/bad-unicode-gh-2947.mcif": Refused("CIF syntax error: parse error", "syntax", 29),
    "pymatgen/cif_implicit_hydrogens_cod_1011130.cif": parsed_as(
        "1011130", "Cl4 N4", 8, "OPERATIONS", "FORMULA_MISMATCH"
    ),
    "pymatgen/magnetic.incommensurate.example.Cr.mcif": Refused(_MAGNETIC, "tag"),
    "pymatgen/magnetic.ncl.example.GdB4.mcif": Refused(_MAGNETIC, "tag"),
    "pymatgen/nosymm.cif": parsed_as("2002023", "C60 H96 O8", 164, "HALL"),
    "pymatgen/site_type_symbol_test.cif": parsed_as(
        "Ge2Sb2Te5_(Fm3m)", "Ge1.6 Sb1.6 Te4", 12, "OPERATIONS"
    ),
    "pymatgen/srycoo.cif": Refused("CIF syntax error: unterminated 'string'", "syntax", 14),
}
PARSED = sorted(name for name, outcome in OUTCOMES.items() if not isinstance(outcome, Refused))
TAG_REFUSALS = sorted(
    name
    for name, outcome in OUTCOMES.items()
    if isinstance(outcome, Refused) and outcome.where == "tag"
)
BLOCKS = [
    (name, block.name)
    for name, outcome in sorted(OUTCOMES.items())
    if not isinstance(outcome, Refused)
    for block in outcome
]

# pymatgen fails on these for a reason unrelated to the structure; the text handed to pymatgen
# (never to QuLab) is patched, and then pymatgen is a reference for them too.
_ATTACHED_H = ((") ? 4 e ? d", ") 1.0 4 e 0 d"),)
PYMATGEN_PATCHES: dict[str, tuple[tuple[str, str], ...]] = {
    # pymatgen crashes on '?' in _atom_site_attached_hydrogens (float('?')); the '?'
    # occupancies next to it are 1 for both readers.
    "cod-tools/1000002-occupancy-questionmarks.cif": _ATTACHED_H,
    "cod-tools/1000002-test-hall.cif": _ATTACHED_H,
    "cod-tools/1000002-test-hm.cif": _ATTACHED_H,
    # pymatgen does not know the pre-1983 symbol "P m 3 m" of P m -3 m (221) and falls back to
    # P 1 (B1 La1, SOURCES.md); LaB6 has its B on 6f (1/2, 1/2, z).
    "cod-tools/1000055-unrecognised-spacegroup.cif": (('"P m 3 m"', '"P m -3 m"'),),
}
# Blocks both read where pymatgen is wrong: left out of the comparison.
PYMATGEN_WRONG: dict[tuple[str, str], str] = {
    ("cod-tools/2-entries-AMCSD-cifdata.cif", "global_00001"): (
        "pymatgen reads the label O-H3 (no type_symbol column) as O plus H and then refuses "
        "the O-H3/F3 position for occupancy 2; it is O 0.75 + F 0.25"
    ),
}

# Blocks QuLab reads with a warning and pymatgen refuses: nothing to compare with.
PYMATGEN_REFUSES: dict[tuple[str, str], str] = {
    (f"cod-tools/2000000-{variant}.cif", "2000000"): (
        "the atom_site loop lists symmetry copies of its atoms; pymatgen refuses the doubled "
        "positions (occupancy 2), QuLab reads them with OVERLAPPING_SITES"
    )
    for variant in ("no-spacegroup", "no-symops", "only-ITC-number")
}
NOT_COMPARED = {**PYMATGEN_WRONG, **PYMATGEN_REFUSES}

ORDERED_ONLY = (
    "spglib needs one atom type per position: a mixed site becomes a type made of its "
    "(element, occupancy) set, and QuLab and pymatgen group partial sites differently "
    "(0.05 Å merge versus pymatgen's site_tolerance), so the two detections do not test "
    "the same thing"
)


def quietly(make: Callable[[], T]) -> T:
    """Call pymatgen: its CIF notes and spglib's deprecation notices are not under test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make()


def content(name: str) -> bytes:
    return (DATA / name).read_bytes()


def text(name: str) -> str:
    return content(name).decode("utf-8", "replace")


def parse(
    data: bytes,
    file_format: structure_pb2.StructureFormat.ValueType = structure_pb2.STRUCTURE_FORMAT_CIF,
    limits: StructureLimits = LIMITS,
) -> list[structure_pb2.Structure]:
    request = structure_pb2.ParseStructureRequest(content=data, format=file_format)
    return list(parse_structure(request, limits).structures)


@functools.cache
def parsed(name: str) -> tuple[structure_pb2.Structure, ...]:
    return tuple(parse(content(name)))


def structure_of(name: str, block: str) -> structure_pb2.Structure:
    (found,) = (s for s in parsed(name) if s.name == block)
    return found


def refusal(data: bytes, limits: StructureLimits = LIMITS) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        parse(data, limits=limits)
    return caught.value


def write(name: str, output: structure_pb2.StructureFormat.ValueType, block: str = "") -> str:
    request = structure_pb2.WriteStructureRequest(
        input=structure_pb2.StructureInput(content=content(name), block=block),
        output_format=output,
    )
    return write_structure(request, LIMITS).text


def kind_names(structure: structure_pb2.Structure) -> frozenset[str]:
    return frozenset(
        W.Name(w.kind).removeprefix("STRUCTURE_WARNING_KIND_") for w in structure.warnings
    )


def element(symbol: str) -> str:
    """Deuterium and tritium are hydrogen (QuLab's reading, and the one compared)."""
    return "H" if symbol in ("D", "T") else symbol


Site = tuple[str, float, npt.NDArray[np.float64]]


def our_sites(structure: structure_pb2.Structure) -> list[Site]:
    return [(s.element, s.occupancy, np.array(s.fractional)) for s in structure.sites]


def cell_sites(cell: CellContents) -> list[Site]:
    return [
        (e, float(o), np.asarray(xyz))
        for e, o, xyz in zip(cell.elements, cell.occupancies, cell.fractional, strict=True)
    ]


def pymatgen_sites(structure: PmgStructure) -> list[Site]:
    """One (element, occupancy, position) per species of each pymatgen site: pymatgen merges
    the species sharing a position into one disordered site, QuLab lists them apart."""
    return [
        (element(species.symbol), float(occupancy), np.asarray(site.frac_coords))
        for site in structure
        for species, occupancy in site.species.items()
    ]


def amounts(sites: Iterable[Site]) -> dict[str, float]:
    total: defaultdict[str, float] = defaultdict(float)
    for symbol, occupancy, _ in sites:
        total[symbol] += occupancy
    return dict(total)


def assert_same_amounts(ours: dict[str, float], theirs: dict[str, float]) -> None:
    assert sorted(ours) == sorted(theirs)
    for symbol, amount in ours.items():
        assert amount == pytest.approx(theirs[symbol], abs=1e-6), symbol


def assert_same_sites(ours: list[Site], theirs: list[Site], tolerance: float) -> None:
    """The same multiset of (element, occupancy, position modulo 1)."""
    assert len(ours) == len(theirs)

    def groups(sites: list[Site]) -> dict[tuple[str, float], list[npt.NDArray[np.float64]]]:
        found: defaultdict[tuple[str, float], list[npt.NDArray[np.float64]]] = defaultdict(list)
        for symbol, occupancy, xyz in sites:
            found[(symbol, round(occupancy, 6))].append(xyz)
        return found

    mine, other = groups(ours), groups(theirs)
    assert sorted(mine) == sorted(other)
    for key, positions in mine.items():
        a, b = np.array(positions), np.array(other[key])
        assert len(a) == len(b), key
        delta = a[:, None, :] - b[None, :, :]
        delta -= np.round(delta)
        distance = np.abs(delta).max(axis=-1)
        used = np.zeros(len(b), bool)
        # Sites of one kind are at least 0.05 Å apart, far beyond the tolerance: the first
        # free match is the only one.
        for i, row in enumerate(distance):
            free = np.flatnonzero((row < tolerance) & ~used)
            assert free.size, f"{key}: no match for {a[i]}"
            used[free[0]] = True


def blocks_of(source: str) -> dict[str, str]:
    """Each data block of a CIF as a text of its own (pymatgen refuses a whole file when one
    block fails, so each is handed over alone)."""
    heads = list(re.finditer(r"(?im)^data_(\S+)", source))
    return {
        head.group(1): source[head.start() : nxt.start() if nxt else len(source)]
        for head, nxt in zip(heads, [*heads[1:], None], strict=True)
    }


@functools.cache
def pymatgen_structure(name: str, block: str) -> PmgStructure:
    source = text(name)
    for old, new in PYMATGEN_PATCHES.get(name, ()):
        assert old in source, f"the patch {old!r} no longer applies to {name}"
        source = source.replace(old, new)
    parser = quietly(functools.partial(CifParser.from_str, blocks_of(source)[block]))
    (structure,) = quietly(
        functools.partial(parser.parse_structures, primitive=False, on_error="raise")
    )
    return structure


def comparison_params(*, ordered_only: bool = False) -> list[object]:
    """The blocks compared with pymatgen: all parsed ones but NOT_COMPARED (and, for the
    symmetry comparison, but the disordered ones: see ORDERED_ONLY)."""
    return [
        pytest.param(name, block, id=f"{name}#{block}")
        for name, block in BLOCKS
        if (name, block) not in NOT_COMPARED and not (ordered_only and _disordered(name, block))
    ]


def _disordered(name: str, block: str) -> bool:
    return any(s.occupancy < 1.0 for s in structure_of(name, block).sites)


def test_exclusions_are_parsed_blocks() -> None:
    assert set(NOT_COMPARED) <= set(BLOCKS)


def test_the_table_covers_the_corpus() -> None:
    """Every file SOURCES.md lists is here, byte-identical (its sha256 prefix), and has an
    expected outcome."""
    rows = re.findall(
        r"^\| `([^`]+)` \| [^|]+ \| (\d+) \| ([0-9a-f]{16}) \|",
        (DATA / "SOURCES.md").read_text(encoding="utf-8"),
        re.M,
    )
    assert len(rows) == 47
    assert {name for name, _, _ in rows} == set(OUTCOMES)
    for name, size, digest in rows:
        data = content(name)
        assert len(data) == int(size), name
        assert hashlib.sha256(data).hexdigest()[:16] == digest, name


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_corpus_outcome(name: str) -> None:
    expected = OUTCOMES[name]
    if not isinstance(expected, Refused):
        found = tuple(
            Block(
                s.name,
                s.formula,
                len(s.sites),
                structure_pb2.SpaceGroupSource.Name(s.declared_space_group.source).removeprefix(
                    "SPACE_GROUP_SOURCE_"
                ),
                kind_names(s),
            )
            for s in parsed(name)
        )
        assert found == expected
        return
    error = refusal(content(name))
    message = error.message
    assert expected.text in message
    blocks = re.findall(r"(?im)^data_(\S+)", text(name))
    if expected.where == "syntax":
        assert error.violations[0].line == expected.line
    elif expected.where == "tag":
        assert any(f"data_{b}: _" in message for b in blocks), message
    elif expected.where == "sites":
        assert error.reason == "OCCUPANCY_ABOVE_ONE"
        block, label = re.search(r"content: (\S+): site (\S+) ", message).groups()  # type: ignore[union-attr]
        assert block in blocks
        assert re.search(rf"(?m)^{re.escape(label)}\s", text(name))
    else:
        assert expected.where == "file"
        assert not any(f"data_{b}" in message for b in blocks)


def _points_at(source: str, tag: str, line: int) -> bool:
    """Whether line `line` (1-based, as gemmi counts) holds `tag`, or opens the loop that does."""
    lines = source.split("\n")[line - 1 :]
    header = [lines[0].split()[0].lower()] if lines[0].split() else []
    if header == ["loop_"]:
        header = []
        for row in lines[1:]:
            token = row.split()[0].lower() if row.split() else ""
            if not token.startswith("_"):
                break
            header.append(token)
    return tag.lower() in header


@pytest.mark.parametrize("name", TAG_REFUSALS)
def test_refusal_points_at_the_tag(name: str) -> None:
    error = refusal(content(name))
    tag = re.search(r"data_\S+: (_\S+): ", error.message).group(1)  # type: ignore[union-attr]
    if "missing" in error.message:
        assert tag.lower() not in text(name).lower()
        return
    line = error.violations[0].line
    assert line is not None, error.message
    assert _points_at(text(name), tag, line), (tag, line)


@pytest.mark.parametrize(("name", "block"), comparison_params())
def test_agrees_with_pymatgen(name: str, block: str) -> None:
    ours = structure_of(name, block)
    theirs = pymatgen_structure(name, block)
    composition = {
        element(e.symbol): float(n) for e, n in theirs.composition.element_composition.items()
    }
    assert_same_amounts(amounts(our_sites(ours)), composition)
    lattice = theirs.lattice
    for mine, other in zip(
        (ours.lattice.a, ours.lattice.b, ours.lattice.c), lattice.abc, strict=True
    ):
        assert mine == pytest.approx(other, abs=1e-4)
    for mine, other in zip(
        (ours.lattice.alpha, ours.lattice.beta, ours.lattice.gamma), lattice.angles, strict=True
    ):
        assert mine == pytest.approx(other, abs=1e-4)
    assert ours.volume == pytest.approx(lattice.volume, abs=1e-3)
    assert_same_sites(our_sites(ours), pymatgen_sites(theirs), 1e-3)


@pytest.mark.parametrize(("name", "block"), comparison_params(ordered_only=True))
def test_detected_symmetry_agrees_with_pymatgen(name: str, block: str) -> None:
    ours = structure_of(name, block)
    theirs = pymatgen_structure(name, block)
    analyzer = quietly(functools.partial(SpacegroupAnalyzer, theirs, symprec=0.01))
    assert ours.detected_symmetry.tolerance == 0.01
    assert ours.detected_symmetry.number == analyzer.get_space_group_number()


def test_every_ordered_parsed_structure_has_its_symmetry_compared() -> None:
    """Left out of the symmetry comparison: the disordered structures, no more."""
    disordered = {(name, block) for name, block in BLOCKS if _disordered(name, block)}
    assert disordered == {
        ("cod-tools/1004001-disorder.cif", "d5"),
        ("cod-tools/2-entries-AMCSD-cifdata.cif", "global_00001"),
        ("gemmi/4003024.cif", "4003024"),
        ("pymatgen/Li10GeP2S12.cif", "VESTA_phase_1"),
        ("pymatgen/site_type_symbol_test.cif", "Ge2Sb2Te5_(Fm3m)"),
    }


def _declared(name: str) -> structure_pb2.DeclaredSpaceGroup:
    (cell,) = read_cif(content(name), LIMITS)
    assert cell.declared is not None
    return cell.declared


@pytest.mark.parametrize(
    ("name", "source"),
    [
        # Hall, H-M and number given: Hall first.
        ("cod-tools/1000002-test-hall.cif", "HALL"),
        ("cod-tools/1000002-test-hm.cif", "HERMANN_MAUGUIN"),
        ("cod-tools/2000000-only-ITC-number.cif", "NUMBER"),
        ("cod-tools/2000000-no-symops.cif", "HERMANN_MAUGUIN"),
        ("cod-tools/2000000-no-spacegroup.cif", "OPERATIONS"),
        # Operations and H-M given: operations first.
        ("diffpy/graphite.cif", "OPERATIONS"),
        ("pymatgen/nosymm.cif", "HALL"),
    ],
)
def test_space_group_source(name: str, source: str) -> None:
    declared = _declared(name)
    assert structure_pb2.SpaceGroupSource.Name(declared.source) == f"SPACE_GROUP_SOURCE_{source}"


def test_no_symmetry_at_all_is_taken_as_p1_with_a_warning() -> None:
    source = content("cod-tools/2000000-only-ITC-number.cif")
    stripped = source.replace(b"_symmetry_Int_Tables_number 2\n", b"")
    assert stripped != source
    (cell,) = read_cif(stripped, LIMITS)
    assert cell.declared is not None
    assert cell.declared.source == structure_pb2.SPACE_GROUP_SOURCE_UNSPECIFIED
    assert list(cell.declared.operations) == ["x,y,z"]
    assert [w.kind for w in cell.warnings] == [W.STRUCTURE_WARNING_KIND_ASSUMED_P1]
    assert len(cell.elements) == 88  # the listed sites, no more


@pytest.mark.parametrize(
    "names",
    [
        (
            "cod-tools/1000002-test-hall.cif",
            "cod-tools/1000002-test-hm.cif",
            "cod-tools/1000002-occupancy-questionmarks.cif",
        ),
        (
            "cod-tools/2000000-only-ITC-number.cif",
            "cod-tools/2000000-no-symops.cif",
            "cod-tools/2000000-no-spacegroup.cif",
        ),
    ],
    ids=["1000002", "2000000"],
)
def test_equivalent_descriptions_give_the_same_sites(names: tuple[str, ...]) -> None:
    (first,), *others = (read_cif(content(name), LIMITS) for name in names)
    for (other,) in others:
        np.testing.assert_allclose(other.lattice, first.lattice, atol=1e-9)
        assert_same_sites(cell_sites(other), cell_sites(first), 1e-6)
        assert first.declared is not None
        assert other.declared is not None
        assert other.declared.resolved_number == first.declared.resolved_number


@pytest.mark.parametrize(
    "name", ["diffpy/TeI-unkocc.cif", "cod-tools/1000002-occupancy-questionmarks.cif"]
)
def test_unknown_occupancy_is_one_with_a_warning(name: str) -> None:
    (structure,) = parsed(name)
    (warning,) = (
        w for w in structure.warnings if w.kind == W.STRUCTURE_WARNING_KIND_OCCUPANCY_UNKNOWN
    )
    assert f"data_{structure.name}" in warning.message
    assert all(s.occupancy == 1.0 for s in structure.sites)


def test_generators_only_are_completed_with_a_warning() -> None:
    (custom,) = parsed("diffpy/customsg.cif")
    (graphite,) = parsed("diffpy/graphite.cif")
    # The completion, and gemmi's check of the listed operations against the tables.
    assert [w.kind for w in custom.warnings] == [
        W.STRUCTURE_WARNING_KIND_SPACE_GROUP_INCONSISTENT
    ] * 2
    assert "6 listed symmetry operations are not a group; the 12" in custom.warnings[0].message
    assert custom.declared_space_group.resolved_number == 186
    assert not graphite.warnings
    assert sorted(custom.declared_space_group.operations) == sorted(
        graphite.declared_space_group.operations
    )
    assert_same_sites(our_sites(custom), our_sites(graphite), 1e-6)


def test_implicit_hydrogens_give_a_formula_mismatch() -> None:
    (structure,) = parsed("pymatgen/cif_implicit_hydrogens_cod_1011130.cif")
    (warning,) = structure.warnings
    assert warning.kind == W.STRUCTURE_WARNING_KIND_FORMULA_MISMATCH
    assert "the sites give Cl4 N4; _chemical_formula_sum is 'Cl H4 N' x Z=4" in warning.message


def test_unreadable_space_group_is_skipped_and_p1_assumed() -> None:
    (structure,) = parsed("diffpy/badspacegroup.cif")
    kinds = [w.kind for w in structure.warnings]
    assert kinds == [
        W.STRUCTURE_WARNING_KIND_SPACE_GROUP_UNREADABLE,
        W.STRUCTURE_WARNING_KIND_ASSUMED_P1,
    ]
    assert "'C2:b1'" in structure.warnings[0].message
    assert structure.declared_space_group.hermann_mauguin == "C2:b1"
    assert len(structure.sites) == 12  # the listed sites


def test_a_named_block_is_read_alone() -> None:
    name = "cod-tools/2-entries-AMCSD-cifdata.cif"
    (cell,) = read_cif(content(name), LIMITS, block="global_00002")
    assert cell.name == "global_00002"
    with pytest.raises(InvalidArgument) as caught:
        read_cif(content(name), LIMITS, block="global_00003")
    assert caught.value.violations[0].field == "block"
    assert "global_00001, global_00002" in caught.value.message


@pytest.mark.parametrize("name", PARSED)
def test_cif_round_trip(name: str) -> None:
    written = write(name, CIF)
    again = parse(written.encode())
    before = parsed(name)
    assert [s.name for s in again] == [s.name for s in before]
    for first, second in zip(before, again, strict=True):
        for field in ("a", "b", "c", "alpha", "beta", "gamma"):
            assert getattr(second.lattice, field) == pytest.approx(
                getattr(first.lattice, field), abs=1e-6
            )
        np.testing.assert_allclose(
            from_tensor(second.lattice.matrix), from_tensor(first.lattice.matrix), atol=1e-6
        )
        assert_same_sites(our_sites(second), our_sites(first), 1e-6)
        assert second.declared_space_group.operations == ["x,y,z"]
    if any(key[0] == name for key in PYMATGEN_REFUSES):
        return  # pymatgen refuses the duplicated atoms here as in the original
    # pymatgen reading what we wrote: an independent check that it is CIF that means the same.
    parser = quietly(functools.partial(CifParser.from_str, written))
    theirs = quietly(functools.partial(parser.parse_structures, primitive=False, on_error="raise"))
    assert len(theirs) == len(before)
    for structure, reference in zip(before, theirs, strict=True):
        composition = {
            element(e.symbol): float(n)
            for e, n in reference.composition.element_composition.items()
        }
        assert_same_amounts(amounts(our_sites(structure)), composition)


@pytest.mark.parametrize(("name", "block"), [pytest.param(n, b, id=f"{n}#{b}") for n, b in BLOCKS])
def test_poscar_round_trip(name: str, block: str) -> None:
    """Ordered structures survive CIF -> POSCAR -> parse; partial occupancy is refused."""
    structure = structure_of(name, block)
    several = len(parsed(name)) > 1
    if any(s.occupancy < 1.0 for s in structure.sites):
        with pytest.raises(InvalidArgument) as caught:
            write(name, POSCAR, block if several else "")
        assert caught.value.violations[0].field == "output_format"
        assert "POSCAR cannot hold partial occupancy" in caught.value.message
        return
    (again,) = parse(write(name, POSCAR, block if several else "").encode(), POSCAR)
    for field in ("a", "b", "c", "alpha", "beta", "gamma"):
        assert getattr(again.lattice, field) == pytest.approx(
            getattr(structure.lattice, field), abs=1e-6
        )
    assert_same_sites(our_sites(again), our_sites(structure), 1e-6)
    assert again.formula == structure.formula


def test_poscar_of_several_blocks_needs_one_named() -> None:
    with pytest.raises(InvalidArgument) as caught:
        write("cod-tools/2-entries-AMCSD-cifdata.cif", POSCAR)
    assert caught.value.violations[0].field == "input.block"
