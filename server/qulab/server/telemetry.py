"""Tracing: an OpenTelemetry server span per RPC, exported over OTLP, set up by the
standard OTEL_* variables.

Off unless `OTEL_TRACES_EXPORTER=otlp` or an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`..._TRACES_ENDPOINT`) is set; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
turn it off. `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (through the SDK's
`Resource`), `OTEL_PROPAGATORS` (the API's propagator), the OTLP protocol, endpoint,
headers and timeout and the `OTEL_BSP_*` batching (see `_otlp`) are honoured.
`OTEL_TRACES_SAMPLER` / `_ARG` pick the SDK sampler (always_on, always_off, traceidratio
and their parentbased_ forms); when unset QuLab samples 10% of the calls that arrive
without a sampled parent (`parentbased_traceidratio`, 0.1) instead of the SDK's
every-call default, and follows the caller's decision when there is one.

The SDK decides (sampler), propagates (W3C trace context) and names the resource; the
spans themselves are written by `_otlp`: 14 µs a traced call in a tight loop, against
~165 µs for the SDK's span objects and exporter (measured; see there).

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
import random
import time
from collections.abc import Mapping

from google.rpc import code_pb2
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind

from qulab.server._otlp import Attribute, SpanExporter, encode_attributes, encode_span
from qulab.server.call import Call
from qulab.server.provenance import SERVER_VERSION
from qulab.server.workers.pool import ItemResult

__all__ = ["SERVER_FAULTS", "SpanRecord", "Tracing"]

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
_SERVER, _INTERNAL = 2, 1  # OTLP SpanKind
_SAMPLERS = ("always_on", "always_off", "traceidratio")
_CACHE_HIT = encode_attributes({"qulab.cache_hit": True}, 9)
_CACHE_MISS = encode_attributes({"qulab.cache_hit": False}, 9)
_STATUS_CODE = Attribute("rpc.grpc.status_code")
_REQUEST_ID = Attribute("qulab.request_id")
_PRINCIPAL = Attribute("enduser.id")
_ITEMS = Attribute("qulab.items")
_INPUT_SIZE = Attribute("qulab.input_size_bytes")
_WORKER_PID = Attribute("qulab.worker_pid")
_OK = Attribute("qulab.ok")


class SpanRecord:
    """A sampled call's span ids and its children, encoded as they finish (as one bytes
    object: nothing here for the cyclic garbage collector to walk)."""

    __slots__ = ("children", "count", "items", "parent_id", "span_id", "trace_id")

    def __init__(self, trace_id: bytes, span_id: bytes, parent_id: bytes) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.children = b""  # encoded child spans
        self.count = 0  # child spans
        self.items = 0  # pool items recorded


class Tracing:
    def __init__(self, sampler: Sampler, exporter: SpanExporter) -> None:
        self._sampler = sampler
        self._exporter = exporter
        self._methods: dict[str, tuple[bytes, bytes]] = {}  # name and constant attributes
        self._ops: dict[str, bytes] = {}
        # The metadata keys the configured propagators read (traceparent, tracestate...).
        self._fields = frozenset(propagate.get_global_textmap().fields)

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
        if exporter_name not in ("", "otlp"):
            raise ValueError(f"OTEL_TRACES_EXPORTER: {exporter_name!r} is not otlp or none")
        attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": "qulab"}
        resource = Resource.create({**attributes, "service.version": SERVER_VERSION})
        values = {
            k: v for k, v in resource.attributes.items() if isinstance(v, str | bool | int | float)
        }
        exporter = SpanExporter(env, values, ("qulab.server", SERVER_VERSION))
        return cls(_sampler(env), exporter)

    def start(self, call: Call) -> None:
        """Decide whether the call is traced and name its span (`call.trace_id`, ...)."""
        fields = self._fields
        carrier = {k: v for k, v in call.metadata if k in fields and isinstance(v, str)}
        # Most calls carry no trace context: skip the propagator's work for them.
        parent = propagate.extract(carrier) if carrier else None
        remote = trace.get_current_span(parent).get_span_context()
        trace_id = remote.trace_id if remote.is_valid else random.getrandbits(128) or 1
        span_id = random.getrandbits(64) or 1
        decision = self._sampler.should_sample(
            parent, trace_id, call.method[1:], SpanKind.SERVER
        ).decision
        sampled = decision is Decision.RECORD_AND_SAMPLE
        # An id is worth reporting when spans are exported under it, or when it is the
        # caller's (their own trace, even unsampled); a root left unsampled has neither.
        if sampled or remote.is_valid:
            call.trace_id = format(trace_id, "032x")
            call.span_id = format(span_id, "016x")
        if sampled:
            parent_id = remote.span_id.to_bytes(8, "big") if remote.is_valid else b""
            call.traced = SpanRecord(
                trace_id.to_bytes(16, "big"), span_id.to_bytes(8, "big"), parent_id
            )

    def end(self, call: Call, code: int, message: str = "") -> None:
        traced = call.traced
        if traced is None:
            return
        name, constant = self._method(call.method)
        dynamic = _STATUS_CODE(code) + _REQUEST_ID(call.request_id) + _PRINCIPAL(call.principal)
        if call.items:
            dynamic += _ITEMS(call.items)
        server = encode_span(
            traced.trace_id,
            traced.span_id,
            traced.parent_id,
            name,
            _SERVER,
            call.received_ns,
            time.time_ns(),
            constant + dynamic,
            error=message if code in SERVER_FAULTS else None,
        )
        self._exporter.add(server + traced.children, 1 + traced.count)

    def record_work(self, call: Call, op: str, input_size: int, result: ItemResult) -> None:
        """The `queue` and `compute` children of one pool item (or `cache` for a cache
        hit), from the times the worker reported."""
        traced = call.traced
        if traced is None or traced.items >= _MAX_WORK_SPANS:
            return
        traced.items += 1
        child = traced.trace_id, traced.span_id
        about_op = self._op(op) + _INPUT_SIZE(input_size)
        if result.cache_hit:
            hit = about_op + _CACHE_HIT
            traced.children += self._child(
                *child, b"cache", result.started_ns, result.finished_ns, hit
            )
            traced.count += 1
            return
        computed = about_op + _WORKER_PID(result.worker_pid) + _OK(result.ok)
        traced.children += self._child(
            *child, b"queue", result.started_ns - result.queue_ns, result.started_ns, about_op
        ) + self._child(
            *child, b"compute", result.started_ns, result.finished_ns, computed + _CACHE_MISS
        )
        traced.count += 2

    def _op(self, op: str) -> bytes:
        found = self._ops.get(op)
        if found is None:
            found = self._ops[op] = encode_attributes({"qulab.op": op}, 9)
        return found

    @staticmethod
    def _child(
        trace_id: bytes,
        parent_id: bytes,
        name: bytes,
        start_ns: int,
        end_ns: int,
        attributes: bytes,
    ) -> bytes:
        span_id = (random.getrandbits(64) or 1).to_bytes(8, "big")
        return encode_span(
            trace_id, span_id, parent_id, name, _INTERNAL, start_ns, end_ns, attributes
        )

    def _method(self, method: str) -> tuple[bytes, bytes]:
        found = self._methods.get(method)
        if found is None:
            service, _, name = method[1:].partition("/")
            constant = encode_attributes(
                {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}, 9
            )
            found = self._methods[method] = (method[1:].encode(), constant)
        return found

    @property
    def exporter(self) -> SpanExporter:
        return self._exporter

    def shutdown(self) -> None:
        """Export what is still queued, then stop."""
        self._exporter.shutdown()


def _sampler(env: Mapping[str, str]) -> Sampler:
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not name:
        return ParentBased(TraceIdRatioBased(DEFAULT_RATIO))
    based = name.startswith("parentbased_")
    kind = name.removeprefix("parentbased_")
    if kind not in _SAMPLERS:
        raise ValueError(
            f"OTEL_TRACES_SAMPLER: {name!r} is not one of "
            + ", ".join([*_SAMPLERS, *(f"parentbased_{s}" for s in _SAMPLERS)])
        )
    if kind == "traceidratio":
        try:
            ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
        except ValueError:
            raise ValueError("OTEL_TRACES_SAMPLER_ARG: not a number") from None
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("OTEL_TRACES_SAMPLER_ARG: must be between 0 and 1")
        root: Sampler = TraceIdRatioBased(ratio)
    else:
        root = ALWAYS_ON if kind == "always_on" else ALWAYS_OFF
    return ParentBased(root) if based else root
