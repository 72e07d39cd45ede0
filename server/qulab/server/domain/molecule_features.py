"""EncodeMolecule: many molecules in, one `[n, d]` feature matrix out.

Every molecule is read exactly as ParseMolecule reads it (same limits, same errors), then
encoded with RDKit: the `rdFingerprintGenerator` generators for Morgan, feature-Morgan,
atom-pair and topological-torsion fingerprints, `MACCSkeys.GenMACCSKeys` for the 167 MACCS
keys, `Descriptors.CalcMolDescriptors` for the 2D descriptors. A molecule that cannot be
read or encoded fails only its own row: the row stays zero (NaN for descriptors) and its
`item_status` carries the error. Pure functions of protobuf messages; no gRPC here.

Item statuses are those of ParseMolecule (see `_molecule_reader` for the reasons), plus
ENCODING_FAILED when RDKit reads a molecule but cannot encode it, and INTERNAL (with an
error id that is in the log) when a bug meets one item.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from rdkit.Chem import Descriptors, rdFingerprintGenerator, rdMolDescriptors

from qulab.server.domain._molecule_limits import MoleculeLimits
from qulab.server.domain._molecule_reader import describe_failure, input_of, read_molecule
from qulab.server.domain._rdkit_log import rdkit_log
from qulab.server.domain.options import (
    FingerprintSettings,
    encode_parameters,
    fingerprint_settings,
    parse_settings,
)
from qulab.server.errors import FieldViolation, Internal, InvalidArgument, QulabError
from qulab.tensors import to_tensor
from qulab.v1 import molecule_pb2

__all__ = ["DESCRIPTOR_NAMES", "MACCS_BITS", "encode_molecules", "encode_parameters"]

# RDKit's generated stubs leave out CalcMolDescriptors' types.
_DESCRIPTORS: Any = Descriptors
MACCS_BITS: Final = 167
DESCRIPTOR_NAMES: Final[tuple[str, ...]] = tuple(name for name, _ in _DESCRIPTORS.descList)
"""Column names of MOLECULE_ENCODING_RDKIT_DESCRIPTORS, in RDKit's order."""

ENCODING_FAILED = "ENCODING_FAILED"
_log = logging.getLogger(__name__)
_MAX_RADIUS = 8
_MIN_BITS, _MAX_BITS = 8, 65_536
_INT32_MAX = np.iinfo(np.int32).max
_ASCII_ZERO = ord("0")

_E = molecule_pb2.MoleculeEncoding
_GENERATED: Final = frozenset(
    {
        _E.MOLECULE_ENCODING_MORGAN,
        _E.MOLECULE_ENCODING_FEATURE_MORGAN,
        _E.MOLECULE_ENCODING_ATOM_PAIR,
        _E.MOLECULE_ENCODING_TOPOLOGICAL_TORSION,
    }
)
_MORGANS: Final = frozenset({_E.MOLECULE_ENCODING_MORGAN, _E.MOLECULE_ENCODING_FEATURE_MORGAN})

Row = npt.NDArray[Any]


def encode_molecules(
    request: molecule_pb2.EncodeMoleculeRequest,
    limits: MoleculeLimits,
    *,
    first_index: int = 0,
) -> molecule_pb2.EncodeMoleculeResponse:
    """Encode every molecule of the request into one row of `features`.

    `features` is uint8 0/1 for bit fingerprints and MACCS keys, int32 for counts (capped
    at the int32 maximum), float64 for descriptors (NaN where RDKit cannot compute one).
    `item_status` has one entry per molecule, code 0 for success; a failed item's status
    names its field as `molecules[i].<notation>`, where `i` counts from `first_index` (for
    a request split into chunks, the position of the chunk's first molecule in the whole).
    Raises `InvalidArgument` only for a request-level problem (no encoding, fingerprint
    options out of range); provenance is the caller's to set.
    """
    fingerprint = _checked_fingerprint(request)
    settings = parse_settings(request.parse_options)
    width, dtype, names = _layout(request.encoding, fingerprint)
    encode_row = _row_encoder(request.encoding, fingerprint)
    count = len(request.molecules)
    if dtype == np.float64:
        features = np.full((count, width), math.nan, dtype=dtype)
    else:
        features = np.zeros((count, width), dtype=dtype)
    response = molecule_pb2.EncodeMoleculeResponse(feature_names=names)
    for index, item in enumerate(request.molecules):
        status = response.item_status.add()  # code 0: OK unless the item fails
        prefix = f"molecules[{first_index + index}]."
        try:
            kind, text = input_of(item, prefix=prefix)
            field_path = prefix + kind
            reading = read_molecule(kind, text, settings, limits, field_path=field_path)
            _encode_into(encode_row, reading.mol, features[index], field_path)
        except QulabError as exc:
            status.CopyFrom(exc.to_status())
        except Exception:
            # A bug met by one item must not cost the other items their answers: it
            # becomes that item's INTERNAL status, with an error id the log explains.
            failure = Internal(f"{prefix.rstrip('.')} could not be encoded")
            _log.exception("encoding %s failed (error id %s)", prefix, failure.error_id)
            features[index] = math.nan if features.dtype == np.float64 else 0
            status.CopyFrom(failure.to_status())
    response.features.CopyFrom(to_tensor(features))
    return response


def _checked_fingerprint(request: molecule_pb2.EncodeMoleculeRequest) -> FingerprintSettings:
    """The effective fingerprint options, refused when the proto's bounds are broken (the
    servicer validates them too; this guards the matrix size in any caller)."""
    encoding = request.encoding
    if encoding == _E.MOLECULE_ENCODING_UNSPECIFIED or encoding not in _E.values():
        raise InvalidArgument(
            FieldViolation(
                field="encoding",
                description=f"choose an encoding (got {encoding})",
            )
        )
    fingerprint = fingerprint_settings(request.fingerprint)
    if encoding in _MORGANS and fingerprint.radius > _MAX_RADIUS:
        raise InvalidArgument(
            FieldViolation(
                field="fingerprint.radius",
                description=f"radius {fingerprint.radius} is over {_MAX_RADIUS}",
            )
        )
    if encoding in _GENERATED and not _MIN_BITS <= fingerprint.n_bits <= _MAX_BITS:
        raise InvalidArgument(
            FieldViolation(
                field="fingerprint.n_bits",
                description=(f"n_bits {fingerprint.n_bits} is outside {_MIN_BITS}..{_MAX_BITS}"),
            )
        )
    return fingerprint


def _layout(
    encoding: int, fingerprint: FingerprintSettings
) -> tuple[int, type[np.generic], tuple[str, ...]]:
    """Columns, element type and column names of the matrix."""
    if encoding == _E.MOLECULE_ENCODING_RDKIT_DESCRIPTORS:
        return len(DESCRIPTOR_NAMES), np.float64, DESCRIPTOR_NAMES
    if encoding == _E.MOLECULE_ENCODING_MACCS:
        return MACCS_BITS, np.uint8, ()
    return fingerprint.n_bits, np.int32 if fingerprint.counts else np.uint8, ()


@functools.lru_cache(maxsize=32)
def _generator(encoding: int, radius: int, n_bits: int, include_chirality: bool) -> Any:
    """A fingerprint generator; building one costs more than using it, so each worker
    process keeps those it has built."""
    if encoding == _E.MOLECULE_ENCODING_MORGAN:
        return rdFingerprintGenerator.GetMorganGenerator(
            radius=radius, fpSize=n_bits, includeChirality=include_chirality
        )
    if encoding == _E.MOLECULE_ENCODING_FEATURE_MORGAN:
        invariants = rdFingerprintGenerator.GetMorganFeatureAtomInvGen()
        generator = rdFingerprintGenerator.GetMorganGenerator(
            radius=radius,
            fpSize=n_bits,
            includeChirality=include_chirality,
            atomInvariantsGenerator=invariants,
        )
        # The generator points at the invariants generator without owning it.
        return _Holding(generator, invariants)
    if encoding == _E.MOLECULE_ENCODING_ATOM_PAIR:
        return rdFingerprintGenerator.GetAtomPairGenerator(
            fpSize=n_bits, includeChirality=include_chirality
        )
    if encoding == _E.MOLECULE_ENCODING_TOPOLOGICAL_TORSION:
        return rdFingerprintGenerator.GetTopologicalTorsionGenerator(
            fpSize=n_bits, includeChirality=include_chirality
        )
    raise ValueError(f"no fingerprint generator for encoding {encoding}")


class _Holding:
    """A generator together with the objects it borrows, so they live as long as it."""

    __slots__ = ("_kept", "generator")

    def __init__(self, generator: Any, *kept: Any) -> None:
        self.generator = generator
        self._kept = kept


def _row_encoder(encoding: int, fingerprint: FingerprintSettings) -> Callable[[Any, Row], None]:
    if encoding == _E.MOLECULE_ENCODING_RDKIT_DESCRIPTORS:
        return _descriptors_into
    if encoding == _E.MOLECULE_ENCODING_MACCS:
        return _maccs_into
    radius = fingerprint.radius if encoding in _MORGANS else 0
    made = _generator(encoding, radius, fingerprint.n_bits, fingerprint.include_chirality)
    generator = made.generator if isinstance(made, _Holding) else made
    if fingerprint.counts:

        def counts_into(mol: Any, row: Row) -> None:
            # uint32 counts would wrap past the int32 maximum when stored.
            row[:] = np.minimum(generator.GetCountFingerprintAsNumPy(mol), _INT32_MAX)

        return counts_into

    def bits_into(mol: Any, row: Row) -> None:
        row[:] = generator.GetFingerprintAsNumPy(mol)

    return bits_into


def _maccs_into(mol: Any, row: Row) -> None:
    # The function MACCSkeys.GenMACCSKeys is an alias of.
    bits = rdMolDescriptors.GetMACCSKeysFingerprint(mol).ToBitString().encode("ascii")
    row[:] = np.frombuffer(bits, dtype=np.uint8) - _ASCII_ZERO


def _descriptors_into(mol: Any, row: Row) -> None:
    values = _DESCRIPTORS.CalcMolDescriptors(mol, missingVal=math.nan)
    row[:] = np.fromiter(
        (math.nan if value is None else value for value in values.values()),
        dtype=np.float64,
        count=len(DESCRIPTOR_NAMES),
    )


def _encode_into(
    encode_row: Callable[[Any, Row], None], mol: Any, row: Row, field_path: str
) -> None:
    with rdkit_log() as log:
        try:
            encode_row(mol, row)
        except (RuntimeError, ValueError) as exc:
            row[:] = math.nan if row.dtype == np.float64 else 0
            reason = describe_failure(log) or str(exc)
            raise InvalidArgument(
                FieldViolation(
                    field=field_path,
                    description=f"RDKit cannot encode this molecule: {reason}",
                    reason=ENCODING_FAILED,
                )
            ) from exc
