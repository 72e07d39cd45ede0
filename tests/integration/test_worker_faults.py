"""Worker faults through a real server: crashes and overruns fail only the request that
was being computed, the pool replaces the worker, and the next calls succeed.

Workers are frozen with SIGSTOP so that "a request is inside a worker" is a fact, not a
race: a call dispatched to a stopped worker stays there until the test acts. The servers
log at DEBUG, so a test waits for the pool's "queued" and "task sent" lines instead of
sleeping."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import grpc
import pytest

from qulab.client import Client
from qulab.v1 import molecule_pb2
from tests.conftest import RunningServer
from tests.integration._status import failure_of
from tests.integration._workers import is_alive, worker_pids


@pytest.fixture
def one_worker(
    start_server: Callable[..., RunningServer],
) -> Iterator[tuple[RunningServer, Client]]:
    server = start_server(workers="1", cache_mb="0", log_level="DEBUG")
    with Client(server.address, timeout=30) as client:
        yield server, client


def _parse(client: Client, smiles: str, timeout: float = 30) -> molecule_pb2.ParseMoleculeResponse:
    return client.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles=smiles), timeout=timeout)


def _in_background(fn: Callable[[], object]) -> Future[object]:
    return ThreadPoolExecutor(1).submit(fn)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_worker_death_fails_only_its_request(
    one_worker: tuple[RunningServer, Client], sig: int
) -> None:
    server, client = one_worker
    (worker,) = worker_pids(server, 1)
    os.kill(worker, signal.SIGSTOP)
    held = _in_background(lambda: _parse(client, "CCN"))
    server.wait_for_log(message="task sent", worker_pid=worker)
    queued = _in_background(lambda: _parse(client, "CCCN"))
    server.wait_for_log(message="queued", count=2)
    os.kill(worker, sig)
    # A stopped process acts on SIGSEGV once continued; SIGKILL has already ended it.
    with contextlib.suppress(ProcessLookupError):
        os.kill(worker, signal.SIGCONT)
    results = []
    for future in (held, queued):
        try:
            results.append(future.result(30))
        except grpc.RpcError as error:
            results.append(failure_of(error))
    failures = [r for r in results if not isinstance(r, molecule_pb2.ParseMoleculeResponse)]
    # The worker held one request, the other was queued: exactly the held one fails, with
    # INTERNAL and an error id that is in the log.
    assert len(failures) == 1, results
    failure = failures[0]
    assert failure.code == grpc.StatusCode.INTERNAL
    assert failure.info is not None
    error_id = failure.info.metadata["error_id"]
    assert error_id in failure.message
    logged = server.wait_for_log(message="worker crashed", error_id=error_id)
    assert logged["cause"] == f"signal {signal.Signals(sig).name}"
    (replacement,) = worker_pids(server, 1)
    assert replacement != worker
    assert _parse(client, "c1ccccc1O").molecule.canonical_smiles == "Oc1ccccc1"


def test_overrun_kills_the_worker_and_the_pool_recovers(
    one_worker: tuple[RunningServer, Client],
) -> None:
    server, client = one_worker
    (worker,) = worker_pids(server, 1)
    os.kill(worker, signal.SIGSTOP)  # the request will sit in the worker past its deadline
    with pytest.raises(grpc.RpcError) as caught:
        _parse(client, "CCCCN", timeout=1.0)
    assert failure_of(caught.value).code == grpc.StatusCode.DEADLINE_EXCEEDED
    server.wait_for_log(message="worker overran a deadline; replacing it", worker_pid=worker)
    end = time.monotonic() + 10
    while is_alive(worker) and time.monotonic() < end:
        time.sleep(0.05)
    assert not is_alive(worker)
    answer = _parse(client, "CCCCCN")
    assert answer.provenance.worker_pid not in (0, worker)


def test_full_queue_is_resource_exhausted_with_pushback(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(
        workers="1", queue_size="2", batch_max_items="1", cache_mb="0", log_level="DEBUG"
    )
    (worker,) = worker_pids(server, 1)
    with Client(server.address, timeout=30) as client:
        os.kill(worker, signal.SIGSTOP)
        try:
            # One call goes into the (stopped) worker, two wait in the queue...
            waiting = [_in_background(lambda s=s: _parse(client, s)) for s in ("C", "CC", "CCC")]
            server.wait_for_log(message="queued", count=3)
            # ...so the queue is full and the next one is turned away at once.
            with pytest.raises(grpc.RpcError) as caught:
                _parse(client, "CCCC")
        finally:
            os.kill(worker, signal.SIGCONT)
        failure = failure_of(caught.value)
        assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert int(failure.trailers["grpc-retry-pushback-ms"]) > 0
        assert failure.retry is not None
        assert failure.retry.retry_delay.ToMilliseconds() > 0
        assert all(f.result(30).molecule.canonical_smiles for f in waiting)


def test_expired_queued_work_is_dropped_before_it_runs(
    start_server: Callable[..., RunningServer],
) -> None:
    # The cache proves it: had the expired request been computed, asking again would be a
    # cache hit.
    server = start_server(workers="1", batch_max_items="1", log_level="DEBUG")
    (worker,) = worker_pids(server, 1)
    with Client(server.address, timeout=30) as client:
        os.kill(worker, signal.SIGSTOP)
        try:
            blocker = _in_background(lambda: _parse(client, "CCOCC", timeout=30))
            server.wait_for_log(message="task sent", worker_pid=worker)
            with pytest.raises(grpc.RpcError) as caught:
                _parse(client, "CCSCC", timeout=0.5)  # queued behind the blocker, expires
            assert failure_of(caught.value).code == grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            os.kill(worker, signal.SIGCONT)
        blocker.result(30)
        again = _parse(client, "CCSCC")
        assert not again.provenance.cache_hit


def test_cancelled_queued_work_is_dropped(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(workers="1", batch_max_items="1", log_level="DEBUG")
    (worker,) = worker_pids(server, 1)
    with Client(server.address, timeout=30) as client:
        os.kill(worker, signal.SIGSTOP)
        try:
            blocker = _in_background(lambda: _parse(client, "CCOCCO"))
            server.wait_for_log(message="task sent", worker_pid=worker)
            future = client._molecules.ParseMolecule.future(
                molecule_pb2.ParseMoleculeRequest(smiles="CCSCCS"), timeout=30
            )
            server.wait_for_log(message="queued", count=2)
            assert future.cancel()
            server.wait_for_log(message="rpc", code="CANCELLED")
        finally:
            os.kill(worker, signal.SIGCONT)
        blocker.result(30)
        assert not _parse(client, "CCSCCS").provenance.cache_hit


def test_a_segfaulting_input_that_slips_through_limits(
    start_server: Callable[..., RunningServer],
) -> None:
    # With the limits opened up, a 20,000-carbon chain reaches RDKit, whose canonical
    # SMILES writer overflows the stack (measured: SIGSEGV after ~4.5 s); only that
    # request fails and the server keeps serving.
    server = start_server(
        workers="1", max_smiles_length="1000000", max_atoms="1000000", worker_memory_mb="0"
    )
    with Client(server.address, timeout=60) as client:
        with pytest.raises(grpc.RpcError) as caught:
            _parse(client, "C" * 20_000, timeout=60)
        failure = failure_of(caught.value)
        assert failure.code == grpc.StatusCode.INTERNAL, failure
        assert failure.info is not None
        server.wait_for_log(message="worker crashed", error_id=failure.info.metadata["error_id"])
        assert _parse(client, "CCO").molecule.canonical_smiles == "CCO"


def test_memory_cap_stops_a_hungry_input_without_killing_the_server(
    start_server: Callable[..., RunningServer],
) -> None:
    # A 5,000-atom ring needs ~770 MB (measured; it parses when uncapped). Under a 400 MiB
    # address-space cap RDKit cannot get the memory: its worker dies (RDKit turns the failed
    # allocation into SIGSEGV, not MemoryError), only this request fails, and the pool
    # replaces the worker.
    ring = "C1" + "C" * 4_998 + "C1"
    server = start_server(workers="1", max_atoms="1000000", worker_memory_mb="400")
    with Client(server.address, timeout=120) as client:
        with pytest.raises(grpc.RpcError) as caught:
            _parse(client, ring, timeout=120)
        failure = failure_of(caught.value)
        if failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert failure.trailers["grpc-retry-pushback-ms"] == "-1"  # do not retry
        else:
            assert failure.code == grpc.StatusCode.INTERNAL, failure
        assert _parse(client, "CCO").molecule.canonical_smiles == "CCO"
    uncapped = start_server(workers="1", max_atoms="1000000", worker_memory_mb="0")
    with Client(uncapped.address, timeout=120) as client:
        assert _parse(client, ring, timeout=120).molecule.num_atoms == 5_000


def test_workers_never_load_grpc(server: RunningServer) -> None:
    """Workers run chemistry only: the gRPC core library is not mapped in their memory,
    while RDKit is."""
    workers = worker_pids(server, 2)
    for pid in workers:
        with open(f"/proc/{pid}/maps") as maps:
            mapped = maps.read()
        assert "cygrpc" not in mapped, pid
        assert "rdkit" in mapped.lower(), pid
    with open(f"/proc/{server.process.pid}/maps") as maps:
        server_mapped = maps.read()
    assert "cygrpc" in server_mapped
    assert "rdkit" not in server_mapped.lower()  # the event loop never runs chemistry
