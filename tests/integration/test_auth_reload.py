"""Credentials reload without a restart, under traffic: on a file change and on SIGHUP, a
new key works, a revoked key stops working, no call in flight fails, and a broken file
keeps the previous credentials in force."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from qulab.v1 import molecule_pb2, molecule_pb2_grpc
from tests.conftest import RunningServer
from tests.integration._credentials import auth_settings, replace_file, token, write_keys
from tests.integration._status import failure_of

STEADY = "qk_steady_traffic_key_000"
REVOKED = "qk_soon_revoked_key_111"
ADDED = "qk_added_later_key_222"
REQUEST = molecule_pb2.ParseMoleculeRequest(smiles="c1ccccc1O")
_CLIENTS = 4


class Traffic:
    """Callers sending ParseMolecule with the steady key until stopped; every outcome
    other than OK is kept."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stub = molecule_pb2_grpc.MoleculeServiceStub(self._channel)
        self._stop = threading.Event()
        self.calls = 0
        self.failures: list[str] = []
        self._pool = ThreadPoolExecutor(_CLIENTS)
        self._runs = [self._pool.submit(self._run) for _ in range(_CLIENTS)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._stub.ParseMolecule(REQUEST, metadata=(("x-api-key", STEADY),), timeout=30)
                self.calls += 1
            except grpc.RpcError as exc:
                self.failures.append(f"{exc.code()}: {exc.details()}")

    def stop(self) -> None:
        self._stop.set()
        for run in self._runs:
            run.result(60)
        self._pool.shutdown()
        self._channel.close()


@pytest.fixture
def traffic() -> Iterator[Callable[[str], Traffic]]:
    started: list[Traffic] = []

    def start(address: str) -> Traffic:
        started.append(Traffic(address))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def _code(address: str, key: str) -> grpc.StatusCode:
    with grpc.insecure_channel(address) as channel:
        stub = molecule_pb2_grpc.MoleculeServiceStub(channel)
        try:
            stub.ParseMolecule(REQUEST, metadata=(("x-api-key", key),), timeout=30)
        except grpc.RpcError as exc:
            return failure_of(exc).code
    return grpc.StatusCode.OK


def test_a_changed_key_file_is_reloaded_under_traffic(
    tmp_path: Path, start_server: Callable[..., RunningServer], traffic: Callable[[str], Traffic]
) -> None:
    keys = tmp_path / "keys.json"
    settings = auth_settings(tmp_path, {STEADY: ("steady", ["user"]), REVOKED: ("old", ["user"])})
    server = start_server(**settings, auth_reload_s="0.1")
    assert _code(server.address, REVOKED) == grpc.StatusCode.OK
    assert _code(server.address, ADDED) == grpc.StatusCode.UNAUTHENTICATED
    load = traffic(server.address)
    reloads = 0
    for extra in range(3):  # several swaps while calls keep arriving
        for key_set in (
            {STEADY: ("steady", ["user"]), ADDED: ("new", ["user"])},
            {STEADY: ("steady", ["user"]), ADDED: ("new", ["user"]), f"qk_{extra}": ("x", [])},
        ):
            write_keys(keys, key_set)
            reloads += 1
            server.wait_for_log(message="credentials reloaded", count=reloads)
    assert _code(server.address, ADDED) == grpc.StatusCode.OK
    assert _code(server.address, REVOKED) == grpc.StatusCode.UNAUTHENTICATED
    load.stop()
    assert load.calls > 0
    assert load.failures == []


def test_sighup_reloads_and_a_broken_file_keeps_the_old_keys(
    tmp_path: Path, start_server: Callable[..., RunningServer], traffic: Callable[[str], Traffic]
) -> None:
    keys = tmp_path / "keys.json"
    settings = auth_settings(tmp_path, {STEADY: ("steady", ["user"]), REVOKED: ("old", ["user"])})
    server = start_server(**settings, auth_reload_s="0")  # SIGHUP only
    load = traffic(server.address)

    write_keys(keys, {STEADY: ("steady", ["user"]), ADDED: ("new", ["user"])})
    time.sleep(0.3)  # no watcher: nothing may change before the signal
    assert _code(server.address, ADDED) == grpc.StatusCode.UNAUTHENTICATED
    server.process.send_signal(signal.SIGHUP)
    server.wait_for_log(message="credentials reloaded", trigger="SIGHUP")
    assert _code(server.address, ADDED) == grpc.StatusCode.OK
    assert _code(server.address, REVOKED) == grpc.StatusCode.UNAUTHENTICATED

    replace_file(keys, '{"keys": [{"principal": "broken", "sha256": "not hex"}]')
    server.process.send_signal(signal.SIGHUP)
    refused = server.wait_for_log(
        message="credentials not reloaded; the previous ones stay in force"
    )
    assert "QULAB_API_KEYS_FILE" in refused["reason"]
    assert _code(server.address, ADDED) == grpc.StatusCode.OK
    assert _code(server.address, STEADY) == grpc.StatusCode.OK

    load.stop()
    assert load.calls > 0
    assert load.failures == []
    assert server.process.poll() is None


def test_a_rotated_token_secret_takes_over_and_the_old_one_stops(
    tmp_path: Path, start_server: Callable[..., RunningServer]
) -> None:
    settings = auth_settings(tmp_path, {STEADY: ("steady", ["user"])})
    server = start_server(**settings, auth_reload_s="0.1")
    new_secret = "a-rotated-secret-that-is-long-enough-for-hs256"
    old_token, new_token = token(subject="erin"), token(subject="erin", secret=new_secret)

    def code(bearer: str) -> grpc.StatusCode:
        with grpc.insecure_channel(server.address) as channel:
            stub = molecule_pb2_grpc.MoleculeServiceStub(channel)
            try:
                stub.ParseMolecule(
                    REQUEST, metadata=(("authorization", f"Bearer {bearer}"),), timeout=30
                )
            except grpc.RpcError as exc:
                return failure_of(exc).code
        return grpc.StatusCode.OK

    assert code(old_token) == grpc.StatusCode.OK  # and now cached as verified
    assert code(new_token) == grpc.StatusCode.UNAUTHENTICATED
    replace_file(Path(settings["jwt_secret_file"]), new_secret)
    server.wait_for_log(message="credentials reloaded", trigger="file change")
    assert code(new_token) == grpc.StatusCode.OK
    assert code(old_token) == grpc.StatusCode.UNAUTHENTICATED
