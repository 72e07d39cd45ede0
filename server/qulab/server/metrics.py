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
    qulab_degraded{reason}                      1 while the server is degraded for `reason`
    qulab_build_info{version,...}               1, with the server's and libraries' versions

Counters that belong to the pool or the auth tables are plain integers there, read when
Prometheus scrapes; on the call path only the RPC and pool-item series are touched, each
through a child object looked up once per method or op.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from google.rpc import code_pb2
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

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
_RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


def code_label(code: int) -> str:
    """A status code as go-grpc-prometheus spells it in `grpc_code` (Go's names:
    "InvalidArgument", "Canceled"), so its dashboards' and alerts' filters match."""
    if code == code_pb2.CANCELLED:
        return "Canceled"
    name = str(code_pb2.Code.Name(code))
    return name if name == "OK" else name.title().replace("_", "")


class _MethodSeries:
    """One method's children of the RPC metrics, made once."""

    __slots__ = ("_handled", "_handled_parent", "_labels", "latency", "received", "sent", "started")

    def __init__(self, metrics: Metrics, method: str, streaming: bool) -> None:
        service, _, name = method[1:].partition("/")
        labels = ("bidi_stream" if streaming else "unary", service, name)
        self._labels = labels
        self.started = metrics.started.labels(*labels)
        self.latency = metrics.latency.labels(*labels)
        self.received = metrics.received.labels(*labels)
        self.sent = metrics.sent.labels(*labels)
        self._handled: dict[int, Counter] = {}
        self._handled_parent = metrics.handled

    def handled(self, code: int) -> Counter:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self._handled_parent.labels(
                *self._labels, code_label(code)
            )
        return child


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `*_created` doubles it
        self.registry = CollectorRegistry()
        registry = self.registry
        self.started = Counter(
            "grpc_server_started", "RPCs started on the server.", _RPC_LABELS, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their code.",
            (*_RPC_LABELS, "grpc_code"),
            registry=registry,
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time from an RPC's arrival to its end, in seconds.",
            _RPC_LABELS,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.received = Counter(
            "grpc_server_msg_received", "Stream messages received.", _RPC_LABELS, registry=registry
        )
        self.sent = Counter(
            "grpc_server_msg_sent", "Stream messages sent.", _RPC_LABELS, registry=registry
        )
        self.queue_wait = Histogram(
            "qulab_queue_wait_seconds",
            "Time a pool item waited for a worker, in seconds.",
            ("op",),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.compute = Histogram(
            "qulab_compute_seconds",
            "Time a worker computed a pool item, in seconds.",
            ("op",),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.items = Counter(
            "qulab_items", "Pool items by outcome.", ("op", "outcome"), registry=registry
        )
        self.cache = Counter(
            "qulab_cache_lookups", "Result cache lookups.", ("op", "result"), registry=registry
        )
        self.rejected = Counter(
            "qulab_rejected",
            "Calls refused (authentication, roles, rate limit, full queue, drain, deadline).",
            ("grpc_code", "reason"),
            registry=registry,
        )
        self._methods: dict[str, _MethodSeries] = {}
        self._ops: dict[
            str, tuple[Histogram, Histogram, Counter, Counter, Counter, Counter, Counter]
        ] = {}

    def method(self, call: Call) -> _MethodSeries:
        series = self._methods.get(call.method)
        if series is None:
            series = self._methods[call.method] = _MethodSeries(self, call.method, call.streaming)
        return series

    def record_work(self, op: str, result: ItemResult) -> None:
        children = self._ops.get(op)
        if children is None:
            children = self._ops[op] = (
                self.queue_wait.labels(op),
                self.compute.labels(op),
                self.items.labels(op, "ok"),
                self.items.labels(op, "error"),
                self.items.labels(op, "cached"),
                self.cache.labels(op, "hit"),
                self.cache.labels(op, "miss"),
            )
        waited, computed, ok, failed, cached, hit, miss = children
        if result.cache_hit:
            cached.inc()
            hit.inc()
            return
        miss.inc()
        waited.observe(result.queue_ns / 1e9)
        computed.observe(result.compute_ns / 1e9)
        (ok if result.ok else failed).inc()

    def watch(self, status: ServerStatus) -> None:
        """Export the server's state (pool, queue, auth reloads, degradation) at scrape
        time."""
        self.registry.register(_StateCollector(status))

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint (a thread); the port it listens on."""
        http, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(http.server_port)


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
