"""The Python clients' retries (the shared service config), interceptors and circuit breaker,
against a real gRPC server on loopback whose answers the test scripts (tests/integration/
_scripted.py): which codes are retried and how often, the throttling of retries, the
server's pushback, the headers every attempt carries, and what the breaker lets through."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider

from qulab.client import AsyncClient, CircuitBreaker, Client, api_key, bearer_token
from qulab.client import errors as client_errors
from qulab.v1 import molecule_pb2
from tests.integration._scripted import ScriptedServer, Step

REQUEST = molecule_pb2.ParseMoleculeRequest(smiles="CCO")
MAX_ATTEMPTS = 4  # clients/service_config.json (tests/unit/test_service_config.py reads it)
S = grpc.StatusCode


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    running = ScriptedServer()
    yield running
    running.stop()


@pytest.fixture
def server(scripted: ScriptedServer) -> ScriptedServer:
    scripted.script.reset()
    scripted.set_serving(True)
    return scripted


@pytest.mark.parametrize(
    ("code", "attempts", "raised"),
    [
        (S.UNAVAILABLE, MAX_ATTEMPTS, client_errors.Unavailable),
        (S.RESOURCE_EXHAUSTED, MAX_ATTEMPTS, client_errors.ResourceExhausted),
        (S.INVALID_ARGUMENT, 1, client_errors.InvalidArgument),
        (S.INTERNAL, 1, client_errors.Internal),
        (S.DEADLINE_EXCEEDED, 1, client_errors.DeadlineExceeded),
        (S.UNKNOWN, 1, client_errors.Unknown),
    ],
    ids=lambda v: v.name if isinstance(v, S) else None,
)
def test_only_unavailable_and_resource_exhausted_are_retried(
    server: ScriptedServer, code: grpc.StatusCode, attempts: int, raised: type[Exception]
) -> None:
    server.script.reset(then=Step(code))
    with Client(server.address, breaker=False) as client, pytest.raises(raised) as caught:
        client.parse_molecule(REQUEST)
    assert caught.value.code() is code  # type: ignore[attr-defined]
    assert len(server.script.attempts) == attempts
    # One request id per call, set above the retries: every attempt carries the same.
    ids = {a.metadata["x-request-id"] for a in server.script.attempts}
    assert len(ids) == 1


def test_a_retried_call_succeeds(server: ScriptedServer) -> None:
    server.script.reset(Step(S.UNAVAILABLE), Step(S.RESOURCE_EXHAUSTED))
    with Client(server.address, breaker=False) as client:
        answer = client.parse_molecule(REQUEST)
    assert answer.molecule.canonical_smiles == "CCO"
    assert len(server.script.attempts) == 3


def test_without_retries_one_attempt(server: ScriptedServer) -> None:
    server.script.reset(then=Step(S.UNAVAILABLE))
    with (
        Client(server.address, retries=False, breaker=False) as client,
        pytest.raises(client_errors.Unavailable),
    ):
        client.parse_molecule(REQUEST)
    assert len(server.script.attempts) == 1


def test_retries_are_throttled_once_most_attempts_fail(server: ScriptedServer) -> None:
    """retryThrottling {maxTokens 10, tokenRatio 0.1}: each failed attempt costs a token and
    retries stop at half the tokens: 4 attempts (10 -> 6 tokens), then 1 (-> 5), then 1."""
    server.script.reset(then=Step(S.UNAVAILABLE))
    per_call = []
    with Client(server.address, breaker=False) as client:
        for _ in range(3):
            before = len(server.script.attempts)
            with pytest.raises(client_errors.Unavailable):
                client.parse_molecule(REQUEST)
            per_call.append(len(server.script.attempts) - before)
    assert per_call == [MAX_ATTEMPTS, 1, 1]


def test_the_retry_waits_for_the_servers_pushback(server: ScriptedServer) -> None:
    """The service config's backoff starts at 0-100 ms; a 600 ms pushback must win."""
    pushback = Step(S.RESOURCE_EXHAUSTED, (("grpc-retry-pushback-ms", "600"),))
    server.script.reset(pushback)
    with Client(server.address, breaker=False) as client:
        client.parse_molecule(REQUEST)
    first, second = server.script.attempts
    assert second.at - first.at >= 0.59


def test_a_negative_pushback_stops_the_retries(server: ScriptedServer) -> None:
    """The server says "do not retry" (a memory cap, say) with a negative pushback."""
    server.script.reset(then=Step(S.RESOURCE_EXHAUSTED, (("grpc-retry-pushback-ms", "-1"),)))
    with (
        Client(server.address, breaker=False) as client,
        pytest.raises(client_errors.ResourceExhausted),
    ):
        client.parse_molecule(REQUEST)
    assert len(server.script.attempts) == 1


def test_headers_every_call_carries(server: ScriptedServer) -> None:
    tracer = TracerProvider().get_tracer("qulab-client-tests")
    with (
        Client(server.address, credentials=api_key("qk_1") | bearer_token("t.o.k")) as client,
        tracer.start_as_current_span("caller") as span,
    ):
        client.parse_molecule(REQUEST)
        client.parse_molecule(REQUEST, metadata=[("x-request-id", "mine-1")])
    first, second = (a.metadata for a in server.script.attempts)
    trace_id = format(span.get_span_context().trace_id, "032x")
    span_id = format(span.get_span_context().span_id, "016x")
    for headers in (first, second):
        assert headers["x-api-key"] == "qk_1"
        assert headers["authorization"] == "Bearer t.o.k"
        version, traced, parent, flags = headers["traceparent"].split("-")
        assert (version, traced, parent) == ("00", trace_id, span_id)
        assert int(flags, 16) & 1  # sampled
    assert len(first["x-request-id"]) == 32
    assert second["x-request-id"] == "mine-1"  # the caller's own id is kept


def test_no_trace_context_outside_a_span(server: ScriptedServer) -> None:
    with Client(server.address) as client:
        client.parse_molecule(REQUEST)
    (attempt,) = server.script.attempts
    assert "traceparent" not in attempt.metadata


def test_the_breaker_fails_fast_and_probes_health_before_closing(server: ScriptedServer) -> None:
    breaker = CircuitBreaker(failures=2, reset_after_s=0.3)
    server.script.reset(Step(S.UNAVAILABLE), Step(S.UNAVAILABLE))
    with Client(server.address, retries=False, breaker=breaker) as client:
        for _ in range(2):
            with pytest.raises(client_errors.Unavailable) as caught:
                client.parse_molecule(REQUEST)
            assert not isinstance(caught.value, client_errors.CircuitOpen)
        # Open: refused without a call.
        with pytest.raises(client_errors.CircuitOpen) as opened:
            client.parse_molecule(REQUEST)
        assert 0 < (opened.value.retry_delay or 0) <= 0.3
        assert len(server.script.attempts) == 2
        assert server.script.health_checks == 0
        # After the pause, a probe that finds the server NOT_SERVING keeps it open.
        server.set_serving(False)
        time.sleep(0.35)
        with pytest.raises(client_errors.CircuitOpen):
            client.parse_molecule(REQUEST)
        assert (len(server.script.attempts), server.script.health_checks) == (2, 1)
        # SERVING again: the next probe closes the circuit and the call goes through.
        server.set_serving(True)
        time.sleep(0.35)
        answer = client.parse_molecule(REQUEST)
        assert answer.molecule.canonical_smiles == "CCO"
        assert (len(server.script.attempts), server.script.health_checks) == (3, 2)


def test_other_errors_do_not_open_the_breaker(server: ScriptedServer) -> None:
    server.script.reset(then=Step(S.INVALID_ARGUMENT))
    with Client(server.address, breaker=CircuitBreaker(failures=2)) as client:
        for _ in range(4):
            with pytest.raises(client_errors.InvalidArgument):
                client.parse_molecule(REQUEST)
    assert len(server.script.attempts) == 4


def test_a_stream_error_is_translated(server: ScriptedServer) -> None:
    server.script.reset(Step(S.INTERNAL))
    requests = [molecule_pb2.ParseMoleculeRequest(smiles=s) for s in ("C", "ABORT", "CC")]
    answers = []
    with Client(server.address) as client, pytest.raises(client_errors.Internal):
        answers.extend(client.parse_molecules(requests))
    assert [a.molecule.canonical_smiles for a in answers] == ["C"]


async def test_async_client_retries_and_translates(server: ScriptedServer) -> None:
    server.script.reset(Step(S.UNAVAILABLE), then=Step(S.INVALID_ARGUMENT))
    async with AsyncClient(server.address, breaker=False) as client:
        with pytest.raises(client_errors.InvalidArgument):
            await client.parse_molecule(REQUEST)
    assert len(server.script.attempts) == 2
    assert len({a.metadata["x-request-id"] for a in server.script.attempts}) == 1


async def test_async_client_headers(server: ScriptedServer) -> None:
    tracer = TracerProvider().get_tracer("qulab-client-tests")
    async with AsyncClient(server.address, credentials=api_key("qk_2")) as client:
        with tracer.start_as_current_span("caller") as span:
            await client.parse_molecule(REQUEST)
        answers = [
            a.molecule.canonical_smiles
            async for a in client.parse_molecules(
                [molecule_pb2.ParseMoleculeRequest(smiles=s) for s in ("C", "CC")]
            )
        ]
    assert answers == ["C", "CC"]
    unary, stream = (a.metadata for a in server.script.attempts)
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert unary["traceparent"].split("-")[1] == trace_id
    assert unary["x-api-key"] == stream["x-api-key"] == "qk_2"
    assert len(stream["x-request-id"]) == 32


async def test_async_breaker(server: ScriptedServer) -> None:
    server.script.reset(then=Step(S.UNAVAILABLE))
    breaker = CircuitBreaker(failures=1, reset_after_s=0.2)
    async with AsyncClient(server.address, retries=False, breaker=breaker) as client:
        with pytest.raises(client_errors.Unavailable):
            await client.parse_molecule(REQUEST)
        with pytest.raises(client_errors.CircuitOpen):
            await client.parse_molecule(REQUEST)
        assert len(server.script.attempts) == 1
        server.script.reset()
        await asyncio.sleep(0.25)
        answer = await client.parse_molecule(REQUEST)
    assert answer.molecule.canonical_smiles == "CCO"
    assert server.script.health_checks == 1
