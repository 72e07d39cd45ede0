"""What the server asks of worker processes: op names and payload layouts. Shared by the
servicers and the workers, and light to import (the functions behind the ops live in
`_ops`, which loads RDKit).

Every payload is a serialized request message, except the encode ops, whose payload is one
chunk of a caller's Encode*Request prefixed with the index of the chunk's first item in the
caller's request, so that per-item errors name the caller's field path.
"""

from __future__ import annotations

import struct
from typing import TypeVar

from google.protobuf.message import Message

__all__ = [
    "MOLECULE_ENCODE",
    "MOLECULE_PARSE",
    "SPECTRUM_ENCODE",
    "SPECTRUM_PARSE",
    "STRUCTURE_ENCODE",
    "STRUCTURE_PARSE",
    "STRUCTURE_WRITE",
    "UNITS_CONVERT",
    "encode_chunk",
    "read_encode_chunk",
]

MOLECULE_PARSE = "molecule.parse"
MOLECULE_ENCODE = "molecule.encode"
STRUCTURE_PARSE = "structure.parse"
STRUCTURE_WRITE = "structure.write"
STRUCTURE_ENCODE = "structure.encode"
SPECTRUM_PARSE = "spectrum.parse"
SPECTRUM_ENCODE = "spectrum.encode"
UNITS_CONVERT = "units.convert"

ChunkT = TypeVar("ChunkT", bound=Message)

_FIRST_INDEX = struct.Struct("<Q")


def encode_chunk(first_index: int, chunk: Message) -> bytes:
    return _FIRST_INDEX.pack(first_index) + chunk.SerializeToString(deterministic=True)


def read_encode_chunk(payload: bytes, request_type: type[ChunkT]) -> tuple[int, ChunkT]:
    (first_index,) = _FIRST_INDEX.unpack_from(payload)
    return first_index, request_type.FromString(payload[_FIRST_INDEX.size :])
