"""What a worker process can compute: op name -> pure function from request bytes to
response bytes. This module is imported only in worker processes (and the forkserver that
starts them), never in the server's event-loop process: it loads RDKit."""

from __future__ import annotations

from collections.abc import Callable

from qulab.server.config import Settings
from qulab.server.domain import MoleculeLimits
from qulab.server.domain.molecule_features import encode_molecules
from qulab.server.domain.molecules import parse_molecule
from qulab.server.workers.jobs import MOLECULE_ENCODE, MOLECULE_PARSE, read_encode_chunk
from qulab.v1 import molecule_pb2

__all__ = ["Op", "build_ops"]

Op = Callable[[bytes], bytes]


def build_ops(settings: Settings) -> dict[str, Op]:
    limits = MoleculeLimits(
        max_smiles_length=settings.max_smiles_length,
        max_atoms=settings.max_atoms,
        max_branch_depth=settings.max_branch_depth,
        max_selfies_tokens=settings.max_selfies_tokens,
        max_inchi_length=settings.max_inchi_length,
        max_molfile_bytes=settings.max_molfile_bytes,
    )

    def parse(payload: bytes) -> bytes:
        request = molecule_pb2.ParseMoleculeRequest.FromString(payload)
        return parse_molecule(request, limits).SerializeToString()

    def encode(payload: bytes) -> bytes:
        first_index, chunk = read_encode_chunk(payload)
        return encode_molecules(chunk, limits, first_index=first_index).SerializeToString()

    return {MOLECULE_PARSE: parse, MOLECULE_ENCODE: encode}
