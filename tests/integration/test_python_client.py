"""The typed Python client against real QuLab servers: its exceptions carry the server's
decoded details, its credentials helpers authenticate by key, token, TLS and mTLS, its
request id reaches the provenance and the audit log, the shared retry policy rides out a
rate limit, and its circuit breaker opens when the server goes away and closes when a
new one answers its health probe."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qulab.client import AsyncClient, CircuitBreaker, Client, api_key, bearer_token, tls
from qulab.client import errors as client_errors
from qulab.v1 import molecule_pb2, structure_pb2
from tests.conftest import RunningServer
from tests.integration._certs import make_ca, make_client, make_server, subject
from tests.integration._credentials import auth_settings, token, write_roles

Start = Callable[..., RunningServer]
KEY = "qk_python_client_tests_0001"
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
BROKEN_CIF = "data_x\n_cell_length_a 5\n_cell_length_b 'unclosed\n"
BROKEN_LINE = 1 + BROKEN_CIF.splitlines().index("_cell_length_b 'unclosed")


def test_bad_input_raises_invalid_argument_with_the_field_and_place(
    server: RunningServer,
) -> None:
    with Client(server.address) as client:
        with pytest.raises(client_errors.InvalidArgument) as bad_smiles:
            client.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles="CC(C"))
        with pytest.raises(client_errors.InvalidArgument) as bad_cif:
            client.parse_structure(
                structure_pb2.ParseStructureRequest(
                    content=BROKEN_CIF.encode(), format=structure_pb2.STRUCTURE_FORMAT_CIF
                )
            )
    (smiles,) = bad_smiles.value.field_violations
    assert smiles.field == "smiles"
    assert smiles.position is not None
    assert 0 <= smiles.position < len("CC(C")
    assert bad_smiles.value.reason  # the ErrorInfo reason
    line = server.wait_for_log(message="rpc", request_id=bad_smiles.value.request_id)
    assert line["code"] == "INVALID_ARGUMENT"
    first = bad_cif.value.field_violations[0]
    assert first.field.startswith("content")
    assert first.line == BROKEN_LINE


def test_the_clients_request_id_is_in_the_provenance_and_the_log(server: RunningServer) -> None:
    with Client(server.address) as client:
        answer = client.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles="OCC"))
    request_id = answer.provenance.request_id
    assert len(request_id) == 32
    int(request_id, 16)
    assert server.wait_for_log(message="rpc", request_id=request_id)["code"] == "OK"


def test_api_key_and_bearer_token(tmp_path: Path, start_server: Start) -> None:
    secured = start_server(**auth_settings(tmp_path, {KEY: ("kim", ["user"])}))
    request = molecule_pb2.ParseMoleculeRequest(smiles=ASPIRIN)
    with Client(secured.address, credentials=api_key(KEY)) as client:
        assert client.parse_molecule(request).provenance.principal == "kim"
    with Client(secured.address, credentials=bearer_token(token("carol"))) as client:
        assert client.parse_molecule(request).provenance.principal == "carol"
    with Client(secured.address) as client, pytest.raises(client_errors.Unauthenticated) as no:
        client.parse_molecule(request)
    assert no.value.reason
    with (
        Client(secured.address, credentials=bearer_token(token("dan", roles=()))) as client,
        pytest.raises(client_errors.PermissionDenied),
    ):
        client.parse_molecule(request)


def test_tls_and_mtls(tmp_path: Path, start_server: Start) -> None:
    ca = make_ca(tmp_path, "ca")
    cert = make_server(ca, tmp_path)
    alice = make_client(ca, tmp_path, subject("alice"), "alice")
    secured = start_server(
        tls_cert_file=str(cert.cert_file),
        tls_key_file=str(cert.key_file),
        tls_client_ca_file=str(ca.cert_file),
    )
    mtls = tls(ca_file=ca.cert_file, cert_file=alice.cert_file, key_file=alice.key_file)
    target = f"localhost:{secured.address.rsplit(':', 1)[1]}"
    with Client(target, credentials=mtls) as client:
        answer = client.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles="CCN"))
    assert answer.provenance.principal == "CN=alice,O=QuLab Tests"
    # Without a client certificate the handshake fails: the server is unavailable to us.
    with (
        Client(target, credentials=tls(ca_file=ca.cert_file), breaker=False) as client,
        pytest.raises(client_errors.Unavailable),
    ):
        client.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles="CCN"), timeout=5)


def test_the_shared_retry_policy_rides_out_a_rate_limit(
    tmp_path: Path, start_server: Start
) -> None:
    write_roles(
        tmp_path / "roles.json",
        {"metered": {"methods": ["*/Parse*"], "rate_per_s": 5.0, "burst": 1}},
    )
    limited = start_server(
        **auth_settings(tmp_path, {KEY: ("metered", ["metered"])}),
        roles_file=str(tmp_path / "roles.json"),
    )
    requests = [molecule_pb2.ParseMoleculeRequest(smiles="C" * n) for n in range(1, 5)]
    with Client(limited.address, credentials=api_key(KEY)) as client:
        answers = [client.parse_molecule(r) for r in requests]
    assert [a.molecule.canonical_smiles for a in answers] == [r.smiles for r in requests]
    assert limited.log_entries(code="RESOURCE_EXHAUSTED"), "no call was ever refused"
    refusals: list[client_errors.ResourceExhausted] = []
    with Client(limited.address, credentials=api_key(KEY), retries=False) as client:
        for r in requests:
            try:
                client.parse_molecule(r)
            except client_errors.ResourceExhausted as refused:
                refusals.append(refused)
    assert refusals, "without retries, calls faster than the rate must be refused"
    for refused in refusals:
        assert refused.retry_delay is not None
        assert 0 < refused.retry_delay <= 0.2 + 1e-3  # one token at 5 per second


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_the_breaker_opens_when_the_server_goes_and_closes_when_one_answers(
    start_server: Start,
) -> None:
    port = str(_free_port())
    first = start_server(port=port)
    request = molecule_pb2.ParseMoleculeRequest(smiles="CCCl")
    breaker = CircuitBreaker(failures=2, reset_after_s=1.0)
    async with AsyncClient(first.address, breaker=breaker, timeout=5) as client:
        assert (await client.parse_molecule(request)).molecule.canonical_smiles == "CCCl"
        assert first.stop() == 0
        for _ in range(2):
            with pytest.raises(client_errors.Unavailable) as down:
                await client.parse_molecule(request)
            assert not isinstance(down.value, client_errors.CircuitOpen)
        with pytest.raises(client_errors.CircuitOpen):  # refused without a call
            await client.parse_molecule(request)
        second = start_server(port=port)
        second.wait_for_log(message="listening")
        deadline = time.monotonic() + 10
        while True:  # the first call after the pause probes health, then goes through
            try:
                answer = await client.parse_molecule(request)
                break
            except client_errors.CircuitOpen:
                assert time.monotonic() < deadline, "the circuit never closed"
                await asyncio.sleep(0.2)
    assert answer.provenance.request_id
    assert second.log_entries(message="rpc", code="OK")
