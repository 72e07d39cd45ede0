"""Deadlines on a real server: a call without one gets the default, a client's deadline
beyond the cap is cut to the cap, and the refusal is the server's own (a status with
details, the worker replaced), not the client giving up. Workers are frozen with SIGSTOP
so the work is certainly still running when its deadline passes."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

import grpc
import pytest

from qulab.v1 import molecule_pb2, molecule_pb2_grpc
from tests.conftest import RunningServer
from tests.integration._status import failure_of
from tests.integration._workers import worker_pids


def _overrun(
    start_server: Callable[..., RunningServer], timeout: float | None, **settings: str
) -> tuple[grpc.RpcError, float]:
    server = start_server(workers="1", cache_mb="0", **settings)
    (worker,) = worker_pids(server, 1)
    os.kill(worker, signal.SIGSTOP)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = molecule_pb2_grpc.MoleculeServiceStub(channel)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                stub.ParseMolecule(
                    molecule_pb2.ParseMoleculeRequest(smiles="CCCl"), timeout=timeout
                )
            elapsed = time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):  # replaced already, as it should be
            os.kill(worker, signal.SIGCONT)
    server.wait_for_log(message="worker overran a deadline; replacing it", worker_pid=worker)
    return caught.value, elapsed


def test_a_call_without_a_deadline_gets_the_default(
    start_server: Callable[..., RunningServer],
) -> None:
    error, elapsed = _overrun(start_server, None, default_timeout_s="0.5")
    failure = failure_of(error)
    assert failure.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert failure.info is not None  # the server's status, with its details
    assert 0.5 <= elapsed < 20


def test_a_long_client_deadline_is_capped(start_server: Callable[..., RunningServer]) -> None:
    error, elapsed = _overrun(start_server, 60.0, max_timeout_s="0.5")
    failure = failure_of(error)
    assert failure.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert failure.info is not None
    assert 0.5 <= elapsed < 20
