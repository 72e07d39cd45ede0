"""Crystal structures: bytes or a `Structure` message in; validated `Structure` messages, CIF
or POSCAR text, or feature rows out. Loads gemmi and spglib; runs in worker processes.

The readers (`_cif`, `_poscar`) hand over `CellContents`; `assemble` derives everything
else once: Cartesian coordinates, formula, density, detected symmetry, the requested cell and
the warnings (occupancy above one, overlapping sites, formula or volume disagreeing with the
file). With `strict`, any warning refuses the structure.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import reduce

import gemmi
import numpy as np
from google.rpc import code_pb2, status_pb2

from qulab.server.domain import _poscar
from qulab.server.domain._cif import read_cif
from qulab.server.domain._crystal import (
    CellContents,
    StructureLimits,
    cell_parameters,
    element_number,
    refuse,
)
from qulab.server.domain._geometry import close_pairs
from qulab.server.domain._symmetry import (
    MERGE_TOLERANCE,
    Detection,
    detect,
    spglib_types,
    standardize,
)
from qulab.server.domain._writers import write_cif, write_poscar
from qulab.server.domain.structure_features import FEATURE_NAMES, structure_features
from qulab.server.domain.structure_options import StructureSettings, structure_settings
from qulab.server.errors import FieldViolation, InvalidArgument, QulabError
from qulab.tensors import from_tensor, to_tensor
from qulab.v1 import structure_pb2

__all__ = [
    "assemble",
    "encode_structures",
    "parse_structure",
    "read_structures",
    "write_structure",
]

_W = structure_pb2.StructureWarningKind
_FORMAT = structure_pb2.StructureFormat
# Sites closer than this (Å) overlap unless they are partial occupants sharing the space.
_OVERLAP_DISTANCE = 0.5
# g/cm³ per (atomic mass unit / Å³).
_AMU_PER_A3_IN_G_PER_CM3 = 1.66053906892
_FORMULA_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)")
_P1 = "x,y,z"
# Standard atomic weight by atomic number (index 0 unused).
_WEIGHTS = np.array([0.0, *(gemmi.Element(z).weight for z in range(1, 119))])


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        raise refuse(f"not UTF-8 text: byte 0x{content[exc.start]:02x}", line=line) from None


def read_structures(
    content: bytes,
    file_format: structure_pb2.StructureFormat.ValueType,
    settings: StructureSettings,
    limits: StructureLimits,
    block: str = "",
) -> list[CellContents]:
    """The structures in a file, as its reader found them."""
    if len(content) > limits.max_bytes:
        raise refuse(
            f"{len(content)} bytes; the limit is {limits.max_bytes}", reason="LIMIT_EXCEEDED"
        )
    if file_format == _FORMAT.STRUCTURE_FORMAT_UNSPECIFIED:
        head = content[:4096].decode("utf-8", "replace")
        poscar = _poscar.looks_like_poscar(head)
        file_format = _FORMAT.STRUCTURE_FORMAT_POSCAR if poscar else _FORMAT.STRUCTURE_FORMAT_CIF
    if file_format == _FORMAT.STRUCTURE_FORMAT_CIF:
        return read_cif(content, limits, block)
    cell = _poscar.read_poscar(_decode(content), settings.species, limits)
    cell.declared = structure_pb2.DeclaredSpaceGroup(
        operations=[_P1], resolved_hermann_mauguin="P 1", resolved_number=1
    )
    return [cell]


def _check_sites(cell: CellContents, settings: StructureSettings) -> None:
    i, j, distance = close_pairs(cell.fractional, cell.lattice, _OVERLAP_DISTANCE)
    occupancy = cell.occupancies
    partial = occupancy < 1.0 - 1e-6
    # Sites at one position share it when one of them is partial (a mixed or disordered
    # site); two full atoms there are a duplicate, reported as overlapping below.
    shared = (distance < MERGE_TOLERANCE) & (partial[i] | partial[j])
    total = occupancy.copy()
    np.add.at(total, i[shared], occupancy[j[shared]])
    np.add.at(total, j[shared], occupancy[i[shared]])
    above = np.nonzero(total > 1.0 + 1e-6)[0]
    if len(above):
        worst = int(above[np.argmax(total[above])])
        labels = sorted({cell.labels[k] for k in above})
        if total[worst] > 1.0 + settings.occupancy_tolerance + 1e-9:
            raise refuse(
                f"{cell.name}: site {cell.labels[worst]} has occupancy {total[worst]:.4g} at one "
                f"position, above 1 + occupancy_tolerance ({settings.occupancy_tolerance})",
                reason="OCCUPANCY_ABOVE_ONE",
            )
        cell.warn(
            _W.STRUCTURE_WARNING_KIND_OCCUPANCY_ABOVE_ONE,
            f"occupancies sum to up to {total[worst]:.4g} at one position",
            labels,
        )
    crowded = ~shared & (occupancy[i] + occupancy[j] > 1.0 + 1e-6)
    if crowded.any():
        pairs = sorted(
            {
                (cell.labels[a], cell.labels[b], float(d))
                for a, b, d in zip(i[crowded], j[crowded], distance[crowded], strict=True)
            },
            key=lambda p: p[2],
        )
        closest = pairs[0]
        cell.warn(
            _W.STRUCTURE_WARNING_KIND_OVERLAPPING_SITES,
            f"{len(pairs)} pairs of sites closer than {_OVERLAP_DISTANCE} Å; closest "
            f"{closest[0]}-{closest[1]} at {closest[2]:.4g} Å",
            sorted({p[0] for p in pairs} | {p[1] for p in pairs}),
        )


def _hill_order(counts: dict[str, float]) -> list[str]:
    if "C" in counts:
        rest = sorted(e for e in counts if e not in ("C", "H"))
        return ["C", *(["H"] if "H" in counts else []), *rest]
    return sorted(counts)


def _count_text(value: float) -> str:
    if abs(value - round(value)) < 1e-6:
        return "" if round(value) == 1 else str(round(value))
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _formula(counts: dict[str, float]) -> str:
    return " ".join(f"{e}{_count_text(counts[e])}" for e in _hill_order(counts))


def _reduction(counts: dict[str, float], formula_units: float) -> float:
    """Formula units per cell: the gcd of integral counts; for non-integral counts (partial
    occupancy) the file's _cell_formula_units_Z when given, else 1."""
    values = list(counts.values())
    if all(abs(v - round(v)) < 1e-6 for v in values):
        return float(reduce(math.gcd, (round(v) for v in values)))
    return formula_units or 1.0


def _check_formula(cell: CellContents, counts: dict[str, float]) -> None:
    declared: dict[str, float] = {}
    for symbol, count in _FORMULA_TOKEN.findall(cell.formula_sum):
        element = "H" if symbol in ("D", "T") else symbol
        declared[element] = declared.get(element, 0.0) + (float(count) if count else 1.0)
    if not declared or any(element_number(e) == 0 for e in declared):
        return
    # Per formula unit when the file gives Z; otherwise compare proportions.
    scale = cell.formula_units or sum(counts.values()) / sum(declared.values())
    expected = {e: n * scale for e, n in declared.items()}
    agree = set(expected) == set(counts) and all(
        abs(counts[e] - expected[e]) <= 0.02 * expected[e] + 1e-3 for e in expected
    )
    if not agree:
        z = f" x Z={cell.formula_units:g}" if cell.formula_units else ""
        cell.warn(
            _W.STRUCTURE_WARNING_KIND_FORMULA_MISMATCH,
            f"the sites give {_formula(counts)}; _chemical_formula_sum is {cell.formula_sum!r}{z}",
        )


def _standardized(cell: CellContents, settings: StructureSettings, numbers: list[int]) -> None:
    """Replace the cell with spglib's conventional or primitive cell, when it can be made."""
    primitive = settings.cell == structure_pb2.CELL_CHOICE_PRIMITIVE
    why = ""
    if (cell.occupancies < 1.0 - 1e-6).any():
        why = "the structure has partial occupancy"
    elif cell.selective_dynamics is not None or cell.velocities is not None:
        why = "selective dynamics flags and velocities cannot follow the sites"
    else:
        found = standardize(
            cell.lattice,
            cell.fractional,
            np.array(numbers, np.int32),
            settings.symmetry_tolerance,
            primitive=primitive,
        )
        if isinstance(found, str):
            why = f"spglib: {found}"
        else:
            cell.lattice, cell.fractional, types = found
            cell.elements = [gemmi.Element(int(z)).name for z in types]
            seen: Counter[str] = Counter()
            labels = []
            for element in cell.elements:
                seen[element] += 1
                labels.append(f"{element}{seen[element]}")
            cell.labels = labels
            cell.occupancies = np.ones(len(types))
            return
    name = structure_pb2.CellChoice.Name(settings.cell)
    cell.warn(
        _W.STRUCTURE_WARNING_KIND_CELL_NOT_STANDARDIZED,
        f"{name} was requested but {why}; the file's cell is returned",
    )


def _counts(cell: CellContents) -> dict[str, float]:
    """Occupancy-weighted amount of each element present."""
    counts: dict[str, float] = {}
    for element, occ in zip(cell.elements, cell.occupancies.tolist(), strict=True):
        counts[element] = counts.get(element, 0.0) + occ
    counts = {e: n for e, n in counts.items() if n > 1e-9}
    if not counts:
        raise refuse(f"{cell.name}: every site has occupancy 0", reason="NO_OCCUPIED_SITE")
    return counts


def _review(
    cell: CellContents, settings: StructureSettings
) -> tuple[dict[str, float], float, list[int]]:
    """Check the cell (warnings added to it) and replace it with the requested standard
    cell; its element amounts, volume and atomic numbers."""
    # The file's own declarations (formula, volume) describe the file's cell: checked
    # before a standardized cell replaces it.
    _check_sites(cell, settings)
    counts = _counts(cell)
    volume = float(abs(np.linalg.det(cell.lattice)))
    if cell.formula_sum:
        _check_formula(cell, counts)
    if cell.declared_volume and abs(volume - cell.declared_volume) > 1e-3 * cell.declared_volume:
        cell.warn(
            _W.STRUCTURE_WARNING_KIND_VOLUME_MISMATCH,
            f"the cell gives {volume:.6g} Å³; _cell_volume is {cell.declared_volume:g}",
        )
    numbers = [element_number(e) for e in cell.elements]
    if settings.cell != structure_pb2.CELL_CHOICE_UNSPECIFIED:
        _standardized(cell, settings, numbers)
        numbers = [element_number(e) for e in cell.elements]
        counts = _counts(cell)
        volume = float(abs(np.linalg.det(cell.lattice)))
    return counts, volume, numbers


def _detect(cell: CellContents, settings: StructureSettings, numbers: list[int]) -> Detection:
    """spglib's space group of the cell, when asked for (a warning when it finds none)."""
    if not settings.detect_symmetry:
        return Detection(None, "")
    positions, types, _ = spglib_types(cell.fractional, cell.lattice, numbers, cell.occupancies)
    detection = detect(cell.lattice, positions, types, settings.symmetry_tolerance)
    if detection.symmetry is None:
        cell.warn(
            _W.STRUCTURE_WARNING_KIND_SYMMETRY_NOT_DETECTED,
            f"spglib found no space group at tolerance {settings.symmetry_tolerance} Å: "
            f"{detection.failure}",
        )
    return detection


def _refuse_if_strict(cell: CellContents, settings: StructureSettings) -> None:
    if settings.strict and cell.warnings:
        raise refuse(
            f"{cell.name}: strict: " + "; ".join(w.message for w in cell.warnings),
            reason="STRICT",
        )


def assemble(
    cell: CellContents,
    settings: StructureSettings,
    structure: structure_pb2.Structure | None = None,
    *,
    sites: bool = True,
) -> structure_pb2.Structure:
    """The `Structure` message of a cell, everything derived and warnings listed; filled in
    place when `structure` is given (a response's own element: no copy). `sites=False`
    leaves out the per-site records (the arrays hold the same), for callers that read
    only the arrays."""
    counts, volume, numbers = _review(cell, settings)
    detection = _detect(cell, settings, numbers)
    _refuse_if_strict(cell, settings)
    lattice, fractional, occupancy = cell.lattice, cell.fractional, cell.occupancies
    cartesian = fractional @ lattice
    mass = float(_WEIGHTS[numbers] @ occupancy)
    z = _reduction(counts, cell.formula_units)
    a, b, c, alpha, beta, gamma = cell_parameters(lattice)
    if structure is None:
        structure = structure_pb2.Structure()
    # The fields but the sites, merged in at once; the sites are added in place below.
    head = structure_pb2.Structure(
        name=cell.name,
        source_format=cell.source_format,
        lattice=structure_pb2.Lattice(
            a=a, b=b, c=c, alpha=alpha, beta=beta, gamma=gamma, matrix=to_tensor(lattice)
        ),
        volume=volume,
        density=mass / volume * _AMU_PER_A3_IN_G_PER_CM3,
        z=z,
        formula=_formula(counts),
        reduced_formula=_formula({e: n / z for e, n in counts.items()}),
        fractional_coordinates=to_tensor(fractional),
        cartesian_coordinates=to_tensor(cartesian),
        atomic_numbers=to_tensor(np.array(numbers, np.int32)),
        occupancies=to_tensor(occupancy),
        declared_space_group=cell.declared,
        detected_symmetry=detection.symmetry,
        warnings=cell.warnings,
    )
    structure.MergeFrom(head)
    flags = cell.selective_dynamics
    velocities = cell.velocities
    if flags is not None:
        structure.selective_dynamics.CopyFrom(to_tensor(flags))
    if velocities is not None:
        structure.velocities.CopyFrom(to_tensor(velocities))
    if not sites:
        return structure
    # One .tolist() per array, not per site: site messages are the per-site cost here.
    frac_rows, cart_rows, occ_list = fractional.tolist(), cartesian.tolist(), occupancy.tolist()
    flag_rows = flags.tolist() if flags is not None else None
    velocity_rows = velocities.tolist() if velocities is not None else None
    add = structure.sites.add
    for k, (label, element, number) in enumerate(
        zip(cell.labels, cell.elements, numbers, strict=True)
    ):
        site = add(
            label=label,
            element=element,
            atomic_number=number,
            occupancy=occ_list[k],
            fractional=frac_rows[k],
            cartesian=cart_rows[k],
        )
        if flag_rows is not None:
            site.selective_dynamics.extend(flag_rows[k])
        if velocity_rows is not None:
            site.velocity.extend(velocity_rows[k])
    return structure


def parse_structure(
    request: structure_pb2.ParseStructureRequest, limits: StructureLimits
) -> structure_pb2.ParseStructureResponse:
    settings = structure_settings(request.options)
    cells = read_structures(request.content, request.format, settings, limits, request.block)
    response = structure_pb2.ParseStructureResponse(id=request.id)
    for cell in cells:
        assemble(cell, settings, response.structures.add())
    return response


def _cell_of_message(structure: structure_pb2.Structure, field: str) -> CellContents:
    """A `Structure` message given as input, checked field by field."""

    def bad(path: str, problem: str) -> InvalidArgument:
        return InvalidArgument(FieldViolation(field=f"{field}.{path}", description=problem))

    try:
        lattice = np.asarray(from_tensor(structure.lattice.matrix), np.float64)
    except ValueError as exc:
        raise bad("lattice.matrix", str(exc)) from None
    if lattice.shape != (3, 3) or not np.isfinite(lattice).all():
        raise bad("lattice.matrix", "must be a finite [3, 3] matrix")
    if abs(np.linalg.det(lattice)) < 1e-6:
        raise bad("lattice.matrix", "the cell has no volume")
    if not structure.sites:
        raise bad("sites", "a structure needs at least one site")
    n = len(structure.sites)
    fractional = np.zeros((n, 3))
    occupancy = np.ones(n)
    flags = np.zeros((n, 3), bool) if structure.sites[0].selective_dynamics else None
    velocities = np.zeros((n, 3)) if structure.sites[0].velocity else None
    labels, elements = [], []
    for k, site in enumerate(structure.sites):
        where = f"sites[{k}]"
        number = element_number(site.element)
        if number == 0:
            raise bad(f"{where}.element", f"{site.element!r} is not an element")
        if len(site.fractional) != 3 or not all(map(math.isfinite, site.fractional)):
            raise bad(f"{where}.fractional", "must be 3 finite numbers")
        fractional[k] = site.fractional
        if site.occupancy:
            if not 0 < site.occupancy <= 2:
                raise bad(f"{where}.occupancy", f"{site.occupancy} is not in (0, 1]")
            occupancy[k] = site.occupancy
        if flags is not None:
            if len(site.selective_dynamics) != 3:
                raise bad(f"{where}.selective_dynamics", "3 flags for every site, or none")
            flags[k] = site.selective_dynamics
        if velocities is not None:
            if len(site.velocity) != 3 or not all(map(math.isfinite, site.velocity)):
                raise bad(f"{where}.velocity", "3 finite numbers for every site, or none")
            velocities[k] = site.velocity
        symbol = gemmi.Element(number).name
        elements.append(symbol)
        labels.append(site.label or f"{symbol}{k + 1}")
    return CellContents(
        name=structure.name,
        source_format=structure.source_format,
        lattice=lattice,
        labels=labels,
        elements=elements,
        occupancies=occupancy,
        fractional=fractional,
        selective_dynamics=flags,
        velocities=velocities,
        declared=structure_pb2.DeclaredSpaceGroup(
            operations=[_P1], resolved_hermann_mauguin="P 1", resolved_number=1
        ),
    )


def _input_cells(
    item: structure_pb2.StructureInput,
    settings: StructureSettings,
    limits: StructureLimits,
    field: str,
) -> list[CellContents]:
    if item.WhichOneof("input") == "structure":
        if len(item.structure.sites) > limits.max_sites:
            raise InvalidArgument(
                FieldViolation(
                    field=f"{field}.structure.sites",
                    reason="LIMIT_EXCEEDED",
                    description=(
                        f"{len(item.structure.sites)} sites; the limit is {limits.max_sites}"
                    ),
                )
            )
        return [_cell_of_message(item.structure, f"{field}.structure")]
    try:
        return read_structures(item.content, item.format, settings, limits, item.block)
    except InvalidArgument as exc:
        # A file's own fields nest under the item; `options` is the request's.
        raise exc.renamed(lambda f: f if f.startswith("options.") else f"{field}.{f}") from None


def write_structure(
    request: structure_pb2.WriteStructureRequest, limits: StructureLimits
) -> structure_pb2.WriteStructureResponse:
    settings = structure_settings(request.options)
    cells = _input_cells(request.input, settings, limits, "input")
    # The requested cell and the checks apply as for ParseStructure; the message itself is
    # not built, and symmetry is detected only when strict would refuse on its warning.
    for cell in cells:
        numbers = _review(cell, settings)[2]
        if settings.strict:
            _detect(cell, settings, numbers)
        _refuse_if_strict(cell, settings)
    if request.output_format == _FORMAT.STRUCTURE_FORMAT_CIF:
        return structure_pb2.WriteStructureResponse(text=write_cif(cells))
    if len(cells) > 1:
        names = ", ".join(c.name for c in cells)
        raise InvalidArgument(
            FieldViolation(
                field="input.block",
                description=f"a POSCAR holds one structure; the file has {len(cells)} ({names}): "
                "name one in `block`",
            )
        )
    return structure_pb2.WriteStructureResponse(text=write_poscar(cells[0]))


def encode_structures(
    request: structure_pb2.EncodeStructureRequest,
    limits: StructureLimits,
    first_index: int = 0,
) -> structure_pb2.EncodeStructureResponse:
    """One feature row per input structure; an item that fails gets a NaN row and its own
    status, and the others go on."""
    settings = structure_settings(request.options)
    rows = np.full((len(request.structures), len(FEATURE_NAMES)), np.nan, np.float32)
    statuses: list[status_pb2.Status] = []
    for k, item in enumerate(request.structures):
        field = f"structures[{first_index + k}]"
        try:
            cells = _input_cells(item, settings, limits, field)
            if len(cells) > 1:
                raise InvalidArgument(
                    FieldViolation(
                        field=f"{field}.block",
                        description=f"the file has {len(cells)} structures: name one in `block`",
                    )
                )
            # The features read the arrays only: no per-site records.
            rows[k] = structure_features(assemble(cells[0], settings, sites=False))
        except QulabError as exc:
            statuses.append(exc.to_status())
        else:
            statuses.append(status_pb2.Status(code=code_pb2.OK))
    return structure_pb2.EncodeStructureResponse(
        features=to_tensor(rows), feature_names=FEATURE_NAMES, item_status=statuses
    )
