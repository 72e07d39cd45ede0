"""Per-principal rate limits on a real server: a burst beyond the bucket is refused with
RESOURCE_EXHAUSTED, RetryInfo and a retry pushback; a client retrying through the gRPC
service config gets every call through by honouring the pushback; one principal's
exhaustion leaves another's bucket alone; a stream is paced, not failed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from qulab.v1 import molecule_pb2, molecule_pb2_grpc
from tests.conftest import RunningServer
from tests.integration._credentials import auth_settings, write_roles
from tests.integration._status import failure_of

METERED = "qk_metered_principal_0001"
OTHER = "qk_other_principal_0002"
RATE, BURST = 4.0, 3
REQUEST = molecule_pb2.ParseMoleculeRequest(smiles="CC(=O)O")


@pytest.fixture
def limited(tmp_path: Path, start_server: Callable[..., RunningServer]) -> RunningServer:
    write_roles(
        tmp_path / "roles.json",
        {"metered": {"methods": ["*/Parse*"], "rate_per_s": RATE, "burst": BURST}},
    )
    settings = auth_settings(
        tmp_path, {METERED: ("metered", ["metered"]), OTHER: ("other", ["metered"])}
    )
    return start_server(**settings, roles_file=str(tmp_path / "roles.json"))


@pytest.fixture
def stub(limited: RunningServer) -> Iterator[molecule_pb2_grpc.MoleculeServiceStub]:
    with grpc.insecure_channel(limited.address) as channel:
        yield molecule_pb2_grpc.MoleculeServiceStub(channel)


def _key(key: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", key),)


def test_a_burst_beyond_the_bucket_is_refused_with_pushback(
    stub: molecule_pb2_grpc.MoleculeServiceStub, limited: RunningServer
) -> None:
    outcomes: list[grpc.StatusCode] = []
    refusals = []
    for _ in range(BURST + 3):
        try:
            stub.ParseMolecule(REQUEST, metadata=_key(METERED), timeout=30)
            outcomes.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            failure = failure_of(exc)
            outcomes.append(failure.code)
            refusals.append(failure)
    # Calls a few ms apart refill far less than a token: the bucket's burst, then refusals.
    assert outcomes[:BURST] == [grpc.StatusCode.OK] * BURST
    assert outcomes[BURST:] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
    for failure in refusals:
        assert failure.info is not None
        assert failure.info.reason == "RATE_LIMITED"
        assert failure.retry is not None
        delay_ms = failure.retry.retry_delay.ToMilliseconds()
        assert 0 < delay_ms <= 1000 / RATE + 1
        assert int(failure.trailers["grpc-retry-pushback-ms"]) == delay_ms
    # Another principal with the same role has a bucket of its own.
    answer = stub.ParseMolecule(REQUEST, metadata=_key(OTHER), timeout=30)
    assert answer.provenance.principal == "other"
    line = limited.wait_for_log(code="RESOURCE_EXHAUSTED")
    assert line["principal"] == "metered"


def _retrying_channel(address: str, max_attempts: int) -> grpc.Channel:
    config = {
        "methodConfig": [
            {
                "name": [{"service": "qulab.v1.MoleculeService"}],
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    # Far shorter than a token's refill: only the server's pushback can make
                    # the retries wait long enough.
                    "initialBackoff": "0.001s",
                    "maxBackoff": "0.002s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["RESOURCE_EXHAUSTED", "UNAVAILABLE"],
                },
            }
        ]
    }
    return grpc.insecure_channel(
        address,
        options=[("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(config))],
    )


def test_service_config_retries_honour_the_pushback(limited: RunningServer) -> None:
    """Three attempts 1-2 ms apart cannot outlast a refill of 250 ms: every call gets
    through only because each retry waits for the server's pushback."""
    calls = BURST + 6
    started = time.monotonic()
    with _retrying_channel(limited.address, max_attempts=3) as channel:
        stub = molecule_pb2_grpc.MoleculeServiceStub(channel)
        for _ in range(calls):
            answer = stub.ParseMolecule(REQUEST, metadata=_key(METERED), timeout=30)
            assert answer.molecule.canonical_smiles == "CC(=O)O"
    elapsed = time.monotonic() - started
    # The bucket lets no more than BURST + RATE * t calls through in t seconds.
    assert elapsed >= (calls - BURST) / RATE * 0.95
    refused = limited.log_entries(code="RESOURCE_EXHAUSTED")
    assert refused, "the retries were never needed: the test did not exercise them"
    # Each refusal was retried once its pushback had passed, never sooner: the attempts
    # that followed a refusal came at least that long after it.
    served = sorted(e["received_ns"] for e in limited.log_entries(code="OK"))
    for line in refused:
        refused_at = _time_ns(line["time"])
        pushback_ms = int(line["error"].rsplit("retry in ", 1)[1].split()[0])
        following = [t for t in served if t > refused_at]
        assert following, line
        assert following[0] - refused_at >= (pushback_ms - 2) * 1_000_000


def _time_ns(stamp: str) -> int:
    seconds, micros = stamp.rstrip("Z").split(".")
    return (
        int(time.mktime(time.strptime(seconds, "%Y-%m-%dT%H:%M:%S")) - time.timezone)
        * (1_000_000_000)
        + int(micros) * 1000
    )


def test_without_retries_the_same_calls_fail(limited: RunningServer) -> None:
    """The retry test above can fail: with retries off, the same sequence is refused."""
    with grpc.insecure_channel(limited.address, options=[("grpc.enable_retries", 0)]) as channel:
        stub = molecule_pb2_grpc.MoleculeServiceStub(channel)
        codes = set()
        for _ in range(BURST + 6):
            try:
                stub.ParseMolecule(REQUEST, metadata=_key(METERED), timeout=30)
                codes.add(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.add(failure_of(exc).code)
        assert codes == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}


def test_a_stream_is_paced_not_failed(
    stub: molecule_pb2_grpc.MoleculeServiceStub, limited: RunningServer
) -> None:
    count = BURST + 6
    items = [
        molecule_pb2.ParseMoleculeRequest(smiles="C" * (i + 1), id=str(i)) for i in range(count)
    ]
    started = time.monotonic()
    answers = list(stub.ParseMolecules(iter(items), metadata=_key(METERED), timeout=60))
    elapsed = time.monotonic() - started
    assert [a.id for a in answers] == [str(i) for i in range(count)]
    assert all(not a.HasField("error") for a in answers)
    assert elapsed >= (count - BURST) / RATE * 0.95
    limited.wait_for_log(code="OK", items=count)
