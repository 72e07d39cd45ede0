"""Every size limit is a setting, and a real server refuses input past it with a clear
status before RDKit sees it. Each limit is set low on a server of its own, so the test
shows the setting (not a default elsewhere) is what refuses."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from qulab.client import AsyncClient, Client
from qulab.v1 import molecule_pb2
from tests.conftest import RunningServer
from tests.integration._status import failure_of
from tests.integration._workers import worker_pids

LIMITED = {
    "max_smiles_length": "40",
    "max_atoms": "12",
    "max_branch_depth": "3",
    "max_selfies_tokens": "10",
    "max_inchi_length": "30",
    "max_molfile_bytes": "200",
    "max_batch_items": "5",
    "max_message_bytes": "65536",
}


@pytest.fixture(scope="module")
def limited() -> Iterator[Client]:
    server = RunningServer({f"QULAB_{k.upper()}": v for k, v in LIMITED.items()})
    try:
        with Client(server.address, timeout=30) as client:
            yield client
    finally:
        server.stop()


def _refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, list[str], str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    failure = failure_of(caught.value)
    reasons = [v.reason for v in failure.violations]
    return failure.code, [v.field for v in failure.violations], ",".join(reasons)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (molecule_pb2.ParseMoleculeRequest(smiles="C" * 41), "smiles"),  # length
        (molecule_pb2.ParseMoleculeRequest(smiles="CCCCCCCCCCCCC"), "smiles"),  # 13 atoms
        (molecule_pb2.ParseMoleculeRequest(smiles="C(C(C(C(C)C)C)C)C"), "smiles"),  # depth 4
        (molecule_pb2.ParseMoleculeRequest(selfies="[C]" * 11), "selfies"),
        (molecule_pb2.ParseMoleculeRequest(inchi="InChI=1S/C6H6/c1-2-4-6-5-3-1/h1-6H"), "inchi"),
        (molecule_pb2.ParseMoleculeRequest(molfile="\n" * 201), "molfile"),
    ],
)
def test_text_limits(
    limited: Client, request_: molecule_pb2.ParseMoleculeRequest, field: str
) -> None:
    code, fields, reasons = _refusal(lambda: limited.parse_molecule(request_))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields == [field]
    assert reasons == "LIMIT_EXCEEDED"


def test_under_the_limits_is_served(limited: Client) -> None:
    answer = limited.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles="C(C(CC)C)C"))
    assert answer.molecule.num_atoms == 6


def test_batch_limit(limited: Client) -> None:
    def encode(count: int) -> molecule_pb2.EncodeMoleculeResponse:
        return limited.encode_molecule(
            molecule_pb2.EncodeMoleculeRequest(
                molecules=[molecule_pb2.MoleculeInput(smiles="CO")] * count,
                encoding=molecule_pb2.MOLECULE_ENCODING_MACCS,
            )
        )

    assert len(encode(5).item_status) == 5
    code, fields, reasons = _refusal(lambda: encode(6))
    assert (code, fields, reasons) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["molecules"],
        "LIMIT_EXCEEDED",
    )


def test_message_size_limit(limited: Client) -> None:
    oversized = molecule_pb2.ParseMoleculeRequest(molfile="x" * 70_000)
    with pytest.raises(grpc.RpcError) as caught:
        limited.parse_molecule(oversized)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_stream_keeps_a_bounded_window_in_flight(
    start_server: Callable[..., RunningServer],
) -> None:
    window = 4
    server = start_server(
        workers="1", stream_window=str(window), batch_max_items="1", log_level="DEBUG", cache_mb="0"
    )
    (worker,) = worker_pids(server, 1)
    with Client(server.address, timeout=60) as client, ThreadPoolExecutor(1) as pool:
        os.kill(worker, signal.SIGSTOP)
        try:
            requests = [
                molecule_pb2.ParseMoleculeRequest(smiles="C" * n, id=str(n)) for n in range(1, 41)
            ]
            answers = pool.submit(lambda: list(client.parse_molecules(requests)))
            # With the worker frozen, the stream admits exactly `window` items (one in the
            # worker, the rest queued) and reads no further.
            server.wait_for_log(message="queued", count=window)
            with pytest.raises(AssertionError):
                server.wait_for_log(timeout=1.0, message="queued", count=window + 1)
        finally:
            os.kill(worker, signal.SIGCONT)
        assert [a.id for a in answers.result(60)] == [str(n) for n in range(1, 41)]


async def test_a_flood_is_answered_never_cancelled(
    start_server: Callable[..., RunningServer],
) -> None:
    """3,000 calls at once against a frozen worker, so they pile up past the admission
    queue (200) and the concurrency cap (500): each is answered, or refused with
    RESOURCE_EXHAUSTED; none is dropped with CANCELLED (gRPC core's default pending limit
    did exactly that)."""
    server = start_server(
        workers="1", queue_size="200", max_concurrent_rpcs="500", cache_mb="0", log_level="DEBUG"
    )
    (worker,) = worker_pids(server, 1)
    os.kill(worker, signal.SIGSTOP)
    try:
        async with AsyncClient(server.address, timeout=120) as client:
            flood = asyncio.gather(
                *(
                    client.parse_molecule(
                        molecule_pb2.ParseMoleculeRequest(smiles="C" * (1 + i % 50))
                    )
                    for i in range(3000)
                ),
                return_exceptions=True,
            )
            await asyncio.to_thread(server.wait_for_log, message="queued", count=200)
            await asyncio.to_thread(server.wait_for_log, message="rpc", code="RESOURCE_EXHAUSTED")
            os.kill(worker, signal.SIGCONT)
            answers = await flood
    finally:
        os.kill(worker, signal.SIGCONT)
    codes = collections.Counter(
        a.code() if isinstance(a, grpc.RpcError) else type(a).__name__ for a in answers
    )
    assert set(codes) == {"ParseMoleculeResponse", grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert codes["ParseMoleculeResponse"] >= 200, codes


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        # Each measured on this machine kind to crash, stall or exhaust RDKit or selfies.
        (molecule_pb2.ParseMoleculeRequest(smiles="C" * 20_000), "smiles"),  # SIGSEGV
        (molecule_pb2.ParseMoleculeRequest(smiles="C" + "(C" * 20_000 + ")" * 20_000), "smiles"),
        (molecule_pb2.ParseMoleculeRequest(smiles="C1" + "C" * 9_998 + "C1"), "smiles"),  # 2.8 GB
        (molecule_pb2.ParseMoleculeRequest(selfies="[C]" * 100_000), "selfies"),  # > 20 s
        (molecule_pb2.ParseMoleculeRequest(smiles="[65536C]"), "smiles"),  # silently [C]
    ],
    ids=["chain", "nested-branches", "big-ring", "long-selfies", "isotope"],
)
def test_default_limits_refuse_hostile_inputs_up_front(
    server: RunningServer, request_: molecule_pb2.ParseMoleculeRequest, field: str
) -> None:
    with Client(server.address, timeout=10) as client:
        code, fields, reasons = _refusal(lambda: client.parse_molecule(request_))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields == [field]
    assert reasons in ("LIMIT_EXCEEDED", "VALUE_OUT_OF_RANGE")
    # The text checks refuse it before RDKit or selfies read it: no worker crashed.
    assert not server.log_entries(message="worker crashed")
