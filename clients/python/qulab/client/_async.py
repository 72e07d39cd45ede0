"""The asyncio client."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2

from qulab.client._options import (
    DEFAULT_TIMEOUT_S,
    PROBE_TIMEOUT_S,
    Guard,
    Metadata,
    RequestT,
    ResponseT,
    channel_options,
    health_check,
)
from qulab.client.breaker import CircuitBreaker
from qulab.client.credentials import Credentials
from qulab.client.errors import QulabError, from_rpc_error
from qulab.client.interceptors import async_interceptors
from qulab.v1 import (
    molecule_pb2,
    molecule_pb2_grpc,
    spectrum_pb2,
    spectrum_pb2_grpc,
    structure_pb2,
    structure_pb2_grpc,
    tools_pb2,
    tools_pb2_grpc,
    units_pb2,
    units_pb2_grpc,
)

__all__ = ["AsyncClient"]


class AsyncClient:
    """A typed asyncio client for one QuLab server; retries, circuit breaker and errors
    as for `Client`.

    Every unary call has a deadline: `timeout` seconds (the client's default unless given).

        async with AsyncClient("localhost:50051") as qulab:
            answer = await qulab.parse_molecule(ParseMoleculeRequest(smiles="CCO"))
    """

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        credentials: Credentials | None = None,
        options: Sequence[tuple[str, str | int]] = (),
        retries: bool = True,
        breaker: CircuitBreaker | bool = True,
    ) -> None:
        creds = credentials or Credentials()
        creds.check_target(target)
        opts = [*channel_options(options, retries=retries), *creds.channel_options()]
        tls = creds.channel_credentials()
        interceptors = async_interceptors(creds.metadata)
        self._channel = (
            grpc.aio.secure_channel(target, tls, opts, interceptors=interceptors)
            if tls
            else grpc.aio.insecure_channel(target, opts, interceptors=interceptors)
        )
        self._molecules = molecule_pb2_grpc.MoleculeServiceStub(self._channel)
        self._structures = structure_pb2_grpc.StructureServiceStub(self._channel)
        self._spectra = spectrum_pb2_grpc.SpectrumServiceStub(self._channel)
        self._units = units_pb2_grpc.UnitServiceStub(self._channel)
        self._tools = tools_pb2_grpc.ToolServiceStub(self._channel)
        self._health_check = health_check(self._channel)
        self._guard = Guard(target, breaker)
        self.timeout = timeout

    async def _unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        timeout: float | None,
        metadata: Metadata,
    ) -> ResponseT:
        await self._admit()
        try:
            response = await method(
                request, timeout=timeout or self.timeout, metadata=tuple(metadata)
            )
        except grpc.RpcError as error:
            raise self._guard.failed(error) from None
        self._guard.succeeded()
        return response

    async def _admit(self) -> None:
        if self._guard.admit():
            try:
                status: int | None = await self.health(timeout=PROBE_TIMEOUT_S)
            except QulabError:
                status = None
            self._guard.probed(status)

    async def parse_molecule(
        self,
        request: molecule_pb2.ParseMoleculeRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> molecule_pb2.ParseMoleculeResponse:
        """Parse one molecule (MoleculeService.ParseMolecule)."""
        return await self._unary(self._molecules.ParseMolecule, request, timeout, metadata)

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
        await self._admit()
        source = aiter(requests) if isinstance(requests, AsyncIterable) else iter(requests)
        call = self._molecules.ParseMolecules(source, timeout=timeout, metadata=tuple(metadata))
        try:
            async for response in call:
                yield response
        except grpc.RpcError as error:
            raise self._guard.failed(error) from None
        finally:
            call.cancel()  # when the caller stops early; a no-op once the call has ended
        self._guard.succeeded()

    async def encode_molecule(
        self,
        request: molecule_pb2.EncodeMoleculeRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> molecule_pb2.EncodeMoleculeResponse:
        """Encode molecules as a feature matrix (MoleculeService.EncodeMolecule)."""
        return await self._unary(self._molecules.EncodeMolecule, request, timeout, metadata)

    async def parse_structure(
        self,
        request: structure_pb2.ParseStructureRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> structure_pb2.ParseStructureResponse:
        """Parse a CIF or POSCAR file (StructureService.ParseStructure)."""
        return await self._unary(self._structures.ParseStructure, request, timeout, metadata)

    async def write_structure(
        self,
        request: structure_pb2.WriteStructureRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> structure_pb2.WriteStructureResponse:
        """Write a structure as CIF or POSCAR text (StructureService.WriteStructure)."""
        return await self._unary(self._structures.WriteStructure, request, timeout, metadata)

    async def encode_structure(
        self,
        request: structure_pb2.EncodeStructureRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> structure_pb2.EncodeStructureResponse:
        """Encode structures as a feature matrix (StructureService.EncodeStructure)."""
        return await self._unary(self._structures.EncodeStructure, request, timeout, metadata)

    async def parse_spectrum(
        self,
        request: spectrum_pb2.ParseSpectrumRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> spectrum_pb2.ParseSpectrumResponse:
        """Parse a JCAMP-DX file (SpectrumService.ParseSpectrum)."""
        return await self._unary(self._spectra.ParseSpectrum, request, timeout, metadata)

    async def encode_spectrum(
        self,
        request: spectrum_pb2.EncodeSpectrumRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> spectrum_pb2.EncodeSpectrumResponse:
        """Encode spectra as a fixed-length matrix (SpectrumService.EncodeSpectrum)."""
        return await self._unary(self._spectra.EncodeSpectrum, request, timeout, metadata)

    async def convert_units(
        self,
        request: units_pb2.ConvertUnitsRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> units_pb2.ConvertUnitsResponse:
        """Convert values between units (UnitService.ConvertUnits)."""
        return await self._unary(self._units.ConvertUnits, request, timeout, metadata)

    async def list_tools(
        self,
        request: tools_pb2.ListToolsRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> tools_pb2.ListToolsResponse:
        """The tools the caller may call, for LLM tool-calling (ToolService.ListTools)."""
        return await self._unary(self._tools.ListTools, request, timeout, metadata)

    async def call_tool(
        self,
        request: tools_pb2.CallToolRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> tools_pb2.CallToolResponse:
        """Call a tool with JSON arguments; the answer is JSON (ToolService.CallTool)."""
        return await self._unary(self._tools.CallTool, request, timeout, metadata)

    async def health(self, service: str = "", *, timeout: float | None = None) -> int:
        """The grpc.health.v1 status of `service` ("" = the whole server), a
        `HealthCheckResponse.ServingStatus` value (1 = SERVING)."""
        try:
            response: health_pb2.HealthCheckResponse = await self._health_check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout or self.timeout
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
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
