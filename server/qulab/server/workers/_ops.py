"""What a worker process can compute: op name -> pure function from request bytes to
response bytes. This module is imported only in worker processes (and the forkserver that
starts them), never in the server's event-loop process: it loads RDKit, gemmi, spglib and pint."""

from __future__ import annotations

from collections.abc import Callable

from qulab.server.config import Settings
from qulab.server.domain import MoleculeLimits, StructureLimits
from qulab.server.domain._jcamp import JcampLimits
from qulab.server.domain.molecule_features import encode_molecules
from qulab.server.domain.molecules import parse_molecule
from qulab.server.domain.spectra import encode_spectra, parse_spectrum
from qulab.server.domain.structures import encode_structures, parse_structure, write_structure
from qulab.server.domain.units import convert_units
from qulab.server.workers.jobs import (
    MOLECULE_ENCODE,
    MOLECULE_PARSE,
    SPECTRUM_ENCODE,
    SPECTRUM_PARSE,
    STRUCTURE_ENCODE,
    STRUCTURE_PARSE,
    STRUCTURE_WRITE,
    UNITS_CONVERT,
    read_encode_chunk,
)
from qulab.v1 import molecule_pb2, spectrum_pb2, structure_pb2, units_pb2

__all__ = ["Op", "build_ops"]

Op = Callable[[bytes], bytes]


def build_ops(settings: Settings) -> dict[str, Op]:
    molecule_limits = MoleculeLimits(
        max_smiles_length=settings.max_smiles_length,
        max_atoms=settings.max_atoms,
        max_branch_depth=settings.max_branch_depth,
        max_selfies_tokens=settings.max_selfies_tokens,
        max_inchi_length=settings.max_inchi_length,
        max_molfile_bytes=settings.max_molfile_bytes,
    )
    structure_limits = StructureLimits(
        max_bytes=settings.max_structure_bytes, max_sites=settings.max_structure_sites
    )

    def parse(payload: bytes) -> bytes:
        request = molecule_pb2.ParseMoleculeRequest.FromString(payload)
        return parse_molecule(request, molecule_limits).SerializeToString()

    def encode(payload: bytes) -> bytes:
        first_index, chunk = read_encode_chunk(payload, molecule_pb2.EncodeMoleculeRequest)
        return encode_molecules(chunk, molecule_limits, first_index=first_index).SerializeToString()

    def parse_crystal(payload: bytes) -> bytes:
        request = structure_pb2.ParseStructureRequest.FromString(payload)
        return parse_structure(request, structure_limits).SerializeToString()

    def write_crystal(payload: bytes) -> bytes:
        request = structure_pb2.WriteStructureRequest.FromString(payload)
        return write_structure(request, structure_limits).SerializeToString()

    def encode_crystals(payload: bytes) -> bytes:
        first_index, chunk = read_encode_chunk(payload, structure_pb2.EncodeStructureRequest)
        response = encode_structures(chunk, structure_limits, first_index=first_index)
        return response.SerializeToString()

    spectrum_limits = JcampLimits(
        max_bytes=settings.max_spectrum_bytes,
        max_points=settings.max_spectrum_points,
        max_blocks=settings.max_spectrum_blocks,
    )

    def parse_jcamp(payload: bytes) -> bytes:
        request = spectrum_pb2.ParseSpectrumRequest.FromString(payload)
        return parse_spectrum(request, spectrum_limits).SerializeToString()

    def encode_jcamp(payload: bytes) -> bytes:
        first_index, chunk = read_encode_chunk(payload, spectrum_pb2.EncodeSpectrumRequest)
        response = encode_spectra(chunk, spectrum_limits, first_index=first_index)
        return response.SerializeToString()

    def convert(payload: bytes) -> bytes:
        request = units_pb2.ConvertUnitsRequest.FromString(payload)
        return convert_units(request).SerializeToString()

    return {
        MOLECULE_PARSE: parse,
        MOLECULE_ENCODE: encode,
        STRUCTURE_PARSE: parse_crystal,
        STRUCTURE_WRITE: write_crystal,
        STRUCTURE_ENCODE: encode_crystals,
        SPECTRUM_PARSE: parse_jcamp,
        SPECTRUM_ENCODE: encode_jcamp,
        UNITS_CONVERT: convert,
    }
