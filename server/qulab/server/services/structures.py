"""qulab.v1.StructureService: validate, dispatch to the worker pool, attach provenance.
No crystallography here: it runs in worker processes (`qulab.server.domain.structures`)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message

from qulab.server.domain.structure_options import structure_parameters
from qulab.server.services._batch import encode_in_chunks
from qulab.server.services._rpc import Call, Context, Rpc, check_size, validate
from qulab.server.workers.jobs import STRUCTURE_ENCODE, STRUCTURE_PARSE, STRUCTURE_WRITE
from qulab.v1 import structure_pb2

__all__ = ["ENCODE_CHUNK", "SERVICE", "StructureServicer"]

SERVICE = structure_pb2.DESCRIPTOR.services_by_name["StructureService"].full_name
# Structures per worker item of an EncodeStructure call: a CIF costs 0.1-1 ms, so small
# chunks already amortise the dispatch and spread a call over every worker.
ENCODE_CHUNK = 32
_FORMAT = structure_pb2.StructureFormat


class StructureServicer:
    def __init__(self, rpc: Rpc) -> None:
        self._rpc = rpc

    def handler(self) -> grpc.GenericRpcHandler:
        rpc = self._rpc
        methods: dict[str, tuple[Any, type[Message]]] = {
            "ParseStructure": (self.parse_structure, structure_pb2.ParseStructureRequest),
            "WriteStructure": (self.write_structure, structure_pb2.WriteStructureRequest),
            "EncodeStructure": (self.encode_structure, structure_pb2.EncodeStructureRequest),
        }
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                name: rpc.unary(f"/{SERVICE}/{name}", method, request_type)
                for name, (method, request_type) in methods.items()
            },
        )

    async def parse_structure(
        self, request: structure_pb2.ParseStructureRequest, context: Context, call: Call
    ) -> bytes:
        validate(request)
        check_size(request.content, "content", self._rpc.settings.max_structure_bytes)
        parameters = structure_parameters(
            request.options, format=_FORMAT.Name(request.format), block=request.block
        )
        return await self._rpc.answer(
            call, STRUCTURE_PARSE, request, parameters, structure_pb2.ParseStructureResponse
        )

    async def write_structure(
        self, request: structure_pb2.WriteStructureRequest, context: Context, call: Call
    ) -> bytes:
        validate(request)
        check_size(request.input.content, "input.content", self._rpc.settings.max_structure_bytes)
        parameters = structure_parameters(
            request.options,
            format=_FORMAT.Name(request.input.format),
            block=request.input.block,
            output_format=_FORMAT.Name(request.output_format),
        )
        return await self._rpc.answer(
            call, STRUCTURE_WRITE, request, parameters, structure_pb2.WriteStructureResponse
        )

    async def encode_structure(
        self, request: structure_pb2.EncodeStructureRequest, context: Context, call: Call
    ) -> bytes:
        validate(request)
        for k, item in enumerate(request.structures):
            check_size(
                item.content, f"structures[{k}].content", self._rpc.settings.max_structure_bytes
            )
        return await encode_in_chunks(
            self._rpc,
            call,
            STRUCTURE_ENCODE,
            request,
            "structures",
            structure_pb2.EncodeStructureResponse,
            structure_parameters(request.options),
            chunk_size=ENCODE_CHUNK,
        )
