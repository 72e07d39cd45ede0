"""The blocking client."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2

from qulab.client._options import DEFAULT_TIMEOUT_S, Metadata, channel_options, health_check
from qulab.v1 import (
    molecule_pb2,
    molecule_pb2_grpc,
    spectrum_pb2,
    spectrum_pb2_grpc,
    structure_pb2,
    structure_pb2_grpc,
    units_pb2,
    units_pb2_grpc,
)

__all__ = ["Client"]


class Client:
    """A typed blocking client for one QuLab server.

    Every call has a deadline: `timeout` seconds (the client's default unless given).

        with Client("localhost:50051") as qulab:
            answer = qulab.parse_molecule(ParseMoleculeRequest(smiles="CCO"))
    """

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, str | int]] = (),
    ) -> None:
        opts = channel_options(options)
        self._channel = (
            grpc.secure_channel(target, credentials, opts)
            if credentials
            else grpc.insecure_channel(target, opts)
        )
        self._molecules = molecule_pb2_grpc.MoleculeServiceStub(self._channel)
        self._structures = structure_pb2_grpc.StructureServiceStub(self._channel)
        self._spectra = spectrum_pb2_grpc.SpectrumServiceStub(self._channel)
        self._units = units_pb2_grpc.UnitServiceStub(self._channel)
        self._health_check = health_check(self._channel)
        self.timeout = timeout

    def parse_molecule(
        self,
        request: molecule_pb2.ParseMoleculeRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> molecule_pb2.ParseMoleculeResponse:
        """Parse one molecule (MoleculeService.ParseMolecule)."""
        response: molecule_pb2.ParseMoleculeResponse = self._molecules.ParseMolecule(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    def parse_molecules(
        self,
        requests: Iterable[molecule_pb2.ParseMoleculeRequest],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Iterator[molecule_pb2.ParseMoleculeResponse]:
        """Parse a stream of molecules; answers come in request order, each with its own
        `error` when it failed (MoleculeService.ParseMolecules). `timeout` covers the
        whole stream and defaults to none."""
        responses: Iterator[molecule_pb2.ParseMoleculeResponse] = self._molecules.ParseMolecules(
            iter(requests), timeout=timeout, metadata=tuple(metadata)
        )
        return responses

    def encode_molecule(
        self,
        request: molecule_pb2.EncodeMoleculeRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> molecule_pb2.EncodeMoleculeResponse:
        """Encode molecules as a feature matrix (MoleculeService.EncodeMolecule)."""
        response: molecule_pb2.EncodeMoleculeResponse = self._molecules.EncodeMolecule(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    def parse_structure(
        self,
        request: structure_pb2.ParseStructureRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> structure_pb2.ParseStructureResponse:
        """Parse a CIF or POSCAR file (StructureService.ParseStructure)."""
        response: structure_pb2.ParseStructureResponse = self._structures.ParseStructure(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    def write_structure(
        self,
        request: structure_pb2.WriteStructureRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> structure_pb2.WriteStructureResponse:
        """Write a structure as CIF or POSCAR text (StructureService.WriteStructure)."""
        response: structure_pb2.WriteStructureResponse = self._structures.WriteStructure(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    def encode_structure(
        self,
        request: structure_pb2.EncodeStructureRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> structure_pb2.EncodeStructureResponse:
        """Encode structures as a feature matrix (StructureService.EncodeStructure)."""
        response: structure_pb2.EncodeStructureResponse = self._structures.EncodeStructure(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    def parse_spectrum(
        self,
        request: spectrum_pb2.ParseSpectrumRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> spectrum_pb2.ParseSpectrumResponse:
        """Parse a JCAMP-DX file (SpectrumService.ParseSpectrum)."""
        response: spectrum_pb2.ParseSpectrumResponse = self._spectra.ParseSpectrum(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    def encode_spectrum(
        self,
        request: spectrum_pb2.EncodeSpectrumRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> spectrum_pb2.EncodeSpectrumResponse:
        """Encode spectra as a fixed-length matrix (SpectrumService.EncodeSpectrum)."""
        response: spectrum_pb2.EncodeSpectrumResponse = self._spectra.EncodeSpectrum(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    def convert_units(
        self,
        request: units_pb2.ConvertUnitsRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> units_pb2.ConvertUnitsResponse:
        """Convert values between units (UnitService.ConvertUnits)."""
        response: units_pb2.ConvertUnitsResponse = self._units.ConvertUnits(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    def health(self, service: str = "", *, timeout: float | None = None) -> int:
        """The grpc.health.v1 status of `service` ("" = the whole server), a
        `HealthCheckResponse.ServingStatus` value (1 = SERVING)."""
        response: health_pb2.HealthCheckResponse = self._health_check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout or self.timeout
        )
        return response.status

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
