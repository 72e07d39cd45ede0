"""qulab.v1.MoleculeService: validate, dispatch to the worker pool, attach provenance.
No chemistry here: it runs in worker processes (`qulab.server.domain.molecules`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
from google.rpc import status_pb2

from qulab.server.domain.options import encode_parameters, parse_parameters
from qulab.server.errors import QulabError
from qulab.server.services._batch import encode_in_chunks
from qulab.server.services._rpc import Call, Context, Rpc, validate
from qulab.server.workers.jobs import MOLECULE_ENCODE, MOLECULE_PARSE
from qulab.v1 import molecule_pb2

__all__ = ["ENCODE_CHUNK", "SERVICE", "MoleculeServicer"]

SERVICE = molecule_pb2.DESCRIPTOR.services_by_name["MoleculeService"].full_name
# Molecules per worker item of an EncodeMolecule call: large enough to amortise the
# dispatch, small enough that a big call spreads over every worker.
ENCODE_CHUNK = 256


class MoleculeServicer:
    def __init__(self, rpc: Rpc) -> None:
        self._rpc = rpc

    def handler(self) -> grpc.GenericRpcHandler:
        rpc = self._rpc
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ParseMolecule": rpc.unary(
                    f"/{SERVICE}/ParseMolecule",
                    self.parse_molecule,
                    molecule_pb2.ParseMoleculeRequest,
                ),
                "ParseMolecules": rpc.stream(
                    f"/{SERVICE}/ParseMolecules",
                    self.parse_molecules,
                    molecule_pb2.ParseMoleculeRequest,
                ),
                "EncodeMolecule": rpc.unary(
                    f"/{SERVICE}/EncodeMolecule",
                    self.encode_molecule,
                    molecule_pb2.EncodeMoleculeRequest,
                ),
            },
        )

    async def parse_molecule(
        self, request: molecule_pb2.ParseMoleculeRequest, context: Context, call: Call
    ) -> bytes:
        validate(request)
        return await self._rpc.answer(
            call,
            MOLECULE_PARSE,
            request,
            parse_parameters(request.options),
            molecule_pb2.ParseMoleculeResponse,
        )

    async def parse_molecules(
        self,
        requests: AsyncIterator[molecule_pb2.ParseMoleculeRequest],
        context: Context,
        call: Call,
    ) -> AsyncIterator[bytes]:
        # At most `stream_window` items in flight, each holding a slot from the moment it is
        # read until its answer is sent: when none is free the reader stops reading, and
        # HTTP/2 flow control slows the client down. Answers leave in request order.
        slots = asyncio.Semaphore(self._rpc.settings.stream_window)
        in_order: asyncio.Queue[asyncio.Task[bytes] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in requests:
                    await slots.acquire()
                    in_order.put_nowait(asyncio.create_task(self._parse_item(request, call)))
            finally:
                in_order.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await in_order.get()) is not None:
                answer = await item
                slots.release()
                yield answer
            await reader  # re-raise a failure to read the stream
        finally:
            reader.cancel()
            while not in_order.empty():
                pending = in_order.get_nowait()
                if pending is not None:
                    pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _parse_item(self, request: molecule_pb2.ParseMoleculeRequest, call: Call) -> bytes:
        """One stream item: its answer, or its own error; never an exception."""
        try:
            validate(request)
            payload = request.SerializeToString(deterministic=True)
            result = await self._rpc.compute(call, MOLECULE_PARSE, payload, wait=True)
        except QulabError as exc:
            status = exc.to_status()
        else:
            record = self._rpc.provenance(
                call,
                payload,
                [result],
                parse_parameters(request.options),
                len(result.body) if result.ok else 0,
            )
            if result.ok:
                return self._rpc.respond(
                    call, result.body, record, molecule_pb2.ParseMoleculeResponse
                )
            status = status_pb2.Status.FromString(result.body)
            failed = molecule_pb2.ParseMoleculeResponse(id=request.id, error=status)
            return self._rpc.respond(
                call,
                failed.SerializeToString(),
                record,
                molecule_pb2.ParseMoleculeResponse,
                status.code,
            )
        return molecule_pb2.ParseMoleculeResponse(id=request.id, error=status).SerializeToString()

    async def encode_molecule(
        self, request: molecule_pb2.EncodeMoleculeRequest, context: Context, call: Call
    ) -> bytes:
        validate(request)
        return await encode_in_chunks(
            self._rpc,
            call,
            MOLECULE_ENCODE,
            request,
            "molecules",
            molecule_pb2.EncodeMoleculeResponse,
            encode_parameters(request),
            chunk_size=ENCODE_CHUNK,
        )
