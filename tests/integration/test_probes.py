"""The health names the Helm chart's probes ask for, on a real server: `liveness` is
SERVING whenever the process answers, while the readiness names ("" and each service) go
NOT_SERVING with no worker to serve and for good once a drain begins. A liveness probe
must never restart a server that is draining or waiting for its workers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench._cpu import descendants
from qulab.client import Client
from qulab.server.health import LIVENESS
from qulab.v1 import molecule_pb2
from tests.conftest import RunningServer
from tests.integration._workers import is_forkserver, worker_pids

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
READINESS = ["", "qulab.v1.MoleculeService"]
_SETTLE_S = 30.0


def _check(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
    return response.status


def _wait_for(address: str, service: str, status: int) -> None:
    end = time.monotonic() + _SETTLE_S
    while _check(address, service) != status:
        assert time.monotonic() < end, f"{service!r} never became {status}"
        time.sleep(0.05)


def test_liveness_is_serving(server: RunningServer) -> None:
    assert _check(server.address, LIVENESS) == SERVING


def test_liveness_stays_serving_while_no_worker_can_serve(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(workers="1")
    (worker,) = worker_pids(server, 1)
    forkserver = next(p for p in descendants(server.process.pid) if is_forkserver(p))
    _wait_for(server.address, "", SERVING)
    os.kill(forkserver, signal.SIGSTOP)  # no replacement can start until it continues
    try:
        os.kill(worker, signal.SIGKILL)
        for name in READINESS:
            _wait_for(server.address, name, NOT_SERVING)
        assert _check(server.address, LIVENESS) == SERVING
    finally:
        os.kill(forkserver, signal.SIGCONT)
    _wait_for(server.address, "", SERVING)


def test_liveness_stays_serving_through_a_drain(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(workers="1", drain_grace_s="60", log_level="DEBUG")
    (worker,) = worker_pids(server, 1)
    with Client(server.address, timeout=60) as client, ThreadPoolExecutor(1) as pool:
        os.kill(worker, signal.SIGSTOP)  # the call stays in flight, so the drain lasts
        try:
            in_flight = pool.submit(
                client.parse_molecule, molecule_pb2.ParseMoleculeRequest(smiles="OCC")
            )
            server.wait_for_log(message="queued")
            server.process.send_signal(signal.SIGTERM)
            server.wait_for_log(message="draining")
            for name in READINESS:
                _wait_for(server.address, name, NOT_SERVING)
            assert _check(server.address, LIVENESS) == SERVING
            assert server.process.poll() is None  # still draining, not gone
        finally:
            os.kill(worker, signal.SIGCONT)
        assert in_flight.result(60).molecule.canonical_smiles == "CCO"
    assert server.process.wait(60) == 0
