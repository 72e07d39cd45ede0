"""qulab.v1.SpectrumService and qulab.v1.UnitService: validate, dispatch to the worker pool,
attach provenance. The JCAMP-DX reader, the encoder and pint run in worker processes."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message

from qulab.server.domain import spectrum_options
from qulab.server.errors import FieldViolation, InvalidArgument
from qulab.server.services._batch import encode_in_chunks
from qulab.server.services._rpc import Call, Context, Rpc, check_size, validate
from qulab.server.workers.jobs import SPECTRUM_ENCODE, SPECTRUM_PARSE, UNITS_CONVERT
from qulab.v1 import spectrum_pb2, units_pb2

__all__ = ["ENCODE_CHUNK", "SPECTRUM_SERVICE", "UNIT_SERVICE", "SpectrumServicer"]

SPECTRUM_SERVICE = spectrum_pb2.DESCRIPTOR.services_by_name["SpectrumService"].full_name
UNIT_SERVICE = units_pb2.DESCRIPTOR.services_by_name["UnitService"].full_name
# Spectra per worker item of an EncodeSpectrum call.
ENCODE_CHUNK = 16


class SpectrumServicer:
    """Both services: they share the size checks and the one-op unary shape."""

    def __init__(self, rpc: Rpc) -> None:
        self._rpc = rpc

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        rpc = self._rpc
        spectra: dict[str, tuple[Any, type[Message]]] = {
            "ParseSpectrum": (self.parse_spectrum, spectrum_pb2.ParseSpectrumRequest),
            "EncodeSpectrum": (self.encode_spectrum, spectrum_pb2.EncodeSpectrumRequest),
        }
        units: dict[str, tuple[Any, type[Message]]] = {
            "ConvertUnits": (self.convert_units, units_pb2.ConvertUnitsRequest),
        }
        return [
            grpc.method_handlers_generic_handler(
                service,
                {
                    name: rpc.unary(f"/{service}/{name}", method, request_type)
                    for name, (method, request_type) in methods.items()
                },
            )
            for service, methods in ((SPECTRUM_SERVICE, spectra), (UNIT_SERVICE, units))
        ]

    async def parse_spectrum(
        self, request: spectrum_pb2.ParseSpectrumRequest, context: Context, call: Call
    ) -> bytes:
        validate(request)
        check_size(request.content, "content", self._rpc.settings.max_spectrum_bytes)
        return await self._rpc.answer(
            call,
            SPECTRUM_PARSE,
            request,
            spectrum_options.parse_parameters(request.options),
            spectrum_pb2.ParseSpectrumResponse,
        )

    async def encode_spectrum(
        self, request: spectrum_pb2.EncodeSpectrumRequest, context: Context, call: Call
    ) -> bytes:
        validate(request)
        limit = self._rpc.settings.max_spectrum_bytes
        for k, item in enumerate(request.spectra):
            check_size(item.content, f"spectra[{k}].content", limit)
        return await encode_in_chunks(
            self._rpc,
            call,
            SPECTRUM_ENCODE,
            request,
            "spectra",
            spectrum_pb2.EncodeSpectrumResponse,
            spectrum_options.encode_parameters(request.options),
            chunk_size=ENCODE_CHUNK,
            per_item=("peaks",),
        )

    async def convert_units(
        self, request: units_pb2.ConvertUnitsRequest, context: Context, call: Call
    ) -> bytes:
        validate(request)
        given = [name for name in ("values", "tensor") if _has(request, name)]
        if len(given) != 1:
            raise InvalidArgument(
                FieldViolation(
                    field="values",
                    reason="ONE_OF",
                    description="give exactly one of `values` and `tensor`"
                    + (" (both were given)" if given else " (neither was given)"),
                )
            )
        parameters = {
            "from_unit": request.from_unit,
            "to_unit": request.to_unit,
            "context": request.context,
        }
        return await self._rpc.answer(
            call, UNITS_CONVERT, request, parameters, units_pb2.ConvertUnitsResponse
        )


def _has(request: units_pb2.ConvertUnitsRequest, name: str) -> bool:
    return bool(request.values) if name == "values" else request.HasField("tensor")
