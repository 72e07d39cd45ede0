"""CIF input built to break the reader: hostile sizes, symmetry that explodes or never closes,
broken cells and sites. Each is refused with INVALID_ARGUMENT naming the block, the tag and
the line (or the limit), quickly, and never with another exception."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import pytest

from qulab.server.domain.structure_options import StructureLimits
from qulab.server.errors import InvalidArgument
from qulab.v1 import structure_pb2
from tests.unit.test_cif import LIMITS, W, _points_at, parse, refusal


def _cif(
    *,
    cell: tuple[str, ...] = ("5", "5", "5", "90", "90", "90"),
    symmetry: str = "",
    operations: Iterable[str] = (),
    tag: str = "_space_group_symop_operation_xyz",
    columns: tuple[str, ...] = ("label", "type_symbol", "fract_x", "fract_y", "fract_z"),
    sites: Iterable[str] = ("Fe1 Fe 0.1 0.2 0.3",),
) -> bytes:
    lines = ["data_hostile"]
    names = ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")
    lines += [f"_cell_{n} {v}" for n, v in zip(names, cell, strict=True)]
    if symmetry:
        lines.append(symmetry)
    ops = list(operations)
    if ops:
        lines += ["loop_", tag, *(f"'{op}'" for op in ops)]
    lines += ["loop_", *(f"_atom_site_{c}" for c in columns), *sites]
    return ("\n".join(lines) + "\n").encode()


def _random_sites(count: int, seed: int) -> list[str]:
    """General positions of F m -3 m: x, y, z, their sums and differences keep well away from
    0, 1/4 and 1/2, so no operation but the identity maps a site near itself."""
    rng = random.Random(seed)
    return [
        f"Fe{i} Fe {rng.uniform(0.02, 0.08):.5f} {rng.uniform(0.12, 0.16):.5f} "
        f"{rng.uniform(0.27, 0.32):.5f}"
        for i in range(count)
    ]


def _junk(seed: int, size: int, *, nul: bool) -> bytes:
    rng = random.Random(seed)
    data = bytes(rng.getrandbits(8) for _ in range(size))
    return data if nul else data.replace(b"\0", b"")


_FM3M = "_symmetry_space_group_name_H-M 'F m -3 m'"
HOSTILE: list[tuple[str, Callable[[], bytes], StructureLimits, str]] = [
    ("binary junk", lambda: _junk(20260101, 4096, nul=True), LIMITS, "not a text file"),
    (
        "binary junk without NUL",
        lambda: _junk(20260102, 4096, nul=False),
        LIMITS,
        "CIF syntax error",
    ),
    (
        "300 operations",
        lambda: _cif(operations=[f"x,y,z+{k}" for k in range(300)]),
        LIMITS,
        "_space_group_symop_operation_xyz: 300 operations listed; no space group has more than 192",
    ),
    (
        "operations that do not close",
        lambda: _cif(operations=["x,y,z", "x+y,y,z"]),
        LIMITS,
        "_space_group_symop_operation_xyz: the operations do not form a space group",
    ),
    (
        "30,000 sites",
        lambda: _cif(cell=("100", "100", "100", "90", "90", "90"), sites=_random_sites(30_000, 1)),
        StructureLimits(max_sites=20_000),
        "data_hostile: 30000 atom sites; the limit is 20000",
    ),
    (
        "192 operations expand past max_sites",
        lambda: _cif(
            cell=("60", "60", "60", "90", "90", "90"), symmetry=_FM3M, sites=_random_sites(110, 2)
        ),
        LIMITS,
        "data_hostile: 21120 sites after symmetry expansion; the limit is 20000",
    ),
    (
        "192 operations times many sites",
        lambda: _cif(
            cell=("60", "60", "60", "90", "90", "90"), symmetry=_FM3M, sites=_random_sites(1000, 3)
        ),
        LIMITS,
        "data_hostile: 1000 sites x 192 symmetry operations; the limit is 160000",
    ),
    (
        "NaN cell",
        lambda: _cif(cell=("nan", "5", "5", "90", "90", "90")),
        LIMITS,
        "data_hostile: _cell_length_a: 'nan' is not a valid length_a",
    ),
    (
        "zero cell length",
        lambda: _cif(cell=("5", "0", "5", "90", "90", "90")),
        LIMITS,
        "data_hostile: _cell_length_b: '0' is not a valid length_b",
    ),
    (
        "angle 180",
        lambda: _cif(cell=("5", "5", "5", "90", "180", "90")),
        LIMITS,
        "data_hostile: _cell_angle_beta: '180' is not a valid angle_beta",
    ),
    (
        "angles with no volume",
        lambda: _cif(cell=("5", "5", "5", "100", "100", "170")),
        LIMITS,
        "data_hostile: _cell_angle_alpha: the cell angles give no volume",
    ),
    (
        "'?' coordinates",
        lambda: _cif(sites=["Fe1 Fe 0.1 ? 0.3"]),
        LIMITS,
        "data_hostile: _atom_site_fract_x: site Fe1: unknown coordinates",
    ),
    (
        "negative occupancy",
        lambda: _cif(
            columns=("label", "type_symbol", "fract_x", "fract_y", "fract_z", "occupancy"),
            sites=["Fe1 Fe 0.1 0.2 0.3 -0.5"],
        ),
        LIMITS,
        "data_hostile: _atom_site_occupancy: site Fe1: occupancy -0.5",
    ),
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("make", "limits", "expected"),
    [pytest.param(make, limits, expected, id=name) for name, make, limits, expected in HOSTILE],
)
def test_hostile_input_is_refused(
    make: Callable[[], bytes], limits: StructureLimits, expected: str
) -> None:
    error = refusal(make(), limits)
    assert expected in error.message
    if "limit" in expected:
        assert error.reason == "LIMIT_EXCEEDED"


# Inputs that reached past the first checks once (each reason says how); refused now.
HOSTILE_FOUND: list[tuple[str, Callable[[], bytes], str]] = [
    (
        "angle 0",
        lambda: _cif(cell=("5", "5", "5", "0", "90", "90")),
        "was: _cif.py _block_cell: gemmi.make_small_structure_from_block raises RuntimeError "
        "'Impossible angle - N*180deg.' before _cell() checks the angles",
    ),
    (
        "space-group number not an integer",
        lambda: _cif(symmetry="_symmetry_Int_Tables_number P21/c"),
        "was: _cif.py _block_cell: gemmi.make_small_structure_from_block raises ValueError "
        "'not an integer' for _symmetry_Int_Tables_number",
    ),
    (
        "every occupancy zero",
        lambda: _cif(
            columns=("label", "type_symbol", "fract_x", "fract_y", "fract_z", "occupancy"),
            sites=["Fe1 Fe 0.1 0.2 0.3 0"],
        ),
        "was: structures.py _reduction: no element has a positive amount, reduce() of an empty "
        "sequence raises TypeError",
    ),
    (
        "degenerate angles 120 120 120",
        lambda: _cif(cell=("5", "5", "5", "120", "120", "120")),
        "was: _cif.py _cell: the volume test is `> 0`, and rounding leaves 4e-6 Å³ for a flat "
        "cell, which is then read",
    ),
    (
        "cell lengths 1e200",
        lambda: _cif(cell=("1e200", "1e200", "1e200", "90", "90", "90")),
        "was: _cif.py _cell: lengths are only checked to be finite; the volume overflows to inf "
        "and the structure is read with volume inf and density 0",
    ),
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "make",
    [pytest.param(make, id=name) for name, make, _reason in HOSTILE_FOUND],
)
def test_hostile_input_found_by_review_is_refused(make: Callable[[], bytes]) -> None:
    refusal(make())


def test_operations_without_identity_keep_the_listed_site() -> None:
    (structure,) = parse(_cif(operations=["x+1/2,y+1/2,z"]))
    positions = sorted(tuple(round(v, 6) for v in s.fractional) for s in structure.sites)
    assert positions == [(0.1, 0.2, 0.3), (0.6, 0.7, 0.3)]
    kinds = [w.kind for w in structure.warnings]
    assert W.STRUCTURE_WARNING_KIND_SPACE_GROUP_INCONSISTENT in kinds


def test_operations_without_identity_are_completed_with_a_warning() -> None:
    (structure,) = parse(_cif(operations=["-x,-y,-z"]))
    assert structure.declared_space_group.resolved_number == 2
    assert len(structure.sites) == 2
    inconsistent = [
        w.message
        for w in structure.warnings
        if w.kind == W.STRUCTURE_WARNING_KIND_SPACE_GROUP_INCONSISTENT
    ]
    assert any("are not a group" in m for m in inconsistent)


def test_non_numeric_occupancy_is_not_silently_one() -> None:
    data = _cif(
        columns=("label", "type_symbol", "fract_x", "fract_y", "fract_z", "occupancy"),
        sites=["Fe1 Fe 0.1 0.2 0.3 half"],
    )
    try:
        found: structure_pb2.Structure | InvalidArgument = parse(data)[0]
    except InvalidArgument as exc:
        found = exc
    if isinstance(found, InvalidArgument):
        assert "_atom_site_occupancy" in found.message
    else:
        assert W.STRUCTURE_WARNING_KIND_OCCUPANCY_UNKNOWN in [w.kind for w in found.warnings]


@pytest.mark.parametrize(
    "tag",
    [
        "_space_group_symop_operation_xyz",
        "_symmetry_equiv_pos_as_xyz",
    ],
)
def test_operation_refusals_name_the_tag_of_the_file(tag: str) -> None:
    data = _cif(operations=["x,y,z", "x+y,y,z"], tag=tag)
    error = refusal(data)
    assert f"data_hostile: {tag}: the operations do not form a space group" in error.message
    line = error.violations[0].line
    assert line is not None
    assert _points_at(data.decode(), tag, line)


def test_refusals_are_quick_on_a_large_valid_prefix() -> None:
    """A syntax error after 20,000 good rows is found, with its line, without reading on."""
    rows = _random_sites(20_000, 4)
    data = _cif(sites=[*rows, "Fe 'unterminated 0 0 0"])
    error = refusal(data)
    assert "CIF syntax error" in error.message
    assert error.violations[0].line == data.count(b"\n")
