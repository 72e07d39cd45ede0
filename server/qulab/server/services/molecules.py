"""qulab.v1.MoleculeService: validate, dispatch to the worker pool, attach provenance.
No chemistry here: it runs in worker processes (`qulab.server.domain.molecules`)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

import grpc
import numpy as np
from google.rpc import status_pb2

from qulab.server.domain.options import encode_parameters, parse_parameters
from qulab.server.errors import FieldViolation, InvalidArgument, QulabError, Reported
from qulab.server.services._rpc import Call, Context, Rpc, validate
from qulab.server.workers.jobs import MOLECULE_ENCODE, MOLECULE_PARSE, encode_chunk
from qulab.server.workers.pool import ItemResult
from qulab.tensors import from_tensor, to_tensor
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
        payload = request.SerializeToString(deterministic=True)
        result = await self._rpc.compute(call, MOLECULE_PARSE, payload)
        if not result.ok:
            raise Reported.from_bytes(result.body)
        record = self._rpc.provenance(
            call, payload, [result], parse_parameters(request.options), len(result.body)
        )
        return self._rpc.respond(result.body, record, molecule_pb2.ParseMoleculeResponse)

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
                return self._rpc.respond(result.body, record, molecule_pb2.ParseMoleculeResponse)
            status = status_pb2.Status.FromString(result.body)
            failed = molecule_pb2.ParseMoleculeResponse(id=request.id, error=status)
            return self._rpc.respond(
                failed.SerializeToString(), record, molecule_pb2.ParseMoleculeResponse, status.code
            )
        return molecule_pb2.ParseMoleculeResponse(id=request.id, error=status).SerializeToString()

    async def encode_molecule(
        self, request: molecule_pb2.EncodeMoleculeRequest, context: Context, call: Call
    ) -> bytes:
        validate(request)
        count = len(request.molecules)
        limit = self._rpc.settings.max_batch_items
        if count > limit:
            raise InvalidArgument(
                FieldViolation(
                    field="molecules",
                    reason="LIMIT_EXCEEDED",
                    description=f"{count} molecules in one call; the limit is {limit}",
                )
            )
        size = min(ENCODE_CHUNK, math.ceil(count / self._rpc.pool.size))
        payloads = [
            encode_chunk(
                start,
                molecule_pb2.EncodeMoleculeRequest(
                    molecules=request.molecules[start : start + size],
                    encoding=request.encoding,
                    fingerprint=request.fingerprint,
                    parse_options=request.parse_options,
                ),
            )
            for start in range(0, count, size)
        ]
        results = await asyncio.gather(
            *(self._rpc.compute(call, MOLECULE_ENCODE, p) for p in payloads), return_exceptions=True
        )
        merged = _merge_chunks(results, [min(size, count - s) for s in range(0, count, size)])
        body = merged.SerializeToString()
        computed = [r for r in results if isinstance(r, ItemResult)]
        record = self._rpc.provenance(
            call,
            request.SerializeToString(deterministic=True),
            computed,
            encode_parameters(request),
            len(body),
        )
        return self._rpc.respond(body, record, molecule_pb2.EncodeMoleculeResponse)


def _merge_chunks(
    results: list[ItemResult | BaseException], sizes: list[int]
) -> molecule_pb2.EncodeMoleculeResponse:
    """One response from the chunks' responses. A chunk that failed as a whole (its worker
    crashed) gives each of its molecules that error and an empty row; when every chunk
    failed, the call fails."""
    parts: list[molecule_pb2.EncodeMoleculeResponse | status_pb2.Status] = []
    for result in results:
        if isinstance(result, QulabError):
            parts.append(result.to_status())
        elif isinstance(result, BaseException):
            raise result
        elif not result.ok:
            parts.append(status_pb2.Status.FromString(result.body))
        else:
            parts.append(molecule_pb2.EncodeMoleculeResponse.FromString(result.body))
    good = [p for p in parts if isinstance(p, molecule_pb2.EncodeMoleculeResponse)]
    if not good:
        first = parts[0]
        assert isinstance(first, status_pb2.Status)
        raise Reported(first)
    template = from_tensor(good[0].features)
    merged = molecule_pb2.EncodeMoleculeResponse(feature_names=good[0].feature_names)
    rows = []
    for part, size in zip(parts, sizes, strict=True):
        if isinstance(part, status_pb2.Status):
            blank = np.nan if template.dtype.kind == "f" else 0
            rows.append(np.full((size, template.shape[1]), blank, dtype=template.dtype))
            merged.item_status.extend([part] * size)
        else:
            rows.append(from_tensor(part.features))
            merged.item_status.extend(part.item_status)
    merged.features.CopyFrom(to_tensor(np.concatenate(rows)))
    return merged
