"""Prometheus metrics on their own port (`QULAB_METRICS_PORT`, `/metrics`).

The RPC metrics have go-grpc-prometheus's names and labels, so the existing gRPC
dashboards and alerts work unchanged:

    grpc_server_started_total{grpc_type,grpc_service,grpc_method}            RPCs started
    grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}  RPCs finished
    grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}         latency histogram
    grpc_server_msg_received_total / grpc_server_msg_sent_total              stream messages

QuLab's own:

    qulab_rpcs_in_flight                        calls being served now
    qulab_queue_depth, qulab_queue_capacity     items waiting for a worker, and the most
    qulab_queue_wait_seconds{op}                time an item waited for a worker
    qulab_compute_seconds{op}                   time a worker computed an item
    qulab_items_total{op,outcome}               pool items by outcome (ok, error, cached)
    qulab_cache_lookups_total{op,result}        result cache hits and misses
    qulab_workers, qulab_workers_configured     worker processes alive / asked for
    qulab_worker_restarts_total                 workers started in place of one that exited
    qulab_worker_crashes_total                  exits that failed the item being computed
    qulab_worker_deadline_kills_total           workers killed for outliving a deadline
    qulab_expired_in_queue_total                items dropped unrun: deadline passed queued
    qulab_rejected_total{grpc_code,reason}      calls refused before or instead of work
                                                (auth, rate limit, full queue, draining...)
    qulab_credential_reloads_total{outcome}     credential reloads (ok, failed)
    qulab_spans_total{outcome}                  trace spans exported, failed (collector
                                                unreachable) or dropped (queue full);
                                                only while tracing is on
    qulab_degraded{reason}                      1 while the server is degraded for `reason`
    qulab_build_info{version,...}               1, with the server's and libraries' versions

Every series is kept as plain integers and bucket lists, updated on the call path with a
few additions (prometheus-client's own Counter and Histogram take a lock and a dozen
Python calls per update: ~20 µs a call in all, measured in the served benchmark), and
turned into metric families only when Prometheus scrapes (the HTTP endpoint and the text
format are prometheus-client's). Counters that belong to the pool or the auth tables live
there and are read the same way.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from google.rpc import code_pb2
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from qulab.server import provenance
from qulab.server.call import Call
from qulab.server.workers.pool import ItemResult

if TYPE_CHECKING:
    from qulab.server.status import ServerStatus

__all__ = ["REJECTIONS", "Metrics"]

_log = logging.getLogger("qulab.metrics")
# Codes counted as a refusal (qulab_rejected_total), by the error's reason.
REJECTIONS = frozenset(
    {
        code_pb2.UNAUTHENTICATED,
        code_pb2.PERMISSION_DENIED,
        code_pb2.RESOURCE_EXHAUSTED,
        code_pb2.UNAVAILABLE,
        code_pb2.DEADLINE_EXCEEDED,
    }
)
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
# The "le" labels, spelled as prometheus-client spells them.
_BOUNDS = [floatToGoString(b) for b in (*_LATENCY_BUCKETS, float("inf"))]  # type: ignore[no-untyped-call]
_RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


def code_label(code: int) -> str:
    """A status code as go-grpc-prometheus spells it in `grpc_code` (Go's names:
    "InvalidArgument", "Canceled"), so its dashboards' and alerts' filters match."""
    if code == code_pb2.CANCELLED:
        return "Canceled"
    name = str(code_pb2.Code.Name(code))
    return name if name == "OK" else name.title().replace("_", "")


class _Histogram:
    """Counts per bucket (the last one is +Inf) and the sum: one bisect and two additions
    an observation."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(_LATENCY_BUCKETS, value)] += 1
        self.total += value

    def family_sample(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative buckets as the text format wants them, and the sum."""
        running = 0.0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip(_BOUNDS, list(self.counts), strict=True):
            running += count
            buckets.append((bound, running))
        return buckets, self.total


class _MethodSeries:
    """One method's RPC series."""

    __slots__ = ("handled", "labels", "latency", "received", "sent", "started")

    def __init__(self, method: str, streaming: bool) -> None:
        service, _, name = method[1:].partition("/")
        self.labels = ("bidi_stream" if streaming else "unary", service, name)
        self.started = 0
        self.handled: dict[int, int] = {}
        self.latency = _Histogram()
        self.received = 0
        self.sent = 0


class _OpSeries:
    """One worker op's pool-item series."""

    __slots__ = ("cached", "compute", "failed", "misses", "ok", "wait")

    def __init__(self) -> None:
        self.wait = _Histogram()
        self.compute = _Histogram()
        self.ok = self.failed = self.cached = self.misses = 0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._methods: dict[str, _MethodSeries] = {}
        self._ops: dict[str, _OpSeries] = {}
        self._rejected: dict[tuple[str, str], int] = {}
        self.registry.register(_RpcCollector(self))

    def started(self, call: Call) -> _MethodSeries:
        series = self._methods.get(call.method)
        if series is None:
            series = self._methods[call.method] = _MethodSeries(call.method, call.streaming)
        series.started += 1
        return series

    @staticmethod
    def finished(series: _MethodSeries, call: Call, code: int, seconds: float) -> None:
        series.handled[code] = series.handled.get(code, 0) + 1
        series.latency.observe(seconds)
        if call.streaming:
            series.received += call.received
            series.sent += call.items
        else:  # as go-grpc-prometheus counts a unary call's messages
            series.received += 1
            if code == code_pb2.OK:
                series.sent += 1

    def rejected(self, code: int, reason: str) -> None:
        key = (code_label(code), reason)
        self._rejected[key] = self._rejected.get(key, 0) + 1

    def record_work(self, op: str, result: ItemResult) -> None:
        series = self._ops.get(op)
        if series is None:
            series = self._ops[op] = _OpSeries()
        if result.cache_hit:
            series.cached += 1
            return
        series.misses += 1
        series.wait.observe(result.queue_ns / 1e9)
        series.compute.observe(result.compute_ns / 1e9)
        if result.ok:
            series.ok += 1
        else:
            series.failed += 1

    def watch(self, status: ServerStatus) -> None:
        """Export the server's state (pool, queue, auth reloads, degradation) at scrape
        time."""
        self.registry.register(_StateCollector(status))

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint (a thread); the port it listens on."""
        http, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(http.server_port)


_Family = GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily | InfoMetricFamily


class _RpcCollector(Collector):
    """The RPC and pool-item series, built from the plain counts when scraped (from the
    HTTP thread: dicts are copied before they are walked)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[_Family]:
        methods = list(self._metrics._methods.values())
        ops = list(self._metrics._ops.items())
        labels = list(_RPC_LABELS)
        started = CounterMetricFamily(
            "grpc_server_started", "RPCs started on the server.", labels=labels
        )
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their code.",
            labels=[*labels, "grpc_code"],
        )
        latency = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Time from an RPC's arrival to its end, in seconds.",
            labels=labels,
        )
        received = CounterMetricFamily(
            "grpc_server_msg_received", "Messages received.", labels=labels
        )
        sent = CounterMetricFamily("grpc_server_msg_sent", "Messages sent.", labels=labels)
        for series in methods:
            started.add_metric(series.labels, series.started)
            for code, count in list(series.handled.items()):
                handled.add_metric((*series.labels, code_label(code)), count)
            buckets, total = series.latency.family_sample()
            latency.add_metric(series.labels, buckets, total)
            received.add_metric(series.labels, series.received)
            sent.add_metric(series.labels, series.sent)
        yield from (started, handled, latency, received, sent)
        yield from _op_families(ops)
        rejected = CounterMetricFamily(
            "qulab_rejected",
            "Calls refused (authentication, roles, rate limit, full queue, drain, deadline).",
            labels=["grpc_code", "reason"],
        )
        for key, count in list(self._metrics._rejected.items()):
            rejected.add_metric(key, count)
        yield rejected


def _op_families(ops: Iterable[tuple[str, _OpSeries]]) -> Iterator[_Family]:
    wait = HistogramMetricFamily(
        "qulab_queue_wait_seconds",
        "Time a pool item waited for a worker, in seconds.",
        labels=["op"],
    )
    compute = HistogramMetricFamily(
        "qulab_compute_seconds", "Time a worker computed a pool item, in seconds.", labels=["op"]
    )
    items = CounterMetricFamily("qulab_items", "Pool items by outcome.", labels=["op", "outcome"])
    cache = CounterMetricFamily(
        "qulab_cache_lookups", "Result cache lookups.", labels=["op", "result"]
    )
    for op, series in ops:
        wait.add_metric((op,), *series.wait.family_sample())
        compute.add_metric((op,), *series.compute.family_sample())
        for outcome, count in (
            ("ok", series.ok),
            ("error", series.failed),
            ("cached", series.cached),
        ):
            items.add_metric((op, outcome), count)
        cache.add_metric((op, "hit"), series.cached)
        cache.add_metric((op, "miss"), series.misses)
    yield from (wait, compute, items, cache)


class _StateCollector(Collector):
    def __init__(self, status: ServerStatus) -> None:
        self._status = status

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | InfoMetricFamily]:
        server = self._status
        pool, stats = server.pool, server.pool.stats
        gauges = (
            ("qulab_rpcs_in_flight", "Calls being served now.", server.rpc.in_flight),
            ("qulab_queue_depth", "Pool items waiting for a worker.", pool.queued),
            ("qulab_queue_capacity", "Most items that may wait.", server.settings.queue_size),
            ("qulab_workers", "Worker processes alive.", pool.alive),
            ("qulab_workers_configured", "Worker processes asked for.", pool.size),
        )
        for name, help_text, value in gauges:
            yield GaugeMetricFamily(name, help_text, value=value)
        counters = (
            ("qulab_worker_restarts", "Workers started in place of one.", stats.replaced),
            ("qulab_worker_crashes", "Worker exits failing an item.", stats.crashed),
            ("qulab_worker_deadline_kills", "Workers killed past a deadline.", stats.overran),
            ("qulab_expired_in_queue", "Items dropped unrun.", stats.expired_in_queue),
        )
        for name, help_text, value in counters:
            yield CounterMetricFamily(name, help_text, value=value)
        reloads = CounterMetricFamily(
            "qulab_credential_reloads", "Credential file reloads.", labels=("outcome",)
        )
        auth = server.interceptors.auth
        reloads.add_metric(("ok",), auth.reloads_ok if auth else 0)
        reloads.add_metric(("failed",), auth.reloads_failed if auth else 0)
        yield reloads
        if server.tracing is not None:
            spans = CounterMetricFamily("qulab_spans", "Trace spans by fate.", labels=("outcome",))
            exporter = server.tracing.exporter
            spans.add_metric(("exported",), exporter.exported)
            spans.add_metric(("failed",), exporter.failed)
            spans.add_metric(("dropped",), exporter.dropped)
            yield spans
        degraded = GaugeMetricFamily(
            "qulab_degraded", "1 while the server is degraded, by reason.", labels=("reason",)
        )
        for reason, _ in server.degradations():
            degraded.add_metric((reason,), 1)
        yield degraded
        info = InfoMetricFamily("qulab_build", "The server's and its libraries' versions.")
        info.add_metric(
            (),
            {"version": provenance.SERVER_VERSION, **provenance.library_versions()},
        )
        yield info
