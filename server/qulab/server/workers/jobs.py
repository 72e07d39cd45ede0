"""What the server asks of worker processes: op names and payload layouts. Shared by the
servicers and the workers, and light to import (the functions behind the ops live in
`_ops`, which loads RDKit).

Every payload is a serialized request message, except `molecule.encode`, whose payload is
one chunk of a caller's EncodeMoleculeRequest prefixed with the index of the chunk's first
molecule in the caller's request, so that per-item errors name the caller's field path.
"""

from __future__ import annotations

import struct

from qulab.v1 import molecule_pb2

__all__ = ["MOLECULE_ENCODE", "MOLECULE_PARSE", "encode_chunk", "read_encode_chunk"]

MOLECULE_PARSE = "molecule.parse"
MOLECULE_ENCODE = "molecule.encode"

_FIRST_INDEX = struct.Struct("<Q")


def encode_chunk(first_index: int, chunk: molecule_pb2.EncodeMoleculeRequest) -> bytes:
    return _FIRST_INDEX.pack(first_index) + chunk.SerializeToString(deterministic=True)


def read_encode_chunk(payload: bytes) -> tuple[int, molecule_pb2.EncodeMoleculeRequest]:
    (first_index,) = _FIRST_INDEX.unpack_from(payload)
    chunk = molecule_pb2.EncodeMoleculeRequest.FromString(payload[_FIRST_INDEX.size :])
    return first_index, chunk
