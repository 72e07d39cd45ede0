"""Observability benchmark: what metrics and tracing cost a unary call, at the default
sampling and at 100%, against all of it off, measured in the same run on the same molecules.

Four `python -m qulab.server`, each with the settings of the molecule benchmark (2 workers,
the result cache off, so every call is computed and gets its `queue` and `compute` spans),
started side by side and driven in turns by one load generator in its own process
(`python -m bench._rounds`): ParseMolecule over the molecule corpus, 64 concurrent callers
on one channel per server, closed loop, the same figure as the molecule benchmark's unary
row and the security benchmark's rows (`bench._rounds` says how the turns are taken and
the ratios paired).
- "observability off": QULAB_METRICS=false and no OTEL_* variable, so the server has
  neither a tracer nor metrics and the call path skips both. The baseline.
- "metrics only": QULAB_METRICS=true (the default: what a deployment gets unless it opts
  out). Per call the Prometheus series of the RPC (started, handled, latency histogram)
  and of the pool item (queue wait and compute histograms, outcome and cache counters);
  the /metrics endpoint's thread stays idle (it is scraped once, after the rounds).
- "tracing 10% (default) + metrics": metrics, and an OTLP/gRPC endpoint with no
  OTEL_TRACES_SAMPLER, so QuLab's default, parentbased_traceidratio 0.1 (the load
  generator sends no `traceparent`, so the ratio decides). What a deployment gets by
  setting an endpoint: every call reads its metadata for a parent and asks the sampler;
  one in ten records its server span and the `queue` and `compute` children, which the
  server's export thread sends in batches (`qulab.server._otlp`).
- "tracing 100% (always_on) + metrics": the same with OTEL_TRACES_SAMPLER=always_on, every
  call recorded and exported: the most observability costs. "All on"; the goal row.
Goal: "all on" >= 0.9x "observability off", with no failed call and every row what it
says it is (below). Each row's ratio to "off" is shown.

The spans really leave the server: this process runs an OTLP/gRPC trace receiver (the
TraceService of opentelemetry-proto on 127.0.0.1, OTEL_EXPORTER_OTLP_PROTOCOL=grpc) that
decodes each export and counts its spans by service name (one OTEL_SERVICE_NAME per
server) and span name, then drops them. It shares the 2 cores with the servers and the
load generator, so it is kept to that; its CPU (decoding and counting, measured per
request) is in the JSON, and it falls in the "other" share of the tracing rows' CPU column
while their spans arrive. Spans are counted over the whole run (warm-up included; the
last ones arrive when the servers stop and flush), against the calls the load generator
sent each server: 3 spans per call at 100%, about 0.3 at 10%.

Every row is checked to be what it says, as the security benchmark checks its servers
refuse a call without credentials: after the rounds each server's /metrics endpoint (found
among the ports it listens on) must count every call as handled, or be absent with metrics
off, and only the tracing rows may have spans. The "all on" row meets the goal only if
every one of its calls was exported with its three spans (the exporter drops spans when
its queue is full, which would make the row cheaper than 100% tracing).

OTEL_* variables of the shell never reach the servers (`running_server` leaves them out):
each row's tracing is exactly its own settings.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from prometheus_client.parser import text_string_to_metric_families

from bench._report import Row
from bench._rounds import (
    LOAD_SETTINGS,
    MIN_ROUNDS,
    PARSE,
    Config,
    Result,
    Variant,
    compare,
    rows_of,
    serving,
    take_turns,
)
from bench._server import ServerProcess
from bench.molecules import SERVER_SETTINGS

__all__ = [
    "ALL_ON",
    "GOAL",
    "LOAD_SETTINGS",
    "METRICS",
    "MIN_ROUNDS",
    "OFF",
    "ROWS",
    "SAMPLED",
    "SERVER_SETTINGS",
    "SPANS_PER_CALL",
    "TRACED",
    "Config",
    "Result",
    "run",
]

GOAL = 0.9
"""The issue's goal: unary QPS with all observability on >= this x with it off."""
SPANS_PER_CALL = 3
"""A recorded ParseMolecule call's spans: the server span, `queue` and `compute`."""
_SERVER_SPAN = "qulab.v1.MoleculeService/ParseMolecule"
_TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
_SCRAPE_TIMEOUT_S = 5.0
_LISTEN = "0A"
"""A listening socket's state in /proc/net/tcp."""

OFF = f"{PARSE}, observability off"
METRICS = f"{PARSE}, metrics only"
SAMPLED = f"{PARSE}, tracing 10% (default) + metrics"
ALL_ON = f"{PARSE}, tracing 100% (always_on) + metrics"
ROWS = (OFF, METRICS, SAMPLED, ALL_ON)
TRACED = (SAMPLED, ALL_ON)
_SERVICE_NAMES = {
    OFF: "qulab-bench-off",
    METRICS: "qulab-bench-metrics",
    SAMPLED: "qulab-bench-sampled",
    ALL_ON: "qulab-bench-all-on",
}


def _variants(receiver_port: int) -> list[Variant]:
    """The four servers' settings, the tracing ones exporting to `receiver_port`."""
    otlp = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver_port}",
    }
    settings = {
        OFF: {"QULAB_METRICS": "false"},
        METRICS: {"QULAB_METRICS": "true"},
        SAMPLED: {"QULAB_METRICS": "true", **otlp},
        ALL_ON: {"QULAB_METRICS": "true", **otlp, "OTEL_TRACES_SAMPLER": "always_on"},
    }
    return [
        Variant(name, settings[name] | {"OTEL_SERVICE_NAME": _SERVICE_NAMES[name]}) for name in ROWS
    ]


# -- the span receiver -------------------------------------------------------------------


@dataclass
class _SpanSink:
    """An OTLP/gRPC trace receiver that counts the spans sent to it, by service and span
    name, and keeps nothing else."""

    counts: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    requests: int = 0
    cpu_s: float = 0.0
    """Thread CPU time spent decoding and counting."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def export(
        self, data: bytes, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        began = time.thread_time()
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(data)
        found: collections.Counter[tuple[str, str]] = collections.Counter()
        for resource_spans in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope in resource_spans.scope_spans:
                found.update((service, span.name) for span in scope.spans)
        spent = time.thread_time() - began
        with self._lock:
            self.counts.update(found)
            self.requests += 1
            self.cpu_s += spent
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self, service: str) -> dict[str, int]:
        """Spans received from `service`, by span name."""
        with self._lock:
            return {name: n for (s, name), n in sorted(self.counts.items()) if s == service}


@contextlib.contextmanager
def _receiving() -> Iterator[tuple[_SpanSink, int]]:
    """A span sink served on 127.0.0.1 (its port), stopped on leaving the block."""
    sink = _SpanSink()
    pool = futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="otlp-sink")
    server = grpc.server(pool)
    handler: grpc.RpcMethodHandler[bytes, trace_service_pb2.ExportTraceServiceResponse]
    handler = grpc.unary_unary_rpc_method_handler(
        sink.export,
        response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(_TRACE_SERVICE, {"Export": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield sink, port
    finally:
        server.stop(None).wait()
        pool.shutdown()


# -- the metrics endpoint ----------------------------------------------------------------


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on: its sockets' inodes in /proc/net/tcp."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == _LISTEN and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _metrics_handled(server: ServerProcess) -> int | None:
    """The ParseMolecule calls the server's /metrics counts as handled (any code), or None
    when it serves no metrics (no port but its gRPC one answers /metrics)."""
    grpc_port = int(server.address.rsplit(":", 1)[1])
    for port in sorted(_listening_ports(server.pid) - {grpc_port}):
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=_SCRAPE_TIMEOUT_S) as answer:
                text = answer.read().decode()
        except OSError:
            continue
        return int(
            sum(
                sample.value
                for family in text_string_to_metric_families(text)
                if family.name == "grpc_server_handled"
                for sample in family.samples
                if sample.name == "grpc_server_handled_total"
                and sample.labels.get("grpc_method") == "ParseMolecule"
            )
        )
    return None


# -- the run -----------------------------------------------------------------------------


def _checks(
    calls: dict[str, int], spans: dict[str, dict[str, int]], handled: dict[str, int | None]
) -> dict[str, dict[str, Any]]:
    """What each server did besides answering: spans exported and calls its metrics
    counted, against the calls it was sent; `as_configured` when that is what its row
    says (metrics count every call, or are absent; only tracing rows export spans)."""
    found = {}
    for name in ROWS:
        sent = calls[name]
        exported = sum(spans[name].values())
        metered = handled[name] == sent if name != OFF else handled[name] is None
        traced = exported > 0 if name in TRACED else exported == 0
        found[name] = {
            "calls": sent,
            "spans": spans[name],
            "spans_per_call": exported / sent if sent else 0.0,
            "sampled_share": spans[name].get(_SERVER_SPAN, 0) / sent if sent else 0.0,
            "metrics_handled": handled[name],
            "as_configured": metered and traced,
        }
    return found


def _judge(rows: dict[str, Row], checks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every row's ratios to "off"; the "all on" row's goal: met when the ratio of medians
    reaches GOAL, no call failed, "off" and "all on" are what they say, and every call of
    "all on" was exported with all its spans."""
    ratios = {name: compare(rows[name], rows[OFF]) for name in ROWS if name != OFF}
    found = ratios[ALL_ON]
    check = checks[ALL_ON]
    expected = SPANS_PER_CALL * check["calls"]
    received = sum(check["spans"].values())
    configured = check["as_configured"] and checks[OFF]["as_configured"]
    met = found["x_off"] >= GOAL and found["errors"] == 0 and configured and received == expected
    rows[ALL_ON].target, rows[ALL_ON].met = f">= {GOAL:g}x off", met
    exported = received / expected if expected else 0.0
    goal = found | {"spans_exported": exported, "as_configured": configured, "met": met}
    return {name: goal if name == ALL_ON else ratio for name, ratio in ratios.items()}


def run(config: Config) -> Result:
    """Start the span receiver and the four servers, drive the servers in turns, count
    what they exported and measured, and judge the rows."""
    with _receiving() as (sink, port):
        variants = _variants(port)
        with serving(SERVER_SETTINGS, variants) as servers:
            answer = take_turns("bench._rounds", variants, servers, config)
            handled = {v.name: _metrics_handled(s) for v, s in zip(variants, servers, strict=True)}
        # The servers have stopped, and flushed their last spans on the way.
        spans = {name: sink.spans(_SERVICE_NAMES[name]) for name in ROWS}
        receiver = {"requests": sink.requests, "cpu_s": sink.cpu_s}
    total = sum(sum(by_name.values()) for by_name in spans.values())
    receiver["cpu_us_per_span"] = receiver["cpu_s"] / total * 1e6 if total else 0.0
    rows = rows_of(answer, variants)
    checks = _checks(answer["calls"], spans, handled)
    judged = _judge(rows, checks)
    goal = {ALL_ON: judged[ALL_ON]}
    payload = {
        "servers": {v.name: SERVER_SETTINGS | v.settings for v in variants},
        "checks": checks,
        "receiver": receiver,
        "ratios": judged,
        "goal": goal,
    }
    return Result(list(rows.values()), payload, goal)
