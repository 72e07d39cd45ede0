"""QULAB_MAX_CONNECTION_AGE_S and QULAB_MAX_CONNECTION_AGE_GRACE_S on a real server: past
the age the server sends a GOAWAY, the client's channel goes IDLE and its next call opens a
new TCP connection (which is how long-lived clients spread over new replicas); calls still
running on the old connection finish within the grace, and are cut past it."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from qulab.v1 import molecule_pb2, molecule_pb2_grpc
from tests.conftest import RunningServer

AGE_S = 1.0
JITTER = 0.1
"""gRPC core moves each connection's age by up to ±10%."""
_WAIT_S = 10.0
_STREAM_ITEMS = 7
_ITEM_GAP_S = 0.4
"""A stream of 7 items 0.4 s apart lasts about 2.4 s: well past AGE_S."""


class States:
    """The connectivity states a channel goes through, each with when it was reached."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel
        self._seen: queue.Queue[tuple[float, grpc.ChannelConnectivity]] = queue.Queue()
        self.history: list[tuple[float, grpc.ChannelConnectivity]] = []
        channel.subscribe(self._record, try_to_connect=False)

    def _record(self, state: grpc.ChannelConnectivity) -> None:
        self._seen.put((time.monotonic(), state))

    def wait_for(self, state: grpc.ChannelConnectivity, timeout: float = _WAIT_S) -> float:
        """When the channel next reaches `state`; AssertionError if it does not in time."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                at, seen = self._seen.get(timeout=left)
            except queue.Empty:
                break
            self.history.append((at, seen))
            if seen == state:
                return at
        raise AssertionError(f"the channel never became {state}: {self.history}")

    def drain(self) -> list[grpc.ChannelConnectivity]:
        """The states reached since the last look (by `wait_for` or `drain`)."""
        new: list[grpc.ChannelConnectivity] = []
        while True:
            try:
                at, state = self._seen.get_nowait()
            except queue.Empty:
                return new
            self.history.append((at, state))
            new.append(state)

    def close(self) -> None:
        self._channel.unsubscribe(self._record)


def _connections_to(port: int) -> set[int]:
    """The local ports of this process's established TCP connections to `port` on this
    machine (from /proc: gRPC does not say which socket a channel uses)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed since the listing
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    local_ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
                local_ports.add(int(local.split(":")[1], 16))
    return local_ports


def _check(channel: grpc.Channel) -> None:
    response = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=5
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def _slow_stream() -> Iterator[molecule_pb2.ParseMoleculeRequest]:
    for n in range(1, _STREAM_ITEMS + 1):
        yield molecule_pb2.ParseMoleculeRequest(smiles="C" * n, id=str(n))
        time.sleep(_ITEM_GAP_S)


@contextlib.contextmanager
def _watched(address: str) -> Iterator[tuple[grpc.Channel, States]]:
    """A channel to `address`, and its states."""
    with grpc.insecure_channel(address) as opened:
        states = States(opened)
        try:
            yield opened, states
        finally:
            states.close()


@pytest.fixture
def aged_server(start_server: Callable[..., RunningServer]) -> RunningServer:
    return start_server(
        workers="1", max_connection_age_s=str(AGE_S), max_connection_age_grace_s="30"
    )


def test_a_connection_is_recycled_after_the_max_age(aged_server: RunningServer) -> None:
    with _watched(aged_server.address) as (opened, states):
        _check(opened)
        ready = states.wait_for(grpc.ChannelConnectivity.READY)
        (first,) = _connections_to(aged_server.port)
        goaway = states.wait_for(grpc.ChannelConnectivity.IDLE)
        assert goaway - ready >= AGE_S * (1 - JITTER) - 0.05, "closed before its age"
        assert grpc.ChannelConnectivity.TRANSIENT_FAILURE not in states.drain()
        deadline = time.monotonic() + _WAIT_S  # the client closes the old socket soon after
        while first in _connections_to(aged_server.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first not in _connections_to(aged_server.port)

        _check(opened)  # the next call simply reconnects
        (second,) = _connections_to(aged_server.port)
        assert second != first


def test_without_a_max_age_a_connection_stays(server: RunningServer) -> None:
    """The control: the server's default (0) never recycles a connection."""
    with _watched(server.address) as (opened, states):
        _check(opened)
        states.wait_for(grpc.ChannelConnectivity.READY)
        before = _connections_to(server.port)
        time.sleep(AGE_S * (1 + JITTER) * 2)
        _check(opened)
        assert grpc.ChannelConnectivity.IDLE not in states.drain()
        assert _connections_to(server.port) == before


def test_a_call_running_at_the_max_age_finishes_within_the_grace(
    aged_server: RunningServer,
) -> None:
    with _watched(aged_server.address) as (opened, states):
        _check(opened)
        states.wait_for(grpc.ChannelConnectivity.READY)
        stub = molecule_pb2_grpc.MoleculeServiceStub(opened)
        answers = list(stub.ParseMolecules(_slow_stream(), timeout=_WAIT_S))
        assert [a.id for a in answers] == [str(n) for n in range(1, _STREAM_ITEMS + 1)]
        assert all(a.HasField("molecule") for a in answers)
        # The GOAWAY came while the stream ran (it lasts about twice the age).
        assert grpc.ChannelConnectivity.IDLE in states.drain()


def test_a_call_running_past_the_grace_is_cut(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(
        workers="1", max_connection_age_s=str(AGE_S), max_connection_age_grace_s="0.5"
    )
    answered: list[str] = []

    def follow(stub: molecule_pb2_grpc.MoleculeServiceStub) -> None:
        for answer in stub.ParseMolecules(_slow_stream(), timeout=_WAIT_S):
            answered.append(answer.id)

    with _watched(server.address) as (opened, _), pytest.raises(grpc.RpcError) as caught:
        follow(molecule_pb2_grpc.MoleculeServiceStub(opened))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "max connection age" in (caught.value.details() or "")
    # Cut after age + grace (1 s ± 10%, then 0.5 s): after some answers, before the last.
    assert 1 <= len(answered) < _STREAM_ITEMS


def test_connections_are_read_from_this_process() -> None:
    """`_connections_to` sees this process's own sockets (else the recycling test could
    compare empty sets)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert _connections_to(port) == {client.getsockname()[1]}
