"""Tracing: an OpenTelemetry server span per RPC, exported over OTLP, set up by the
standard OTEL_* variables.

Off unless `OTEL_TRACES_EXPORTER` (otlp, console) or an OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `..._TRACES_ENDPOINT`) is set; `OTEL_SDK_DISABLED=true`
or `OTEL_TRACES_EXPORTER=none` turn it off. The SDK itself reads the rest:
`OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the spec's default, or `grpc`), headers,
`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*` batching, `OTEL_PROPAGATORS`.
`OTEL_TRACES_SAMPLER` too; when it is unset QuLab samples 10% of the calls that arrive
without a sampled parent (`parentbased_traceidratio`, 0.1) instead of the SDK's
every-call default, and follows the caller's decision when there is one.

Each RPC (health and reflection are not: they never reach `services._rpc`) gets a SERVER
span named `qulab.v1.Service/Method` with the RPC semantic-convention attributes, its
parent taken from the caller's W3C `traceparent`. Its status is ERROR only for the codes
that mean a server fault. Pool work gets two children, `queue` and `compute`, built from
the times the worker reported (the worker process exports nothing itself), with the op,
input size, worker pid and cache hit as attributes. The trace id goes into the provenance
and the log line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from google.rpc import code_pb2
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from qulab.server.call import Call
from qulab.server.call import Context as ServicerContext
from qulab.server.provenance import SERVER_VERSION
from qulab.server.workers.pool import ItemResult

__all__ = ["SERVER_FAULTS", "Tracing"]

# The codes for which a server span's status is ERROR (OTel RPC semantic conventions).
SERVER_FAULTS = frozenset(
    {
        code_pb2.UNKNOWN,
        code_pb2.DEADLINE_EXCEEDED,
        code_pb2.UNIMPLEMENTED,
        code_pb2.INTERNAL,
        code_pb2.UNAVAILABLE,
        code_pb2.DATA_LOSS,
    }
)
DEFAULT_RATIO = 0.1
# A stream of a million items must not make two million spans.
_MAX_WORK_SPANS = 64


class Tracing:
    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("qulab.server", SERVER_VERSION)

    @classmethod
    def from_environment(cls) -> Tracing | None:
        """Tracing as the OTEL_* variables ask, or None when they leave it off. Read from
        `os.environ`, where the OpenTelemetry SDK reads the rest of them itself."""
        env = os.environ
        exporter_name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        if disabled or exporter_name == "none" or not (exporter_name or endpoint):
            return None
        exporters = [_exporter(name.strip(), env) for name in (exporter_name or "otlp").split(",")]
        attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": "qulab"}
        resource = Resource.create({**attributes, "service.version": SERVER_VERSION})
        sampler = (
            None if "OTEL_TRACES_SAMPLER" in env else ParentBased(TraceIdRatioBased(DEFAULT_RATIO))
        )
        provider = TracerProvider(resource=resource, sampler=sampler)
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider)

    def start(self, call: Call, context: ServicerContext) -> None:
        """Open the call's server span (`call.span`, `call.trace_id`)."""
        carrier = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        service, _, method = call.method[1:].partition("/")
        parent = propagate.extract(carrier)
        span = self._tracer.start_span(
            call.method[1:],
            context=parent,
            kind=SpanKind.SERVER,
            start_time=call.received_ns,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": method,
                "qulab.request_id": call.request_id,
            },
        )
        call.span = span
        span_context = span.get_span_context()
        # An id is worth reporting when spans are exported under it, or when it is the
        # caller's (their own trace, even unsampled); a root left unsampled has neither.
        if span_context.trace_flags.sampled or span_context.trace_id == _remote_trace(parent):
            call.trace_id = format(span_context.trace_id, "032x")
            call.span_id = format(span_context.span_id, "016x")

    def end(self, call: Call, code: int, message: str = "") -> None:
        span = call.span
        if span is None:
            return
        span.set_attribute("rpc.grpc.status_code", code)
        span.set_attribute("enduser.id", call.principal)
        if call.items:
            span.set_attribute("qulab.items", call.items)
        if code in SERVER_FAULTS:
            span.set_status(Status(StatusCode.ERROR, message))
        span.end()

    def record_work(self, call: Call, op: str, input_size: int, result: ItemResult) -> None:
        """The `queue` and `compute` children of one pool item, from the worker's times."""
        span = call.span
        if span is None or not span.is_recording() or call.work_spans >= _MAX_WORK_SPANS:
            return
        call.work_spans += 1
        parent = trace.set_span_in_context(span)
        attributes: dict[str, AttributeValue] = {
            "qulab.op": op,
            "qulab.input_size_bytes": input_size,
        }
        if result.cache_hit:
            hit = self._tracer.start_span(
                "cache", context=parent, start_time=result.started_ns, attributes=attributes
            )
            hit.set_attribute("qulab.cache_hit", True)
            hit.end(end_time=result.finished_ns)
            return
        queued = self._tracer.start_span(
            "queue",
            context=parent,
            start_time=result.started_ns - result.queue_ns,
            attributes=attributes,
        )
        queued.end(end_time=result.started_ns)
        computed = self._tracer.start_span(
            "compute",
            context=parent,
            start_time=result.started_ns,
            attributes={
                **attributes,
                "qulab.worker_pid": result.worker_pid,
                "qulab.ok": result.ok,
                "qulab.cache_hit": False,
            },
        )
        computed.end(end_time=result.finished_ns)

    def shutdown(self) -> None:
        """Export what is still batched, then stop."""
        self._provider.shutdown()


def _remote_trace(parent: Context) -> int | None:
    span_context = trace.get_current_span(parent).get_span_context()
    return span_context.trace_id if span_context.is_valid else None


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(out=sys.stderr)  # stdout carries the JSON log
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER: {name!r} is not one of otlp, console, none")
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        return HttpSpanExporter()
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not grpc or http/protobuf")
