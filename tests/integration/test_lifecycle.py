"""Health, reflection and the SIGTERM drain of a real server."""

from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from bench._cpu import descendants
from qulab.client import Client
from qulab.v1 import molecule_pb2
from tests.conftest import RunningServer, run_server_once
from tests.integration._status import failure_of
from tests.integration._workers import is_forkserver, worker_pids

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ["", "qulab.v1.MoleculeService"]


class Watcher:
    """Follows grpc.health.v1 Watch for one service name in a thread."""

    def __init__(self, address: str, service: str = "") -> None:
        self._channel = grpc.insecure_channel(address)
        self._stream = health_pb2_grpc.HealthStub(self._channel).Watch(
            health_pb2.HealthCheckRequest(service=service)
        )
        self.seen: queue.Queue[int] = queue.Queue()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for response in self._stream:
                self.seen.put(response.status)
        except grpc.RpcError:
            pass

    def wait_for(self, status: int, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                if self.seen.get(timeout=left) == status:
                    return
            except queue.Empty:
                break
        raise AssertionError(f"health never became {status}")

    def close(self) -> None:
        self._stream.cancel()
        self._channel.close()
        self._thread.join(10)


def _check(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
    return response.status


def test_health_check_for_every_name(server: RunningServer) -> None:
    for service in SERVICES:
        assert _check(server.address, service) == SERVING
    with pytest.raises(grpc.RpcError) as caught:
        _check(server.address, "qulab.v1.NoSuchService")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_services(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="qulab.v1.MoleculeService"
            ),
        ]
        listed, described = list(stub.ServerReflectionInfo(iter(requests), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert {"qulab.v1.MoleculeService", "grpc.health.v1.Health"} <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    methods = {m.name for f in files for s in f.service for m in s.method}
    assert {"ParseMolecule", "ParseMolecules", "EncodeMolecule"} <= methods


def test_not_serving_while_no_worker_can_serve(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(workers="1")
    (worker,) = worker_pids(server, 1)
    forkserver = next(p for p in descendants(server.process.pid) if is_forkserver(p))
    watchers = [Watcher(server.address, service) for service in SERVICES]
    try:
        for watcher in watchers:
            watcher.wait_for(SERVING)
        os.kill(forkserver, signal.SIGSTOP)  # no replacement can start until it continues
        try:
            os.kill(worker, signal.SIGKILL)
            for watcher in watchers:
                watcher.wait_for(NOT_SERVING)
            assert _check(server.address, "") == NOT_SERVING
        finally:
            os.kill(forkserver, signal.SIGCONT)
        for watcher in watchers:
            watcher.wait_for(SERVING)
    finally:
        for watcher in watchers:
            watcher.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_drains_admitted_work_and_exits_zero(
    start_server: Callable[..., RunningServer], stop_signal: int
) -> None:
    server = start_server(workers="2", drain_grace_s="30", log_level="DEBUG")
    workers = worker_pids(server, 2)
    watcher = Watcher(server.address)
    watcher.wait_for(SERVING)
    smiles = [f"{'C' * n}O" for n in range(1, 21)]
    with Client(server.address, timeout=60) as client, ThreadPoolExecutor(24) as pool:
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)  # admitted work stays in flight until we say
        try:
            unary = [
                pool.submit(client.parse_molecule, molecule_pb2.ParseMoleculeRequest(smiles=s))
                for s in smiles
            ]
            stream = pool.submit(
                lambda: list(
                    client.parse_molecules(
                        [molecule_pb2.ParseMoleculeRequest(smiles=s, id=s) for s in smiles[:5]]
                    )
                )
            )
            server.wait_for_log(message="queued", count=len(smiles) + 5)  # all admitted
            server.process.send_signal(stop_signal)
            watcher.wait_for(NOT_SERVING)
            server.wait_for_log(message="draining")
            with Client(server.address, timeout=5) as late, pytest.raises(grpc.RpcError) as caught:
                late.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles="CC"))
            assert failure_of(caught.value).code == grpc.StatusCode.UNAVAILABLE
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
        answers = [f.result(60) for f in unary]
        assert [a.molecule.canonical_smiles for a in answers] == smiles
        assert [a.id for a in stream.result(60)] == smiles[:5]
    watcher.close()
    assert server.process.wait(60) == 0
    messages = [e.get("message") for e in server.logs]
    assert messages.index("draining") < messages.index("stopped")


def test_sigterm_right_after_the_start_still_drains() -> None:
    """The signal handlers are in place before "listening" is logged: a SIGTERM at once
    drains (exit 0), not kills (-15)."""
    running = RunningServer({})
    assert running.stop() == 0
    assert running.log_entries(message="stopped")


@pytest.mark.parametrize("setting", ["QULAB_PORT", "QULAB_METRICS_PORT"])
def test_a_port_in_use_stops_the_start_naming_its_setting(setting: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_server_once({setting: str(taken.getsockname()[1])})
    assert result.returncode != 0
    assert setting in result.stderr
    assert "Traceback" not in result.stderr
