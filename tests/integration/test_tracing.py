"""Tracing on a real server exporting over OTLP to a real receiver on loopback (`_otlp`),
over gRPC and HTTP/protobuf: the server span continues the caller's W3C trace and carries
the RPC attributes, its `queue` and `compute` (or `cache`) children come from the worker's
times, the trace id reaches the provenance and the log line, client errors are not span
errors and server faults are, health and reflection are not traced, a stream is one span,
and calls that arrive without a parent are sampled at 10% unless
OTEL_TRACES_SAMPLER says otherwise.

The batch processor exports spans in the order they ended, so once a span ended after some
others has arrived, so have they (`_barrier`): that is how a test knows that a span which
should not exist has had every chance to arrive."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace import TracerProvider

from qulab.client import Client
from qulab.v1 import molecule_pb2, molecule_pb2_grpc
from tests.conftest import RunningServer
from tests.integration._metrics import scrape
from tests.integration._otlp import GrpcReceiver, HttpReceiver, ReceivedSpan, Receiver
from tests.integration._status import failure_of
from tests.integration._workers import worker_pids

SERVICE_NAME = "qulab-test"
MOLECULES = "qulab.v1.MoleculeService"
PARSE = f"{MOLECULES}/ParseMolecule"
SERVER = trace_pb2.Span.SPAN_KIND_SERVER
INTERNAL = trace_pb2.Span.SPAN_KIND_INTERNAL
ERROR = trace_pb2.Status.STATUS_CODE_ERROR
CALLS = 200
DEFAULT_RATIO = 0.1


def _binomial_bounds(n: int, p: float, risk: float) -> tuple[int, int]:
    """The narrowest [low, high] that Binomial(n, p) leaves with probability below `risk`
    (half of it on each side)."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    low = 0
    while sum(pmf[: low + 1]) < risk / 2:
        low += 1
    high = n
    while sum(pmf[high:]) < risk / 2:
        high -= 1
    return low, high


# 10% of 200: 3 to 43 exported, with a chance below one in a million of falling outside.
SAMPLED_BOUNDS = _binomial_bounds(CALLS, DEFAULT_RATIO, 1e-6)


@dataclass(frozen=True)
class Caller:
    """A caller's span, handed to the server as W3C `traceparent` metadata."""

    trace_id: str
    span_id: str
    sampled: bool = True

    @classmethod
    def new(cls, sampled: bool = True) -> Caller:
        return cls(secrets.token_hex(16), secrets.token_hex(8), sampled)

    def metadata(self, request_id: str) -> tuple[tuple[str, str], ...]:
        flags = "01" if self.sampled else "00"
        return (
            ("traceparent", f"00-{self.trace_id}-{self.span_id}-{flags}"),
            ("x-request-id", request_id),
        )


def _request_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


def _env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {
        **receiver.env(),
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": SERVICE_NAME,
        **extra,
    }


def _parse(
    stub: molecule_pb2_grpc.MoleculeServiceStub,
    smiles: str,
    request_id: str,
    caller: Caller | None = None,
) -> molecule_pb2.ParseMoleculeResponse:
    # The request id is also the molecule id, so no two calls share a cache entry.
    metadata = caller.metadata(request_id) if caller else (("x-request-id", request_id),)
    request = molecule_pb2.ParseMoleculeRequest(smiles=smiles, id=request_id)
    answer: molecule_pb2.ParseMoleculeResponse = stub.ParseMolecule(
        request, metadata=metadata, timeout=30
    )
    return answer


def _server_span(receiver: Receiver, trace_id: str, name: str = PARSE) -> ReceivedSpan:
    (span,) = receiver.wait_for(lambda s: s.trace_id == trace_id and s.is_server)
    assert span.name == name
    return span


def _children(receiver: Receiver, parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [
        s
        for s in receiver.spans
        if s.trace_id == parent.trace_id and s.parent_span_id == parent.span_id
    ]


def _barrier(channel: grpc.Channel, receiver: Receiver) -> None:
    """Return once every span the server ended before now has been exported."""
    caller = Caller.new()
    stub = molecule_pb2_grpc.MoleculeServiceStub(channel)
    _parse(stub, "C", _request_id("barrier"), caller)
    _server_span(receiver, caller.trace_id)


def _assert_work_children(
    receiver: Receiver, server_span: ReceivedSpan, items: int = 1
) -> tuple[list[ReceivedSpan], list[ReceivedSpan]]:
    """`items` queue and compute children of `server_span`, each pair back to back and
    inside the server span's interval."""
    children = _children(receiver, server_span)
    # Items queue side by side; each item's compute starts where its queue ends.
    queued = sorted((s for s in children if s.name == "queue"), key=lambda s: s.end_ns)
    computed = sorted((s for s in children if s.name == "compute"), key=lambda s: s.start_ns)
    assert len(queued) == len(computed) == items, [s.name for s in children]
    assert len(children) == 2 * items
    for child in children:
        assert child.kind == INTERNAL
        assert child.attributes["qulab.op"]
        assert server_span.start_ns <= child.start_ns <= child.end_ns <= server_span.end_ns
    for queue, compute in zip(queued, computed, strict=True):
        assert queue.end_ns == compute.start_ns
        assert compute.attributes["qulab.cache_hit"] is False
        assert compute.attributes["qulab.worker_pid"] > 0
    return queued, computed


@pytest.fixture(scope="module", autouse=True)
def _no_otel_environment() -> Iterator[None]:
    """The servers see only the OTEL_* variables a test gives them."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("OTEL_"):
                patch.delenv(name)
        yield


@pytest.fixture(scope="module")
def grpc_receiver() -> Iterator[GrpcReceiver]:
    with GrpcReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def http_receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def traced(_no_otel_environment: None, grpc_receiver: GrpcReceiver) -> Iterator[RunningServer]:
    """A server exporting over OTLP/gRPC with the default sampler (10%, or the caller's)."""
    running = RunningServer(_env(grpc_receiver))
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def channel(traced: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(traced.address) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> molecule_pb2_grpc.MoleculeServiceStub:
    return molecule_pb2_grpc.MoleculeServiceStub(channel)


@pytest.fixture
def start_traced(
    _no_otel_environment: None,
) -> Iterator[Callable[[Mapping[str, str]], RunningServer]]:
    """Start a server of one's own with these environment variables; stopped after."""
    started: list[RunningServer] = []

    def start(env: Mapping[str, str]) -> RunningServer:
        running = RunningServer(env)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop(signal.SIGKILL if running.process.poll() is None else signal.SIGTERM)


def _check_traced_parse(server: RunningServer, receiver: Receiver, protocol: str) -> None:
    caller = Caller.new()
    request_id = _request_id(protocol.replace("/", "-"))
    with grpc.insecure_channel(server.address) as ch:
        answer = _parse(molecule_pb2_grpc.MoleculeServiceStub(ch), "CC(C)CO", request_id, caller)
    assert answer.molecule.canonical_smiles == "CC(C)CO"

    span = _server_span(receiver, caller.trace_id)
    assert span.kind == SERVER
    assert span.parent_span_id == caller.span_id
    assert span.attributes["rpc.system"] == "grpc"
    assert span.attributes["rpc.service"] == MOLECULES
    assert span.attributes["rpc.method"] == "ParseMolecule"
    assert span.attributes["rpc.grpc.status_code"] == 0
    assert span.attributes["qulab.request_id"] == request_id
    assert span.status != ERROR
    assert span.resource["service.name"] == SERVICE_NAME
    assert span.start_ns <= span.end_ns

    (queue,), (compute,) = _assert_work_children(receiver, span)
    assert compute.attributes["qulab.worker_pid"] == answer.provenance.worker_pid
    assert compute.attributes["qulab.input_size_bytes"] == answer.provenance.input_size_bytes
    assert compute.attributes["qulab.ok"] is True
    assert queue.resource["service.name"] == SERVICE_NAME

    assert answer.provenance.trace_id == caller.trace_id
    line = server.wait_for_log(message="rpc", request_id=request_id)
    assert line["code"] == "OK"
    assert line["trace_id"] == caller.trace_id
    assert line["span_id"] == span.span_id


def test_a_call_continues_the_callers_trace_over_otlp_grpc(
    traced: RunningServer, grpc_receiver: GrpcReceiver
) -> None:
    assert traced.wait_for_log(message="listening")["tracing"] is True
    _check_traced_parse(traced, grpc_receiver, "grpc")
    assert grpc_receiver.requests >= 1


def test_a_call_continues_the_callers_trace_over_otlp_http(
    start_traced: Callable[[Mapping[str, str]], RunningServer], http_receiver: HttpReceiver
) -> None:
    server = start_traced(_env(http_receiver))
    _check_traced_parse(server, http_receiver, "http/protobuf")
    assert http_receiver.requests >= 1


def test_a_repeated_call_has_a_cache_child(
    stub: molecule_pb2_grpc.MoleculeServiceStub, grpc_receiver: GrpcReceiver
) -> None:
    request_id = _request_id("cache")
    first, second = Caller.new(), Caller.new()
    _parse(stub, "OCC(=O)O", request_id, first)
    answer = _parse(stub, "OCC(=O)O", request_id, second)
    assert answer.provenance.cache_hit
    _assert_work_children(grpc_receiver, _server_span(grpc_receiver, first.trace_id))
    span = _server_span(grpc_receiver, second.trace_id)
    (hit,) = _children(grpc_receiver, span)
    assert hit.name == "cache"
    assert hit.attributes["qulab.cache_hit"] is True
    assert span.start_ns <= hit.start_ns <= hit.end_ns <= span.end_ns


def test_a_caller_that_does_not_sample_is_followed(
    stub: molecule_pb2_grpc.MoleculeServiceStub,
    channel: grpc.Channel,
    grpc_receiver: GrpcReceiver,
    traced: RunningServer,
) -> None:
    caller = Caller.new(sampled=False)
    request_id = _request_id("unsampled")
    answer = _parse(stub, "CCN", request_id, caller)
    assert answer.provenance.trace_id == caller.trace_id  # still correlates with the caller
    assert traced.wait_for_log(message="rpc", request_id=request_id)["trace_id"] == (
        caller.trace_id
    )
    _barrier(channel, grpc_receiver)
    assert not [s for s in grpc_receiver.spans if s.trace_id == caller.trace_id]


def test_health_and_reflection_are_not_traced(
    channel: grpc.Channel, grpc_receiver: GrpcReceiver
) -> None:
    # A sampled parent would make any span they had recorded and exported.
    untraced = Caller.new()
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", MOLECULES, "", MOLECULES, ""):
        answer = health.Check(
            health_pb2.HealthCheckRequest(service=service),
            metadata=untraced.metadata(_request_id("health")),
            timeout=10,
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    (listed,) = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
        metadata=untraced.metadata(_request_id("reflection")),
        timeout=10,
    )
    assert MOLECULES in {s.name for s in listed.list_services_response.service}

    _barrier(channel, grpc_receiver)
    names = {s.name for s in grpc_receiver.spans}
    assert PARSE in names
    assert not [n for n in names if "grpc.health" in n or "reflection" in n.lower()]
    assert not [s for s in grpc_receiver.spans if s.trace_id == untraced.trace_id]


def test_a_client_error_is_not_a_span_error(
    stub: molecule_pb2_grpc.MoleculeServiceStub,
    grpc_receiver: GrpcReceiver,
    traced: RunningServer,
) -> None:
    caller = Caller.new()
    request_id = _request_id("invalid")
    with pytest.raises(grpc.RpcError) as caught:
        _parse(stub, "C1CC", request_id, caller)  # ring 1 is never closed
    assert failure_of(caught.value).code == grpc.StatusCode.INVALID_ARGUMENT
    span = _server_span(grpc_receiver, caller.trace_id)
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert span.status != ERROR
    _, (compute,) = _assert_work_children(grpc_receiver, span)
    assert compute.attributes["qulab.ok"] is False
    line = traced.wait_for_log(message="rpc", request_id=request_id)
    assert line["code"] == "INVALID_ARGUMENT"
    assert (line["trace_id"], line["span_id"]) == (caller.trace_id, span.span_id)


def test_a_server_fault_is_a_span_error(
    start_traced: Callable[[Mapping[str, str]], RunningServer], grpc_receiver: GrpcReceiver
) -> None:
    server = start_traced(
        _env(
            grpc_receiver,
            QULAB_WORKERS="1",
            QULAB_CACHE_MB="0",
            QULAB_DEFAULT_TIMEOUT_S="0.3",
            QULAB_MAX_TIMEOUT_S="0.3",  # cuts the client's 30 s
        )
    )
    (worker,) = worker_pids(server, 1)
    caller = Caller.new()
    request_id = _request_id("deadline")
    os.kill(worker, signal.SIGSTOP)  # the work is certainly running when its deadline passes
    try:
        with grpc.insecure_channel(server.address) as ch:
            stub = molecule_pb2_grpc.MoleculeServiceStub(ch)
            with pytest.raises(grpc.RpcError) as caught:
                stub.ParseMolecule(
                    molecule_pb2.ParseMoleculeRequest(smiles="CCCl"),
                    metadata=caller.metadata(request_id),
                    timeout=30,
                )
    finally:
        with contextlib.suppress(ProcessLookupError):  # replaced already, as it should be
            os.kill(worker, signal.SIGCONT)
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert failure.info is not None  # the server's status, not the client giving up
    span = _server_span(grpc_receiver, caller.trace_id)
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert span.status == ERROR
    assert span.span.status.message
    assert span.resource["service.name"] == SERVICE_NAME
    line = server.wait_for_log(message="rpc", request_id=request_id)
    assert (line["code"], line["trace_id"]) == ("DEADLINE_EXCEEDED", caller.trace_id)
    server.wait_for_log(message="worker overran a deadline; replacing it", worker_pid=worker)


def test_a_stream_is_one_span_with_its_items_work(
    channel: grpc.Channel, grpc_receiver: GrpcReceiver, traced: RunningServer
) -> None:
    caller = Caller.new()
    request_id = _request_id("stream")
    requests = [
        molecule_pb2.ParseMoleculeRequest(smiles=smiles, id=f"{request_id}-{i}")
        for i, smiles in enumerate(["CCO", "c1ccccc1", "N#N"])
    ]
    stub = molecule_pb2_grpc.MoleculeServiceStub(channel)
    answers = list(
        stub.ParseMolecules(iter(requests), metadata=caller.metadata(request_id), timeout=30)
    )
    assert [a.id for a in answers] == [r.id for r in requests]
    assert {a.provenance.trace_id for a in answers} == {caller.trace_id}

    span = _server_span(grpc_receiver, caller.trace_id, f"{MOLECULES}/ParseMolecules")
    _barrier(channel, grpc_receiver)
    in_trace = [s for s in grpc_receiver.spans if s.trace_id == caller.trace_id]
    assert [s for s in in_trace if s.is_server] == [span]
    assert span.parent_span_id == caller.span_id
    assert span.attributes["qulab.items"] == 3
    assert span.attributes["rpc.method"] == "ParseMolecules"
    assert span.attributes["rpc.grpc.status_code"] == 0
    _assert_work_children(grpc_receiver, span, items=3)
    assert len(in_trace) == 1 + 2 * 3
    line = traced.wait_for_log(message="rpc", request_id=request_id, items=3)
    assert (line["trace_id"], line["span_id"]) == (caller.trace_id, span.span_id)


def test_without_otel_variables_nothing_is_traced(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server()
    assert server.wait_for_log(message="listening")["tracing"] is False
    request_id = _request_id("untraced")
    with grpc.insecure_channel(server.address) as ch:
        stub = molecule_pb2_grpc.MoleculeServiceStub(ch)
        answer = _parse(stub, "CCO", request_id, Caller.new())
    assert answer.provenance.trace_id == ""
    line = server.wait_for_log(message="rpc", request_id=request_id)
    assert (line["trace_id"], line["span_id"]) == ("", "")


def test_calls_without_a_parent_are_sampled_at_ten_percent(
    stub: molecule_pb2_grpc.MoleculeServiceStub,
    channel: grpc.Channel,
    grpc_receiver: GrpcReceiver,
) -> None:
    trace_ids = {}
    for i in range(CALLS):
        request_id = _request_id(f"ratio-{i}")
        answer = _parse(stub, "CCO", request_id)
        trace_ids[request_id] = answer.provenance.trace_id
    _barrier(channel, grpc_receiver)
    roots = [
        s
        for s in grpc_receiver.spans
        if s.is_server and s.attributes.get("qulab.request_id") in trace_ids
    ]
    low, high = SAMPLED_BOUNDS
    assert low <= len(roots) <= high, (len(roots), SAMPLED_BOUNDS)
    assert len({s.attributes["qulab.request_id"] for s in roots}) == len(roots)
    for root in roots:
        assert root.parent_span_id == ""
        assert root.trace_id == trace_ids[root.attributes["qulab.request_id"]]
        assert len(_children(grpc_receiver, root)) == 2


def test_an_always_on_sampler_exports_every_call(
    start_traced: Callable[[Mapping[str, str]], RunningServer], http_receiver: HttpReceiver
) -> None:
    server = start_traced(_env(http_receiver, OTEL_TRACES_SAMPLER="always_on", QULAB_CACHE_MB="0"))
    request_ids = {_request_id(f"always-{i}") for i in range(50)}
    with grpc.insecure_channel(server.address) as ch:
        stub = molecule_pb2_grpc.MoleculeServiceStub(ch)
        for request_id in request_ids:
            _parse(stub, "CCO", request_id)
        _barrier(ch, http_receiver)
    roots = [
        s
        for s in http_receiver.spans
        if s.is_server and s.attributes.get("qulab.request_id") in request_ids
    ]
    assert sorted(s.attributes["qulab.request_id"] for s in roots) == sorted(request_ids)
    assert all(s.parent_span_id == "" for s in roots)


def test_spans_still_batched_are_exported_on_drain(
    start_traced: Callable[[Mapping[str, str]], RunningServer], http_receiver: HttpReceiver
) -> None:
    server = start_traced(_env(http_receiver, OTEL_BSP_SCHEDULE_DELAY="600000"))
    caller = Caller.new()
    with grpc.insecure_channel(server.address) as ch:
        _parse(molecule_pb2_grpc.MoleculeServiceStub(ch), "CCCO", _request_id("drain"), caller)
    assert not [s for s in http_receiver.spans if s.trace_id == caller.trace_id]
    assert server.stop() == 0
    # Exported before the process exited: the receiver stores a batch before answering it.
    in_trace = [s for s in http_receiver.spans if s.trace_id == caller.trace_id]
    assert sorted(s.name for s in in_trace) == sorted([PARSE, "queue", "compute"])


def _spans_metric(server: RunningServer) -> dict[str, float]:
    page = scrape(server)
    return {
        labels["outcome"]: page.value("qulab_spans_total", **labels)
        for labels in page.series("qulab_spans_total")
    }


def test_spans_that_do_not_fit_the_queue_are_dropped_and_counted(
    start_traced: Callable[[Mapping[str, str]], RunningServer], grpc_receiver: GrpcReceiver
) -> None:
    # Each call makes three spans; a queue of two can take none of them.
    server = start_traced(
        _env(grpc_receiver, OTEL_TRACES_SAMPLER="always_on", OTEL_BSP_MAX_QUEUE_SIZE="2")
    )
    with grpc.insecure_channel(server.address) as ch:
        stub = molecule_pb2_grpc.MoleculeServiceStub(ch)
        for i in range(4):
            _parse(stub, "CCN", _request_id(f"dropped-{i}"))
    assert _spans_metric(server) == {"exported": 0.0, "failed": 0.0, "dropped": 12.0}


def test_spans_a_collector_does_not_take_are_counted_as_failed(
    start_traced: Callable[[Mapping[str, str]], RunningServer],
) -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    server = start_traced(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
    )
    with grpc.insecure_channel(server.address) as ch:
        answer = _parse(molecule_pb2_grpc.MoleculeServiceStub(ch), "CCS", _request_id("lost"))
    assert answer.molecule.canonical_smiles == "CCS"  # the service does not suffer
    deadline = time.monotonic() + 20
    while (counts := _spans_metric(server))["failed"] < 3:
        assert time.monotonic() < deadline, counts
        time.sleep(0.05)
    assert counts == {"exported": 0.0, "failed": 3.0, "dropped": 0.0}
    assert server.wait_for_log(message="spans not exported")


def test_the_python_client_carries_the_current_span(
    traced: RunningServer, grpc_receiver: GrpcReceiver
) -> None:
    """The client's interceptor injects the caller's OpenTelemetry context: the server
    span is a child of the span that was current when the client was called."""
    tracer = TracerProvider().get_tracer("qulab-tests")
    request = molecule_pb2.ParseMoleculeRequest(smiles="CCCO", id=_request_id("client"))
    with Client(traced.address) as client, tracer.start_as_current_span("caller") as caller:
        answer = client.parse_molecule(request)
    context = caller.get_span_context()
    trace_id = format(context.trace_id, "032x")
    assert answer.provenance.trace_id == trace_id
    span = _server_span(grpc_receiver, trace_id)
    assert span.parent_span_id == format(context.span_id, "016x")
    assert span.attributes["qulab.request_id"] == answer.provenance.request_id
