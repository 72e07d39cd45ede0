"""What every servicer method does around its domain call, in one place.

`Rpc.unary(...)` / `Rpc.stream(...)` wrap a servicer coroutine into a gRPC method handler:
they stamp the call (request id, time received, deadline) and are the single boundary where
a QulabError, or any bug, becomes a gRPC status with google.rpc details (a bug as INTERNAL
with an error id that is logged; never a traceback on the wire).

Inside, servicers call `validate` (the request's protovalidate rules), `Rpc.compute` (cache,
then the worker pool) and `Rpc.provenance`. Responses travel as bytes end to end: the
worker's serialized answer plus the serialized provenance field (protobuf concatenation is
a merge), so the event loop neither parses nor re-serializes what workers computed.

Every wrapped servicer method is also kept in `Rpc.registered`, so that a tool call
(`services.tools`) runs the very handler its RPC runs, on a `Call` that `Rpc.on_behalf`
derives from its own after RBAC for that RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import protovalidate
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from qulab.server import provenance
from qulab.server.cache import ResultCache
from qulab.server.call import Call, Context
from qulab.server.config import Settings
from qulab.server.errors import (
    FieldViolation,
    Internal,
    InvalidArgument,
    QulabError,
    Reported,
    ResourceExhausted,
    Unavailable,
)
from qulab.server.interceptors import Interceptors
from qulab.server.logs import rpc_log
from qulab.server.metrics import REJECTIONS, Metrics
from qulab.server.telemetry import Tracing
from qulab.server.workers.pool import ItemResult, WorkerPool
from qulab.v1 import common_pb2

__all__ = ["Call", "Context", "Registered", "Rpc", "check_size", "validate"]

_log = logging.getLogger("qulab.rpc")
_REQUEST_ID_KEY = "x-request-id"
_MAX_REQUEST_ID = 128
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_PUSHBACK_KEY = "grpc-retry-pushback-ms"
RequestT = TypeVar("RequestT", bound=Message)
UnaryHandler = Callable[[Any, Context, Call], Awaitable[bytes]]
StreamHandler = Callable[[AsyncIterator[Any], Context, Call], AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class Registered:
    """A servicer method as `Rpc` wrapped it: its handler, to run inside the server."""

    method: str  # "/qulab.v1.MoleculeService/ParseMolecule"
    request_type: type[Message]
    unary: UnaryHandler | None = None
    stream: StreamHandler | None = None


def _field_path(violation: protovalidate.Violation) -> str:
    parts: list[str] = []
    path = violation.proto.field
    for element in path.elements if path is not None else ():
        part = element.field_name
        subscript = element.subscript
        if subscript is not None and subscript.value is not None:
            key = subscript.value
            part += f"[{key!r}]" if isinstance(key, str) else f"[{key}]"
        parts.append(part)
    return ".".join(parts)


def check_size(content: bytes, field: str, limit: int) -> None:
    """Refuse an oversized file in the server process, before it is copied to a worker."""
    if len(content) > limit:
        raise InvalidArgument(
            FieldViolation(
                field=field,
                reason="LIMIT_EXCEEDED",
                description=f"{len(content)} bytes; the limit is {limit}",
            )
        )


def validate(request: Message) -> None:
    """Check the request against the rules in its proto; InvalidArgument names each field."""
    try:
        protovalidate.validate(request)
    except protovalidate.ValidationError as exc:
        raise InvalidArgument(
            *(
                FieldViolation(
                    field=_field_path(v), description=v.proto.message, reason=v.proto.rule_id
                )
                for v in exc.violations
            )
        ) from None


class Rpc:
    """Shared by every servicer: the pool, the cache and the settings."""

    def __init__(
        self,
        settings: Settings,
        pool: WorkerPool,
        cache: ResultCache,
        interceptors: Interceptors,
        tracing: Tracing | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self._cache = cache
        self._interceptors = interceptors
        self._tracing = tracing
        self._metrics = metrics
        self.in_flight = 0
        self.idle = asyncio.Event()  # set while no call is in flight (the drain waits on it)
        self.idle.set()
        self.draining = False  # new calls are refused with UNAVAILABLE
        self.registered: dict[str, Registered] = {}  # every method wrapped, by its path

    def _enter(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def _exit(self) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self.idle.set()

    # -- handler wrappers: the error boundary -------------------------------------------

    def unary(
        self,
        method: str,
        handler: Callable[[RequestT, Context, Call], Awaitable[bytes]],
        request_type: type[RequestT],
    ) -> grpc.RpcMethodHandler[RequestT, bytes]:
        async def serve(request: RequestT, context: Context) -> bytes:
            async with self._serving(context, method, request) as call:
                return await handler(request, context, call)
            raise AssertionError("unreachable: a failed call is aborted, which raises")

        self.registered[method] = Registered(method, request_type, unary=handler)

        return grpc.unary_unary_rpc_method_handler(
            serve, request_deserializer=request_type.FromString, response_serializer=bytes
        )

    def stream(
        self,
        method: str,
        handler: Callable[[AsyncIterator[RequestT], Context, Call], AsyncIterator[bytes]],
        request_type: type[RequestT],
    ) -> grpc.RpcMethodHandler[RequestT, bytes]:
        async def serve(
            requests: AsyncIterator[RequestT], context: Context
        ) -> AsyncIterator[bytes]:
            async with self._serving(context, method, None) as call:
                messages = self._interceptors.messages(call, _counted(call, requests))
                async for response in handler(messages, context, call):
                    call.items += 1
                    yield response
                # Each item logged its own line; this one is the stream's.
                _log_outcome(call, "OK", items=call.items)

        self.registered[method] = Registered(method, request_type, stream=handler)

        return grpc.stream_stream_rpc_method_handler(
            serve, request_deserializer=request_type.FromString, response_serializer=bytes
        )

    @contextlib.asynccontextmanager
    async def _serving(
        self, context: Context, method: str, request: Message | None
    ) -> AsyncIterator[Call]:
        """Around every call (`request` is None for a stream): stamp it, count it in
        flight, refuse it while draining, run the interceptors, and turn whatever it raises
        into a status (the one error boundary)."""
        call = self._start(context, method, streaming=request is None)
        if self._tracing is not None:
            self._tracing.start(call)
        series = self._metrics.started(call) if self._metrics is not None else None
        code, message = code_pb2.OK, ""
        self._enter()
        try:
            if self.draining:
                raise Unavailable("the server is shutting down; retry on another replica")
            await self._interceptors.admit(call, context)
            yield call
        except asyncio.CancelledError:  # the caller went away, or its deadline passed
            code = code_pb2.CANCELLED
            _log_outcome(call, "CANCELLED")
            raise
        except Exception as exc:
            error = _as_error(exc, call)
            status = error.to_status()
            code, message = status.code, status.message
            if self._metrics is not None and code in REJECTIONS:
                self._metrics.rejected(code, error.reason)
            await _abort(context, call, error, status, request)
        finally:
            # Recorded before the call leaves "in flight": a scrape that sees no call in
            # flight sees every call counted.
            if series is not None:
                seconds = (time.time_ns() - call.received_ns) / 1e9
                Metrics.finished(series, call, code, seconds)
            if self._tracing is not None:
                self._tracing.end(call, code, message)
            self._exit()

    def _start(self, context: Context, method: str, streaming: bool) -> Call:
        received_ns = time.time_ns()
        metadata = context.invocation_metadata() or ()
        request_id = ""
        for key, value in metadata:
            if key == _REQUEST_ID_KEY and isinstance(value, str):
                request_id = value[:_MAX_REQUEST_ID]
        return Call(method, request_id or uuid.uuid4().hex, received_ns, streaming, metadata)

    # -- calls made on behalf of a call --------------------------------------------------

    def allows(self, call: Call, method: str) -> bool:
        """Whether the caller of the admitted `call` may call `method`."""
        return self._interceptors.allows(call, method)

    def on_behalf(self, call: Call, method: str) -> Call:
        """The call the admitted `call` (a tool call) makes to `method` in-process: RBAC
        for `method` first (PermissionDenied naming it), then the same caller, request id,
        deadline and trace, under `method`'s name (its provenance and log line say it),
        and `via` the tool call. Rate limiting and the deadline were applied to `call`."""
        self._interceptors.authorize(call, method)
        return dataclasses.replace(
            call, method=method, via=call.method, streaming=False, items=0, received=0
        )

    def paced(self, call: Call, requests: AsyncIterator[RequestT]) -> AsyncIterator[RequestT]:
        """Requests of a batch as a stream's are read: one rate-limit token each."""
        return self._interceptors.messages(call, requests)

    # -- computing -----------------------------------------------------------------------

    async def compute(
        self, call: Call, op: str, payload: bytes, *, wait: bool = False
    ) -> ItemResult:
        """Run one op on one payload, from the cache when the same payload was computed.

        `wait=True` (streams) waits for room in a full queue instead of failing."""
        digest = hashlib.sha256(payload).hexdigest()
        cached = self._cache.get(op, digest)
        if cached is not None:
            now = time.time_ns()
            hit = ItemResult(
                ok=True,
                body=cached,
                queue_ns=0,
                compute_ns=0,
                started_ns=now,
                finished_ns=now,
                worker_pid=0,
                cache_hit=True,
            )
            self._observe_work(call, op, len(payload), hit)
            return hit
        deadline = self._interceptors.deadlines.for_work(call)
        result = await self.pool.run(op, payload, deadline=deadline, wait=wait)
        if result.ok:
            self._cache.put(op, digest, result.body)
        self._observe_work(call, op, len(payload), result)
        return result

    def _observe_work(self, call: Call, op: str, input_size: int, result: ItemResult) -> None:
        if self._metrics is not None:
            self._metrics.record_work(op, result)
        if self._tracing is not None:
            self._tracing.record_work(call, op, input_size, result)

    async def answer(
        self,
        call: Call,
        op: str,
        request: Message,
        parameters: Mapping[str, str],
        response_type: type[Message],
    ) -> bytes:
        """The whole of a unary call whose request is one pool item: compute it, fail with
        the worker's status, or respond with provenance."""
        payload = request.SerializeToString(deterministic=True)
        result = await self.compute(call, op, payload)
        if not result.ok:
            raise Reported.from_bytes(result.body)
        record = self.provenance(call, payload, [result], parameters, len(result.body))
        return self.respond(call, result.body, record, response_type)

    def answer_here(
        self,
        call: Call,
        request: Message,
        answer: Callable[[], Message],
        parameters: Mapping[str, str] | None = None,
    ) -> bytes:
        """The whole of a unary call the server process answers itself (no worker): the
        message `answer()` makes, timed as the computation, with provenance."""
        started = time.time_ns()
        t0 = time.perf_counter_ns()
        response = answer()
        body = response.SerializeToString()
        here = ItemResult(
            ok=True,
            body=body,
            queue_ns=0,
            compute_ns=time.perf_counter_ns() - t0,
            started_ns=started,
            finished_ns=time.time_ns(),
            worker_pid=os.getpid(),  # computed by the server process itself
        )
        payload = request.SerializeToString(deterministic=True)
        record = self.provenance(call, payload, [here], parameters or {}, len(body))
        return self.respond(call, body, record, type(response))

    @staticmethod
    def provenance(
        call: Call,
        request_bytes: bytes,
        results: Sequence[ItemResult],
        parameters: Mapping[str, str],
        output_size: int,
    ) -> common_pb2.Provenance:
        """The provenance of an answer computed from one or more pool items."""
        return provenance.build(
            request_id=call.request_id,
            method=call.method,
            principal=call.principal,
            received_ns=call.received_ns,
            started_ns=min(r.started_ns for r in results),
            finished_ns=max(r.finished_ns for r in results),
            queue_ns=max(r.queue_ns for r in results),
            compute_ns=sum(r.compute_ns for r in results),
            input_sha256=hashlib.sha256(request_bytes).hexdigest(),
            input_size=len(request_bytes),
            output_size=output_size,
            parameters=parameters,
            cache_hit=all(r.cache_hit for r in results),
            worker_pid=results[0].worker_pid,
            trace_id=call.trace_id,
        )

    @staticmethod
    def respond(
        call: Call,
        body: bytes,
        record: common_pb2.Provenance,
        response_type: type[Message],
        code: int = code_pb2.OK,
    ) -> bytes:
        """`body` with the provenance field appended, and the provenance logged."""
        fields = provenance.log_fields(record)
        fields["duration_ns"] = time.time_ns() - fields["received_ns"]
        fields["span_id"] = call.span_id
        if call.via:
            fields["via"] = call.via
        rpc_log.write({"code": code_pb2.Code.Name(code), **fields})
        return body + provenance.as_field(record, response_type)


def _log_outcome(call: Call, code: str, **extra: object) -> None:
    """The RPC line (the audit record) of a call that ended without an answer of its own:
    refused, failed, cancelled, or a stream (whose items logged their answers)."""
    rpc_log.write(
        {
            "code": code,
            "method": call.method,
            "request_id": call.request_id,
            "principal": call.principal,
            "duration_ns": time.time_ns() - call.received_ns,
            "trace_id": call.trace_id,
            "span_id": call.span_id,
            **extra,
        }
    )


def _as_error(exc: Exception, call: Call) -> QulabError:
    if isinstance(exc, QulabError):
        return exc
    error = Internal("internal error")
    _log.error(
        "unhandled error",
        exc_info=exc,
        extra={"error_id": error.error_id, "request_id": call.request_id, "method": call.method},
    )
    return error


async def _counted(call: Call, requests: AsyncIterator[RequestT]) -> AsyncIterator[RequestT]:
    async for request in requests:
        call.received += 1
        yield request


async def _abort(
    context: Context,
    call: Call,
    error: QulabError,
    status: status_pb2.Status,
    request: Message | None,
) -> None:
    trailers: list[tuple[str, str | bytes]] = [
        (_STATUS_DETAILS_KEY, status.SerializeToString()),
        (_REQUEST_ID_KEY, call.request_id),
    ]
    if status.code == code_pb2.RESOURCE_EXHAUSTED:
        # A negative pushback tells gRPC clients not to retry (e.g. a worker memory cap).
        pushback = error.retry_after_ms if isinstance(error, ResourceExhausted) else -1
        trailers.append((_PUSHBACK_KEY, str(pushback)))
    name = code_pb2.Code.Name(status.code)
    audit: dict[str, object] = {"error": status.message}
    if request is not None:  # the input a failed unary call was refused for, by hash
        audit["input_sha256"] = hashlib.sha256(
            request.SerializeToString(deterministic=True)
        ).hexdigest()
    _log_outcome(call, name, **audit)
    await context.abort(grpc.StatusCode[name], status.message, trailing_metadata=tuple(trailers))
