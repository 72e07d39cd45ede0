"""GetServerInfo on a real server: versions and capacity, SERVING when healthy, DEGRADED
with its reason when the queue fills behind frozen workers, restarts counted after a
worker dies, and the admin role required once auth is on."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from qulab.v1 import molecule_pb2, molecule_pb2_grpc, server_pb2, server_pb2_grpc
from tests.conftest import RunningServer
from tests.integration._credentials import auth_settings
from tests.integration._status import failure_of
from tests.integration._workers import worker_pids

REQUEST = server_pb2.GetServerInfoRequest()


def _info(
    address: str, metadata: tuple[tuple[str, str], ...] = ()
) -> server_pb2.GetServerInfoResponse:
    with grpc.insecure_channel(address) as channel:
        return server_pb2_grpc.ServerServiceStub(channel).GetServerInfo(
            REQUEST, metadata=metadata, timeout=10
        )


def test_a_healthy_server_reports_serving(server: RunningServer) -> None:
    info = _info(server.address)
    assert info.state == server_pb2.SERVER_STATE_SERVING
    assert list(info.degradations) == []
    assert info.library_versions["rdkit"] == importlib.metadata.version("rdkit")
    assert (info.workers.configured, info.workers.alive) == (2, 2)
    assert info.queue.capacity == 2048
    assert info.workers.memory_cap_bytes == 2048 << 20
    assert 0 < info.workers.largest_memory_bytes < info.workers.memory_cap_bytes
    assert info.started_time.ToNanoseconds() < time.time_ns()
    assert info.provenance.method == "/qulab.v1.ServerService/GetServerInfo"
    assert info.provenance.worker_pid == server.process.pid  # answered by the server itself


def test_a_filling_queue_is_degraded_then_recovers(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(workers="1", queue_size="5", cache_mb="0", log_level="DEBUG")
    (worker,) = worker_pids(server, 1)
    os.kill(worker, signal.SIGSTOP)
    pool = ThreadPoolExecutor(6)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = molecule_pb2_grpc.MoleculeServiceStub(channel)
            waiting = [
                pool.submit(
                    stub.ParseMolecule,
                    molecule_pb2.ParseMoleculeRequest(smiles="C" * n),
                    timeout=60,
                )
                for n in range(1, 6)
            ]
            server.wait_for_log(message="queued", count=5)
            info = _info(server.address)
            assert info.state == server_pb2.SERVER_STATE_DEGRADED
            reasons = {d.reason: d.description for d in info.degradations}
            assert "QUEUE_NEAR_CAPACITY" in reasons
            assert info.queue.depth >= 4
            os.kill(worker, signal.SIGCONT)
            for call in waiting:
                assert call.result(60).molecule.num_atoms >= 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGCONT)
        pool.shutdown()
    assert _info(server.address).state == server_pb2.SERVER_STATE_SERVING


def test_a_dead_worker_is_counted(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(workers="1")
    (worker,) = worker_pids(server, 1)
    os.kill(worker, signal.SIGKILL)
    end = time.monotonic() + 30
    while worker_pids(server, 1) == [worker] and time.monotonic() < end:
        time.sleep(0.05)
    info = _info(server.address)
    assert info.workers.restarts == 1
    assert info.workers.alive == 1


def test_only_admins_may_ask(tmp_path: Path, start_server: Callable[..., RunningServer]) -> None:
    keys = {"qk_admin_key_000000": ("ops", ["admin"]), "qk_user_key_111111": ("app", ["user"])}
    server = start_server(**auth_settings(tmp_path, keys))
    assert _info(server.address, (("x-api-key", "qk_admin_key_000000"),)).state == (
        server_pb2.SERVER_STATE_SERVING
    )
    with pytest.raises(grpc.RpcError) as caught:
        _info(server.address, (("x-api-key", "qk_user_key_111111"),))
    assert failure_of(caught.value).code == grpc.StatusCode.PERMISSION_DENIED
