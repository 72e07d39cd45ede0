"""The asyncio client."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
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

__all__ = ["AsyncClient"]


class AsyncClient:
    """A typed asyncio client for one QuLab server.

    Every call has a deadline: `timeout` seconds (the client's default unless given).

        async with AsyncClient("localhost:50051") as qulab:
            answer = await qulab.parse_molecule(ParseMoleculeRequest(smiles="CCO"))
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
            grpc.aio.secure_channel(target, credentials, opts)
            if credentials
            else grpc.aio.insecure_channel(target, opts)
        )
        self._molecules = molecule_pb2_grpc.MoleculeServiceStub(self._channel)
        self._structures = structure_pb2_grpc.StructureServiceStub(self._channel)
        self._spectra = spectrum_pb2_grpc.SpectrumServiceStub(self._channel)
        self._units = units_pb2_grpc.UnitServiceStub(self._channel)
        self._health_check = health_check(self._channel)
        self.timeout = timeout

    async def parse_molecule(
        self,
        request: molecule_pb2.ParseMoleculeRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> molecule_pb2.ParseMoleculeResponse:
        """Parse one molecule (MoleculeService.ParseMolecule)."""
        return await self._molecules.ParseMolecule(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )

    async def parse_molecules(
        self,
        requests: Iterable[molecule_pb2.ParseMoleculeRequest]
        | AsyncIterable[molecule_pb2.ParseMoleculeRequest],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[molecule_pb2.ParseMoleculeResponse]:
        """Parse a stream of molecules; answers come in request order, each with its own
        `error` when it failed (MoleculeService.ParseMolecules). `timeout` covers the
        whole stream and defaults to none."""
        source = aiter(requests) if isinstance(requests, AsyncIterable) else iter(requests)
        call = self._molecules.ParseMolecules(source, timeout=timeout, metadata=tuple(metadata))
        async for response in call:
            yield response

    async def encode_molecule(
        self,
        request: molecule_pb2.EncodeMoleculeRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> molecule_pb2.EncodeMoleculeResponse:
        """Encode molecules as a feature matrix (MoleculeService.EncodeMolecule)."""
        return await self._molecules.EncodeMolecule(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )

    async def parse_structure(
        self,
        request: structure_pb2.ParseStructureRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> structure_pb2.ParseStructureResponse:
        """Parse a CIF or POSCAR file (StructureService.ParseStructure)."""
        response: structure_pb2.ParseStructureResponse = await self._structures.ParseStructure(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    async def write_structure(
        self,
        request: structure_pb2.WriteStructureRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> structure_pb2.WriteStructureResponse:
        """Write a structure as CIF or POSCAR text (StructureService.WriteStructure)."""
        response: structure_pb2.WriteStructureResponse = await self._structures.WriteStructure(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    async def encode_structure(
        self,
        request: structure_pb2.EncodeStructureRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> structure_pb2.EncodeStructureResponse:
        """Encode structures as a feature matrix (StructureService.EncodeStructure)."""
        response: structure_pb2.EncodeStructureResponse = await self._structures.EncodeStructure(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    async def parse_spectrum(
        self,
        request: spectrum_pb2.ParseSpectrumRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> spectrum_pb2.ParseSpectrumResponse:
        """Parse a JCAMP-DX file (SpectrumService.ParseSpectrum)."""
        response: spectrum_pb2.ParseSpectrumResponse = await self._spectra.ParseSpectrum(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    async def encode_spectrum(
        self,
        request: spectrum_pb2.EncodeSpectrumRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> spectrum_pb2.EncodeSpectrumResponse:
        """Encode spectra as a fixed-length matrix (SpectrumService.EncodeSpectrum)."""
        response: spectrum_pb2.EncodeSpectrumResponse = await self._spectra.EncodeSpectrum(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    async def convert_units(
        self,
        request: units_pb2.ConvertUnitsRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> units_pb2.ConvertUnitsResponse:
        """Convert values between units (UnitService.ConvertUnits)."""
        response: units_pb2.ConvertUnitsResponse = await self._units.ConvertUnits(
            request, timeout=timeout or self.timeout, metadata=tuple(metadata)
        )
        return response

    async def health(self, service: str = "", *, timeout: float | None = None) -> int:
        """The grpc.health.v1 status of `service` ("" = the whole server), a
        `HealthCheckResponse.ServingStatus` value (1 = SERVING)."""
        response: health_pb2.HealthCheckResponse = await self._health_check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout or self.timeout
        )
        return response.status

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
