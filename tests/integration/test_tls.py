"""TLS and mTLS through a real server and real gRPC channels: who the caller is, what
its roles allow, certificate rotation without a restart, settings errors, and no key
material in the log."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from qulab.v1 import molecule_pb2, molecule_pb2_grpc, units_pb2, units_pb2_grpc
from tests.conftest import RunningServer, run_server_once
from tests.integration._certs import (
    Issued,
    make_ca,
    make_client,
    make_server,
    replace_file,
    subject,
)
from tests.integration._status import failure_of

Start = Callable[..., RunningServer]

# How the server names a client certificate's subject: gRPC's RFC 2253 form, most
# specific attribute first, so a certificate issued "O=QuLab Tests, CN=alice" reads:
ALICE = "CN=alice,O=QuLab Tests"
BOB = "CN=bob,O=QuLab Tests"
API_KEY = "tls-test-key-0123456789"
RPC_TIMEOUT_S = 10.0
ROTATION_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Pki:
    ca: Issued
    server: Issued
    alice: Issued
    bob: Issued
    other_ca: Issued
    mallory: Issued  # "CN=alice" too, but issued by the other CA


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = make_ca(tmp_path, "ca")
    other_ca = make_ca(tmp_path, "other-ca")
    return Pki(
        ca=ca,
        server=make_server(ca, tmp_path),
        alice=make_client(ca, tmp_path, subject("alice"), "alice"),
        bob=make_client(ca, tmp_path, subject("bob"), "bob"),
        other_ca=other_ca,
        mallory=make_client(other_ca, tmp_path, subject("alice"), "mallory"),
    )


def _tls(pki: Pki) -> dict[str, str]:
    return {"tls_cert_file": str(pki.server.cert_file), "tls_key_file": str(pki.server.key_file)}


def _mtls(pki: Pki) -> dict[str, str]:
    return {**_tls(pki), "tls_client_ca_file": str(pki.ca.cert_file)}


@pytest.fixture
def open_channel() -> Iterator[Callable[..., grpc.Channel]]:
    """A new secure channel trusting `ca`, presenting `client` if given. Each channel has
    its own subchannel pool, so it makes its own connection and its own handshake."""
    opened: list[grpc.Channel] = []

    def open_(server: RunningServer, ca: Issued, client: Issued | None = None) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca.cert_pem,
            private_key=client.key_pem if client else None,
            certificate_chain=client.cert_pem if client else None,
        )
        channel = grpc.secure_channel(
            server.address, credentials, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        opened.append(channel)
        return channel

    yield open_
    for channel in opened:
        channel.close()


def _parse(
    channel: grpc.Channel, smiles: str = "CCO", metadata: tuple[tuple[str, str], ...] = ()
) -> molecule_pb2.ParseMoleculeResponse:
    request = molecule_pb2.ParseMoleculeRequest(smiles=smiles)
    stub = molecule_pb2_grpc.MoleculeServiceStub(channel)
    answer: molecule_pb2.ParseMoleculeResponse = stub.ParseMolecule(
        request, timeout=RPC_TIMEOUT_S, metadata=metadata
    )
    return answer


def _convert(channel: grpc.Channel) -> units_pb2.ConvertUnitsResponse:
    request = units_pb2.ConvertUnitsRequest(
        values=[500], from_unit="nm", to_unit="1/cm", context="spectroscopy"
    )
    stub = units_pb2_grpc.UnitServiceStub(channel)
    answer: units_pb2.ConvertUnitsResponse = stub.ConvertUnits(request, timeout=RPC_TIMEOUT_S)
    return answer


def _refused(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    code: grpc.StatusCode = failure_of(caught.value).code
    return code


def _connected(channel: grpc.Channel) -> molecule_pb2.ParseMoleculeResponse | None:
    """The answer, or None when the channel could not connect (other errors raise)."""
    try:
        return _parse(channel)
    except grpc.RpcError as exc:
        if failure_of(exc).code != grpc.StatusCode.UNAVAILABLE:
            raise
        return None


def _poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def _logged(server: RunningServer, text: str) -> list[dict[str, Any]]:
    return [e for e in server.logs if text in str(e.get("message", ""))]


def test_tls_only_serves_secure_channels_and_refuses_plaintext(
    start_server: Start, pki: Pki, open_channel: Callable[..., grpc.Channel]
) -> None:
    server = start_server(**_tls(pki))
    listening = server.wait_for_log(message="listening")
    assert listening["tls"] == "tls"
    assert listening["auth"] == "off"

    secure = open_channel(server, pki.ca)
    answer = _parse(secure)
    assert answer.molecule.canonical_smiles == "CCO"
    # No credentials configured, loopback only: unauthenticated callers, as anonymous.
    assert answer.provenance.principal == "anonymous"

    health = health_pb2_grpc.HealthStub(secure)
    request = health_pb2.HealthCheckRequest(service="")
    status = health.Check(request, timeout=RPC_TIMEOUT_S)  # type: ignore[attr-defined]
    assert status.status == health_pb2.HealthCheckResponse.SERVING

    with grpc.insecure_channel(server.address) as plaintext:
        assert _refused(lambda: _parse(plaintext)) == grpc.StatusCode.UNAVAILABLE
    # The client checks the server too: a channel trusting another CA does not connect.
    untrusting = open_channel(server, pki.other_ca)
    assert _refused(lambda: _parse(untrusting)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_client_certificate_subject_is_the_principal(
    start_server: Start, pki: Pki, open_channel: Callable[..., grpc.Channel]
) -> None:
    server = start_server(**_mtls(pki))
    listening = server.wait_for_log(message="listening")
    assert listening["tls"] == "mtls"
    assert listening["auth"] == "required"

    answer = _parse(open_channel(server, pki.ca, pki.alice))
    assert answer.molecule.canonical_smiles == "CCO"
    assert answer.provenance.principal == ALICE
    assert "CN=alice" in answer.provenance.principal
    assert _parse(open_channel(server, pki.ca, pki.bob)).provenance.principal == BOB

    no_cert = open_channel(server, pki.ca)
    assert _refused(lambda: _parse(no_cert)) == grpc.StatusCode.UNAVAILABLE
    # Same subject as alice, but another CA signed it.
    foreign = open_channel(server, pki.ca, pki.mallory)
    assert _refused(lambda: _parse(foreign)) == grpc.StatusCode.UNAVAILABLE
    # Only the handshakes failed: alice still gets in.
    assert _parse(open_channel(server, pki.ca, pki.alice)).provenance.principal == ALICE


def test_mtls_stream_carries_the_subject(
    start_server: Start, pki: Pki, open_channel: Callable[..., grpc.Channel]
) -> None:
    server = start_server(**_mtls(pki))
    stub = molecule_pb2_grpc.MoleculeServiceStub(open_channel(server, pki.ca, pki.alice))
    smiles = ["CCO", "c1ccccc1", "N#N", "CC(=O)O"] * 5
    requests = (
        molecule_pb2.ParseMoleculeRequest(smiles=s, id=str(i)) for i, s in enumerate(smiles)
    )
    answers = list(stub.ParseMolecules(requests, timeout=30))
    assert [a.id for a in answers] == [str(i) for i in range(len(smiles))]
    for answer in answers:
        assert answer.HasField("molecule"), answer.error
        assert answer.provenance.principal == ALICE
        assert answer.provenance.method == "/qulab.v1.MoleculeService/ParseMolecules"


def test_roles_file_gives_a_subject_its_roles(
    start_server: Start, pki: Pki, tmp_path: Path, open_channel: Callable[..., grpc.Channel]
) -> None:
    roles = tmp_path / "roles.json"
    roles.write_text(
        json.dumps(
            {
                "roles": {"molecules": {"methods": ["qulab.v1.MoleculeService/*"]}},
                "principals": {ALICE: ["molecules"]},
            }
        )
    )
    server = start_server(**_mtls(pki), roles_file=str(roles))

    alice = open_channel(server, pki.ca, pki.alice)
    assert _parse(alice).provenance.principal == ALICE
    with pytest.raises(grpc.RpcError) as caught:
        _convert(alice)
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert "qulab.v1.UnitService/ConvertUnits" in failure.message
    assert failure.info is not None
    assert failure.info.reason == "METHOD_NOT_ALLOWED"

    # bob is not in the roles file: he has the default role, `user`, which may convert.
    bob = open_channel(server, pki.ca, pki.bob)
    converted = _convert(bob)
    assert converted.values[0] == pytest.approx(20_000.0)
    assert converted.provenance.principal == BOB


def test_api_key_takes_precedence_over_the_client_certificate(
    start_server: Start, pki: Pki, tmp_path: Path, open_channel: Callable[..., grpc.Channel]
) -> None:
    keys = tmp_path / "keys.json"
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    keys.write_text(
        json.dumps({"keys": [{"principal": "svc", "sha256": digest, "roles": ["user"]}]})
    )
    server = start_server(**_mtls(pki), api_keys_file=str(keys))

    alice = open_channel(server, pki.ca, pki.alice)
    assert _parse(alice, metadata=(("x-api-key", API_KEY),)).provenance.principal == "svc"
    assert _parse(alice).provenance.principal == ALICE
    # A bad key is refused; the certificate does not stand in for it.
    with pytest.raises(grpc.RpcError) as caught:
        _parse(alice, metadata=(("x-api-key", "not-the-key"),))
    assert failure_of(caught.value).code == grpc.StatusCode.UNAUTHENTICATED
    # With mTLS every connection needs a certificate, a valid key or not.
    no_cert = open_channel(server, pki.ca)
    refused = _refused(lambda: _parse(no_cert, metadata=(("x-api-key", API_KEY),)))
    assert refused == grpc.StatusCode.UNAVAILABLE


def test_certificate_rotation_without_restart(
    start_server: Start, pki: Pki, tmp_path: Path, open_channel: Callable[..., grpc.Channel]
) -> None:
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    live_cert.write_bytes(pki.server.cert_pem)
    live_key.write_bytes(pki.server.key_pem)
    server = start_server(tls_cert_file=str(live_cert), tls_key_file=str(live_key))
    assert _parse(open_channel(server, pki.ca)).molecule.canonical_smiles == "CCO"

    ca2 = make_ca(tmp_path, "ca2")
    rotated = make_server(ca2, tmp_path, "server2")
    replace_file(live_cert, rotated.cert_pem)
    replace_file(live_key, rotated.key_pem)

    _poll(
        lambda: _connected(open_channel(server, ca2)) is not None,
        ROTATION_TIMEOUT_S,
        "a channel trusting the new CA connects",
    )
    assert _logged(server, "TLS files reloaded")
    old = open_channel(server, pki.ca)
    assert _refused(lambda: _parse(old)) == grpc.StatusCode.UNAVAILABLE

    replace_file(live_cert, b"this is not a certificate\n")
    # The next handshake reads the files again, finds them bad and keeps the last good ones.
    assert _parse(open_channel(server, ca2)).molecule.canonical_smiles == "CCO"
    _poll(
        lambda: bool(_logged(server, "TLS files not reloaded")),
        ROTATION_TIMEOUT_S,
        "the bad certificate file is logged",
    )
    assert _parse(open_channel(server, ca2)).molecule.canonical_smiles == "CCO"
    assert _refused(lambda: _parse(open_channel(server, pki.ca))) == grpc.StatusCode.UNAVAILABLE
    assert server.process.poll() is None


def test_client_ca_rotation_without_restart(
    start_server: Start, pki: Pki, tmp_path: Path, open_channel: Callable[..., grpc.Channel]
) -> None:
    client_ca = tmp_path / "clients.crt"
    client_ca.write_bytes(pki.ca.cert_pem)
    server = start_server(**_tls(pki), tls_client_ca_file=str(client_ca))
    assert _parse(open_channel(server, pki.ca, pki.alice)).provenance.principal == ALICE
    foreign = open_channel(server, pki.ca, pki.mallory)
    assert _refused(lambda: _parse(foreign)) == grpc.StatusCode.UNAVAILABLE

    replace_file(client_ca, pki.other_ca.cert_pem)

    answers: list[molecule_pb2.ParseMoleculeResponse] = []

    def accepts_other_ca() -> bool:
        answer = _connected(open_channel(server, pki.ca, pki.mallory))
        answers.extend([answer] if answer else [])
        return answer is not None

    _poll(accepts_other_ca, ROTATION_TIMEOUT_S, "a client of the new client CA connects")
    # The subject alone names the caller, whichever trusted CA signed the certificate.
    assert answers[0].provenance.principal == ALICE
    alice = open_channel(server, pki.ca, pki.alice)
    assert _refused(lambda: _parse(alice)) == grpc.StatusCode.UNAVAILABLE


def _rotate_to_a_mismatched_pair(
    start_server: Start, pki: Pki, tmp_path: Path, open_channel: Callable[..., grpc.Channel]
) -> RunningServer:
    """A server whose certificate file was replaced by one the key file does not match."""
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    live_cert.write_bytes(pki.server.cert_pem)
    live_key.write_bytes(pki.server.key_pem)
    server = start_server(tls_cert_file=str(live_cert), tls_key_file=str(live_key))
    assert _parse(open_channel(server, pki.ca)).molecule.canonical_smiles == "CCO"
    replace_file(live_cert, make_server(pki.other_ca, tmp_path, "unmatched").cert_pem)
    # This handshake makes the server read the files again.
    assert _parse(open_channel(server, pki.ca)).molecule.canonical_smiles == "CCO"
    return server


def test_rotation_to_a_mismatched_pair_keeps_the_last_good_one(
    start_server: Start, pki: Pki, tmp_path: Path, open_channel: Callable[..., grpc.Channel]
) -> None:
    server = _rotate_to_a_mismatched_pair(start_server, pki, tmp_path, open_channel)
    assert _parse(open_channel(server, pki.ca)).molecule.canonical_smiles == "CCO"
    other = open_channel(server, pki.other_ca)
    assert _refused(lambda: _parse(other)) == grpc.StatusCode.UNAVAILABLE


def test_rotation_to_a_mismatched_pair_is_logged_as_not_reloaded(
    start_server: Start, pki: Pki, tmp_path: Path, open_channel: Callable[..., grpc.Channel]
) -> None:
    server = _rotate_to_a_mismatched_pair(start_server, pki, tmp_path, open_channel)
    _poll(
        lambda: bool(_logged(server, "TLS files not reloaded")),
        ROTATION_TIMEOUT_S,
        "the mismatched pair is logged",
    )
    assert not server.log_entries(message="TLS files reloaded")


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({"QULAB_TLS_KEY_FILE": "server.key"}, "QULAB_TLS_CERT_FILE"),
        ({"QULAB_TLS_CERT_FILE": "server.crt"}, "QULAB_TLS_KEY_FILE"),
        ({"QULAB_TLS_CLIENT_CA_FILE": "ca.crt"}, "QULAB_TLS_CLIENT_CA_FILE"),
        (
            {"QULAB_TLS_CLIENT_CA_FILE": "ca.crt", "QULAB_TLS_KEY_FILE": "server.key"},
            "QULAB_TLS_CERT_FILE",
        ),
    ],
)
def test_incomplete_tls_settings_stop_the_server(
    pki: Pki, tmp_path: Path, files: dict[str, str], named: str
) -> None:
    result = run_server_once({var: str(tmp_path / name) for var, name in files.items()})
    assert result.returncode != 0
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout + result.stderr


@pytest.mark.parametrize("broken", ["missing", "not PEM"])
def test_unreadable_certificate_stops_the_server(pki: Pki, tmp_path: Path, broken: str) -> None:
    cert = tmp_path / "broken.crt"
    if broken == "not PEM":
        cert.write_bytes(b"this is not a certificate\n")
    result = run_server_once(
        {"QULAB_TLS_CERT_FILE": str(cert), "QULAB_TLS_KEY_FILE": str(pki.server.key_file)}
    )
    assert result.returncode != 0
    assert "QULAB_TLS_" in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ("key of another certificate", "QULAB_TLS_KEY_FILE"),
        ("truncated certificate", "QULAB_TLS_CERT_FILE"),
        ("truncated client CA", "QULAB_TLS_CLIENT_CA_FILE"),
    ],
)
def test_unusable_pem_stops_the_server_with_its_setting(
    pki: Pki, tmp_path: Path, broken: str, named: str
) -> None:
    truncated = tmp_path / "truncated.pem"
    truncated.write_bytes(pki.bob.cert_pem[:200])
    env = {
        "QULAB_TLS_CERT_FILE": str(pki.server.cert_file),
        "QULAB_TLS_KEY_FILE": str(pki.server.key_file),
    }
    if broken == "key of another certificate":
        env["QULAB_TLS_KEY_FILE"] = str(pki.bob.key_file)
    elif broken == "truncated certificate":
        env["QULAB_TLS_CERT_FILE"] = str(truncated)
    else:
        env["QULAB_TLS_CLIENT_CA_FILE"] = str(truncated)
    result = run_server_once(env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert named in result.stderr


def _pem_body_lines(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


def test_no_key_material_in_the_log(
    start_server: Start, pki: Pki, tmp_path: Path, open_channel: Callable[..., grpc.Channel]
) -> None:
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    live_cert.write_bytes(pki.server.cert_pem)
    live_key.write_bytes(pki.server.key_pem)
    server = start_server(
        tls_cert_file=str(live_cert),
        tls_key_file=str(live_key),
        tls_client_ca_file=str(pki.ca.cert_file),
        log_level="DEBUG",
    )
    keys = [pki.ca.key_pem, pki.server.key_pem, pki.alice.key_pem, pki.bob.key_pem]
    assert _parse(open_channel(server, pki.ca, pki.alice)).provenance.principal == ALICE
    assert _refused(lambda: _parse(open_channel(server, pki.ca))) == grpc.StatusCode.UNAVAILABLE
    # A key file that lost its PEM armour: the reload fails, and says why without quoting it.
    replace_file(live_key, "\n".join(_pem_body_lines(pki.server.key_pem)).encode())
    assert _parse(open_channel(server, pki.ca, pki.bob)).provenance.principal == BOB
    _poll(
        lambda: bool(_logged(server, "TLS files not reloaded")),
        ROTATION_TIMEOUT_S,
        "the bad key file is logged",
    )
    assert server.stop() == 0

    assert server.raw, "the server logged nothing"
    body = [line for pem in keys for line in _pem_body_lines(pem)]
    assert body
    for logged in server.raw:
        assert "PRIVATE KEY" not in logged
        leaked = [line for line in body if line in logged]
        assert not leaked, logged
