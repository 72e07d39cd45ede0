"""CIF in: gemmi reads the syntax and the atom sites; this module validates them,
resolves the space group and expands the sites.

The space group is taken from the first of these that the file gives and gemmi can read:
the symmetry operations, the Hall symbol, the Hermann-Mauguin symbol (origin choice 2 where
the tables list two), the International Tables number. A source that cannot be read is
skipped with a warning; a file with none is taken as P 1 with a warning, never silently.
Operations that do not close into a group (generators only) are completed, with a warning.

Refused with INVALID_ARGUMENT naming the data block, the tag and the line: a CIF syntax error,
a structure block without a complete cell, an atom_site loop without a site, a site with an
unknown coordinate or an unknown element (dummy atoms, residual peaks), magnetic CIF.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import gemmi
import numpy as np

from qulab.server.domain._crystal import CIF_CELL_TAGS, CellContents, StructureLimits, refuse
from qulab.server.domain._symmetry import expand
from qulab.v1 import structure_pb2

__all__ = ["read_cif"]

_W = structure_pb2.StructureWarningKind
# Tags that make a data block a structure rather than metadata (a global block, a
# publication block): a cell or atom sites.
_STRUCTURE_TAGS = (*CIF_CELL_TAGS, "_atom_site_fract_x", "_atom_site_label", "_atom_site_cartn_x")
_MAGNETIC_TAGS = (
    "_space_group_symop_magn_operation.xyz",
    "_space_group_symop_magn_operation_xyz",
    "_space_group_magn.name_bns",
    "_space_group_magn.number_bns",
    "_parent_space_group.name_h-m",
)
_OCCUPANCY_TAGS = ("_atom_site_occupancy", "_atom_site.occupancy")
_TYPE_SYMBOL_TAGS = ("_atom_site_type_symbol", "_atom_site.type_symbol")
_SYMOP_TAGS = (
    "_space_group_symop_operation_xyz",
    "_symmetry_equiv_pos_as_xyz",
    "_space_group_symop.operation_xyz",
    "_symmetry_equiv.pos_as_xyz",
)
_SYMOP_TAG = _SYMOP_TAGS[0]
_MIN_LENGTH = 0.1  # Å; shorter is no crystal
_MAX_LENGTH = 10_000.0  # Å; longer overflows nothing but is no crystal either
_MIN_VOLUME_FACTOR = 1e-3
# Symbol by atomic number: D and T (which gemmi keeps apart) are hydrogen here.
_SYMBOLS = ["X", *(gemmi.Element(z).name for z in range(1, 119))]
_IDENTITY = "x,y,z"
_MAX_OPERATIONS = 192  # the order of the largest space group (F m -3 m, centred)
_IMAGES_PER_SITE_LIMIT = 8  # asymmetric sites x operations <= 8 x max_sites
# gemmi's messages start "<source>:<line>[:<column>(<offset>)]".
_GEMMI_WHERE = re.compile(r"^data:(\d+)(?::\d+\(\d+\))?:?\s*(?:in data_\S+:\s*)?")


def _read_document(content: bytes) -> gemmi.cif.Document:
    if b"\0" in content[:65536]:
        raise refuse(
            "not a text file: it holds NUL bytes",
            line=content.count(b"\n", 0, content.index(b"\0")) + 1,
        )
    try:
        return gemmi.cif.read_string(content)
    except (RuntimeError, ValueError, UnicodeError) as exc:
        message = str(exc)
        found = _GEMMI_WHERE.match(message)
        line = int(found.group(1)) if found else None
        reason = message[found.end() :] if found else message
        raise refuse(f"CIF syntax error: {reason}", line=line) from None


def _is_structure(block: gemmi.cif.Block) -> bool:
    return any(block.find_value(tag) is not None for tag in _STRUCTURE_TAGS) or bool(
        block.find_values("_atom_site.fract_x")
    )


def _line(block: gemmi.cif.Block, tag: str) -> int | None:
    item = block.find_pair_item(tag) or block.find_loop_item(tag)
    return int(item.line_number) if item is not None and item.line_number > 0 else None


def _fail(block: gemmi.cif.Block, tag: str, problem: str) -> Exception:
    return refuse(f"data_{block.name}: {tag}: {problem}", line=_line(block, tag))


def _cell(block: gemmi.cif.Block) -> None:
    """Refuse a missing, unreadable or degenerate cell (before gemmi, which raises on some)."""
    values = []
    for tag in CIF_CELL_TAGS:
        value = block.find_value(tag)
        if value is None or gemmi.cif.is_null(value):
            raise _fail(block, tag, "missing: a structure needs a complete unit cell")
        number = gemmi.cif.as_number(value)
        length = tag.startswith("_cell_length")
        bad = not _MIN_LENGTH <= number <= _MAX_LENGTH if length else not 0 < number < 180
        if not math.isfinite(number) or bad:
            raise _fail(block, tag, f"{value!r} is not a valid {tag.removeprefix('_cell_')}")
        values.append(number)
    cosines = [math.cos(math.radians(angle)) for angle in values[3:]]
    ca, cb, cg = cosines
    # V / (a b c): 0 for a flat cell. Real cells are far from it (a 2° rhombohedron: 1e-3).
    factor = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
    if factor < _MIN_VOLUME_FACTOR**2:
        raise _fail(block, "_cell_angle_alpha", "the cell angles give no volume")


def _small_structure(block: gemmi.cif.Block) -> gemmi.SmallStructure:
    try:
        return gemmi.make_small_structure_from_block(block)
    except (RuntimeError, ValueError) as exc:  # gemmi's own checks, e.g. "not an integer"
        raise refuse(f"data_{block.name}: {exc}") from None


def _occupancy_unknown(block: gemmi.cif.Block) -> bool:
    """Whether an occupancy is '?' or '.'; refuses one that is not a number."""
    for tag in _OCCUPANCY_TAGS:
        for value in block.find_values(tag):
            if gemmi.cif.is_null(value):
                return True
            if not math.isfinite(gemmi.cif.as_number(value)):
                raise _fail(block, tag, f"{value!r} is not a number")
    return False


@dataclass(frozen=True, slots=True)
class _Resolution:
    """The symmetry a block's space-group description gives, independent of the block."""

    source: structure_pb2.SpaceGroupSource.ValueType
    seitz: np.ndarray  # (n_ops, 4, 4)
    triplets: tuple[str, ...]
    resolved_hermann_mauguin: str
    resolved_number: int
    notes: tuple[tuple[structure_pb2.StructureWarningKind.ValueType, str], ...]


class _Unusable(ValueError):
    """A symmetry description that cannot be used: (tag, problem)."""


@functools.lru_cache(maxsize=1024)
def _resolve(
    symops: tuple[str, ...], hall: str, hm: str, number: int, alpha: float, gamma: float
) -> _Resolution:
    """Resolve a space-group description (cached: a few hundred settings cover nearly every
    file, and resolving and checking one costs ~300 µs of gemmi calls)."""
    notes: list[tuple[structure_pb2.StructureWarningKind.ValueType, str]] = []
    for source, listed_ops in _sources(symops, hall, hm, number, alpha, gamma, notes):
        # A list without the identity is malformed; gemmi's GroupOps of it is empty.
        ops = listed_ops
        if not any(op.triplet() == _IDENTITY for op in ops):
            ops = [gemmi.Op(_IDENTITY), *ops]
        group = gemmi.GroupOps(ops)
        listed = len({op.triplet() for op in listed_ops})
        try:
            group.add_missing_elements()
        except RuntimeError as exc:  # gemmi bounds the closure: "Too many elements..."
            raise _Unusable(
                _SYMOP_TAG, f"the operations do not form a space group ({exc})"
            ) from None
        closed = list(group)
        if len(closed) != listed:
            notes.append(
                (
                    _W.STRUCTURE_WARNING_KIND_SPACE_GROUP_INCONSISTENT,
                    f"the {listed} listed symmetry operations are not a group; the "
                    f"{len(closed)} operations they generate were used",
                )
            )
        if len(closed) > _MAX_OPERATIONS:
            raise _Unusable(
                _SYMOP_TAG,
                f"the operations generate {len(closed)} operations; no space group has more "
                f"than {_MAX_OPERATIONS}",
            )
        found = gemmi.find_spacegroup_by_ops(group)
        notes.extend(_consistency(symops, hall, hm, number, alpha, gamma))
        seitz = np.array([op.float_seitz() for op in closed], np.float64)
        seitz.flags.writeable = False
        return _Resolution(
            source=source,
            seitz=seitz,
            triplets=tuple(op.triplet() for op in closed),
            resolved_hermann_mauguin=found.xhm() if found is not None else "",
            resolved_number=found.number if found is not None else 0,
            notes=tuple(notes),
        )
    notes.append(
        (
            _W.STRUCTURE_WARNING_KIND_ASSUMED_P1,
            "no symmetry operations, Hall or Hermann-Mauguin symbol or space-group number; "
            "the sites were taken as P 1",
        )
    )
    identity = np.eye(4)
    identity.flags.writeable = False
    return _Resolution(
        structure_pb2.SPACE_GROUP_SOURCE_UNSPECIFIED,
        identity[None],
        ("x,y,z",),
        "P 1",
        1,
        tuple(notes),
    )


def _consistency(
    symops: tuple[str, ...], hall: str, hm: str, number: int, alpha: float, gamma: float
) -> list[tuple[structure_pb2.StructureWarningKind.ValueType, str]]:
    """gemmi's check that the file's symmetry descriptions agree with each other."""
    probe = gemmi.SmallStructure()
    probe.symops = list(symops)
    probe.spacegroup_hall = hall
    probe.spacegroup_hm = hm
    probe.spacegroup_number = number
    probe.cell = gemmi.UnitCell(1, 1, 1, alpha, 90, gamma)
    probe.determine_and_set_spacegroup("S.H2")
    problems = probe.check_spacegroup().strip()
    if not problems:
        return []
    return [(_W.STRUCTURE_WARNING_KIND_SPACE_GROUP_INCONSISTENT, "; ".join(problems.splitlines()))]


def _sources(
    symops: tuple[str, ...],
    hall: str,
    hm: str,
    number: int,
    alpha: float,
    gamma: float,
    notes: list[tuple[structure_pb2.StructureWarningKind.ValueType, str]],
) -> Iterator[tuple[structure_pb2.SpaceGroupSource.ValueType, list[gemmi.Op]]]:
    """Each readable space-group description in priority order, with its operations."""
    source = structure_pb2.SpaceGroupSource

    def unreadable(what: str, why: object) -> None:
        notes.append(
            (
                _W.STRUCTURE_WARNING_KIND_SPACE_GROUP_UNREADABLE,
                f"{what} could not be read ({why}); skipped",
            )
        )

    if symops:
        if len(symops) > _MAX_OPERATIONS:
            raise _Unusable(
                _SYMOP_TAG,
                f"{len(symops)} operations listed; no space group has more than {_MAX_OPERATIONS}",
            )
        try:
            ops = [gemmi.Op(t) for t in symops]
        except RuntimeError as exc:
            unreadable("the symmetry operations", exc)
        else:
            yield source.SPACE_GROUP_SOURCE_OPERATIONS, ops
    if hall:
        try:
            ops = list(gemmi.symops_from_hall(hall))
        except RuntimeError as exc:
            unreadable(f"the Hall symbol {hall!r}", exc)
        else:
            yield source.SPACE_GROUP_SOURCE_HALL, ops
    if hm:
        group = gemmi.find_spacegroup_by_name(hm, alpha, gamma, prefer="2")
        if group is None:
            unreadable(f"the Hermann-Mauguin symbol {hm!r}", "not in the tables")
        else:
            yield source.SPACE_GROUP_SOURCE_HERMANN_MAUGUIN, list(group.operations())
    if number:
        tabulated = gemmi.find_spacegroup_by_number(number) if number <= 230 else None
        if tabulated is None:
            unreadable(f"space-group number {number}", "not 1-230")
        else:
            yield source.SPACE_GROUP_SOURCE_NUMBER, list(tabulated.operations())


def _block_cell(block: gemmi.cif.Block, limits: StructureLimits) -> CellContents:
    for tag in _MAGNETIC_TAGS:
        if block.find_value(tag) is not None or block.find_values(tag):
            raise _fail(block, tag, "magnetic CIF (magCIF) is not supported")
    _cell(block)
    small = _small_structure(block)
    asym = small.sites
    if not asym:
        raise _fail(block, "_atom_site_label", "no atom sites: the structure is empty")
    if len(asym) > limits.max_sites:
        raise refuse(
            f"data_{block.name}: {len(asym)} atom sites; the limit is {limits.max_sites}",
            reason="LIMIT_EXCEEDED",
            line=_line(block, "_atom_site_label"),
        )
    # One pass over gemmi's sites (each attribute access crosses into C++), then checks on
    # whole arrays; the per-site loop below runs only to name a bad site.
    rows = [(s.label, s.element.atomic_number, s.occ, *s.fract.tolist()) for s in asym]
    labels = [row[0] for row in rows]
    numbers = np.array([row[1] for row in rows], np.int64)
    occupancy = np.array([row[2] for row in rows], np.float64)
    fractional = np.array([row[3:] for row in rows], np.float64)
    lattice = np.array(small.cell.orth.mat.tolist(), np.float64).T
    finite = np.asarray(np.isfinite(fractional).all(axis=1))
    if not any(labels) and not finite.any():
        raise _fail(block, "_atom_site_label", "the atom_site loop has no site, only '?' values")
    bad_occupancy = ~np.isfinite(occupancy) | (occupancy < 0)
    if not finite.all() or not numbers.all() or bad_occupancy.any():
        _refuse_site(block, asym, finite, numbers, bad_occupancy)
    cell = CellContents(
        name=block.name,
        source_format=structure_pb2.STRUCTURE_FORMAT_CIF,
        lattice=lattice,
        labels=[],
        elements=[],
        occupancies=np.zeros(0),
        fractional=np.zeros((0, 3)),
    )
    if _occupancy_unknown(block):
        cell.warn(
            _W.STRUCTURE_WARNING_KIND_OCCUPANCY_UNKNOWN,
            f"data_{block.name}: occupancies given as '?' or '.' were taken as 1",
        )
    declared = structure_pb2.DeclaredSpaceGroup(
        hermann_mauguin=small.spacegroup_hm.strip(),
        hall=small.spacegroup_hall.strip(),
        number=max(small.spacegroup_number, 0),
    )
    try:
        symmetry = _resolve(
            tuple(small.symops),
            declared.hall,
            declared.hermann_mauguin,
            declared.number,
            round(small.cell.alpha, 3),
            round(small.cell.gamma, 3),
        )
    except _Unusable as exc:
        tag, problem = exc.args
        if tag == _SYMOP_TAG:  # name the operations tag this file uses
            tag = next((t for t in _SYMOP_TAGS if block.find_values(t)), tag)
        raise _fail(block, tag, problem) from None
    declared.source = symmetry.source
    declared.operations.extend(symmetry.triplets)
    declared.resolved_hermann_mauguin = symmetry.resolved_hermann_mauguin
    declared.resolved_number = symmetry.resolved_number
    cell.declared = declared
    for kind, message in symmetry.notes:
        cell.warn(kind, f"data_{block.name}: {message}")
    n_ops = len(symmetry.triplets)
    if len(asym) * n_ops > _IMAGES_PER_SITE_LIMIT * limits.max_sites:
        raise refuse(
            f"data_{block.name}: {len(asym)} sites x {n_ops} symmetry operations; the limit "
            f"is {_IMAGES_PER_SITE_LIMIT * limits.max_sites}",
            reason="LIMIT_EXCEEDED",
        )
    source, images = expand(lattice, fractional, symmetry.seitz)
    if len(images) > limits.max_sites:
        raise refuse(
            f"data_{block.name}: {len(images)} sites after symmetry expansion; the limit is "
            f"{limits.max_sites}",
            reason="LIMIT_EXCEEDED",
        )
    elements = [_SYMBOLS[z] for z in numbers.tolist()]
    cell.labels = [labels[i] for i in source]
    cell.elements = [elements[i] for i in source]
    cell.occupancies = occupancy[source]
    cell.fractional = images
    cell.formula_sum = (block.find_value("_chemical_formula_sum") or "").strip("'\" ")
    z = block.find_value("_cell_formula_units_Z")
    cell.formula_units = _number(z)
    cell.declared_volume = _number(block.find_value("_cell_volume"))
    return cell


def _refuse_site(
    block: gemmi.cif.Block,
    asym: gemmi.SmallStructure.SiteList,
    finite: np.ndarray,
    numbers: np.ndarray,
    bad_occupancy: np.ndarray,
) -> None:
    """Refuse the first bad site, naming the tag and the site."""
    for k, site in enumerate(asym):
        name = site.label or "(unlabelled)"
        if not finite[k]:
            raise _fail(block, "_atom_site_fract_x", f"site {name}: unknown coordinates")
        if numbers[k] == 0:
            # Without a type_symbol column gemmi takes the element from the label.
            typed = any(block.find_values(tag) for tag in _TYPE_SYMBOL_TAGS)
            tag = _TYPE_SYMBOL_TAGS[0] if typed else "_atom_site_label"
            symbol = (site.type_symbol or "?") if typed else site.label
            raise _fail(block, tag, f"site {name}: {symbol!r} is not an element")
        if bad_occupancy[k]:
            raise _fail(block, _OCCUPANCY_TAGS[0], f"site {name}: occupancy {site.occ}")


def _number(value: str | None) -> float:
    if value is None or gemmi.cif.is_null(value):
        return 0.0
    number = float(gemmi.cif.as_number(value))
    return number if math.isfinite(number) and number > 0 else 0.0


def read_cif(content: bytes, limits: StructureLimits, block: str = "") -> list[CellContents]:
    """Every structure in a CIF (or only the data block named `block`), in file order."""
    document = _read_document(content)
    blocks = [b for b in document if _is_structure(b)]
    if block:
        blocks = [b for b in blocks if b.name == block]
        if not blocks:
            names = ", ".join(b.name for b in document) or "none"
            raise refuse(
                f"no structure data block named {block!r}; the file has: {names}",
                field_name="block",
            )
    if not blocks:
        raise refuse("no data block holds a structure (no _cell_length_a or _atom_site loop)")
    return [_block_cell(b, limits) for b in blocks]
