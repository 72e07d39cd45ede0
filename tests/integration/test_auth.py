"""Authentication, RBAC and the audit line on a real server: the whole credentials matrix
for a unary and a streaming RPC, health and reflection open, the secure default at start,
and no secret in any log line."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from qulab.v1 import molecule_pb2, molecule_pb2_grpc, units_pb2, units_pb2_grpc
from tests.conftest import RunningServer, run_server_once
from tests.integration._credentials import auth_settings, token, write_roles
from tests.integration._status import failure_of

ALICE_KEY = "qk_alice_0123456789abcdef"
UNITS_KEY = "qk_units_only_fedcba9876543210"
KEYS = {ALICE_KEY: ("alice", ["user"]), UNITS_KEY: ("unit-bot", ["units"])}
UNITS_ROLE = {"units": {"methods": ["qulab.v1.UnitService/*"]}}
REQUEST = molecule_pb2.ParseMoleculeRequest(smiles="CCO", id="ethanol")

Metadata = tuple[tuple[str, str], ...]


def _bearer(value: str) -> Metadata:
    return (("authorization", f"Bearer {value}"),)


# name -> (metadata, expected code, expected ErrorInfo reason or principal when OK)
MATRIX: dict[str, tuple[Metadata, grpc.StatusCode, str]] = {
    "no credentials": ((), grpc.StatusCode.UNAUTHENTICATED, "CREDENTIALS_MISSING"),
    "wrong key": (
        (("x-api-key", "qk_not_a_key"),),
        grpc.StatusCode.UNAUTHENTICATED,
        "API_KEY_INVALID",
    ),
    "expired token": (
        _bearer(token(expires_in=-600)),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_EXPIRED",
    ),
    "wrong audience": (
        _bearer(token(audience="another-service")),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_WRONG_AUDIENCE",
    ),
    "wrong issuer": (
        _bearer(token(issuer="https://elsewhere.test")),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_WRONG_ISSUER",
    ),
    "forged token": (
        _bearer(token(secret="another-secret-that-is-also-long-enough")),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
    ),
    "not bearer": (
        (("authorization", "Basic YWxpY2U6cHc="),),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
    ),
    "wrong role, key": (
        (("x-api-key", UNITS_KEY),),
        grpc.StatusCode.PERMISSION_DENIED,
        "METHOD_NOT_ALLOWED",
    ),
    "wrong role, token": (
        _bearer(token(subject="dave", roles=["units"])),
        grpc.StatusCode.PERMISSION_DENIED,
        "METHOD_NOT_ALLOWED",
    ),
    "valid key": ((("x-api-key", ALICE_KEY),), grpc.StatusCode.OK, "alice"),
    "valid token": (_bearer(token(subject="carol")), grpc.StatusCode.OK, "carol"),
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("auth")
    write_roles(tmp / "roles.json", UNITS_ROLE)
    settings = {**auth_settings(tmp, KEYS), "roles_file": str(tmp / "roles.json")}
    running = RunningServer({f"QULAB_{k.upper()}": v for k, v in settings.items()})
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def channel(secured: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(secured.address) as ch:
        yield ch


def _request_id(case: str, kind: str) -> str:
    return f"{kind}-{case.replace(' ', '-').replace(',', '')}"


@pytest.mark.parametrize("case", MATRIX)
def test_unary_matrix(case: str, channel: grpc.Channel, secured: RunningServer) -> None:
    metadata, code, expected = MATRIX[case]
    stub = molecule_pb2_grpc.MoleculeServiceStub(channel)
    request_id = _request_id(case, "unary")
    call_metadata = (*metadata, ("x-request-id", request_id))
    if code == grpc.StatusCode.OK:
        answer = stub.ParseMolecule(REQUEST, metadata=call_metadata, timeout=30)
        assert answer.molecule.canonical_smiles == "CCO"
        assert answer.provenance.principal == expected
        line = secured.wait_for_log(request_id=request_id, code="OK")
        assert line["principal"] == expected
        assert line["input_sha256"] == answer.provenance.input_sha256
        assert (
            line["input_sha256"]
            == hashlib.sha256(REQUEST.SerializeToString(deterministic=True)).hexdigest()
        )
    else:
        with pytest.raises(grpc.RpcError) as caught:
            stub.ParseMolecule(REQUEST, metadata=call_metadata, timeout=30)
        _check_refusal(caught.value, code, expected)
        line = secured.wait_for_log(request_id=request_id, code=code.name)
        assert "input_sha256" in line
    assert line["method"] == "/qulab.v1.MoleculeService/ParseMolecule"
    assert line["duration_ns"] > 0
    assert line["logger"] == "qulab.rpc"
    assert line["time"].endswith("Z")


@pytest.mark.parametrize("case", MATRIX)
def test_stream_matrix(case: str, channel: grpc.Channel, secured: RunningServer) -> None:
    metadata, code, expected = MATRIX[case]
    stub = molecule_pb2_grpc.MoleculeServiceStub(channel)
    request_id = _request_id(case, "stream")
    items = [molecule_pb2.ParseMoleculeRequest(smiles=s, id=s) for s in ("C", "CC", "CCC")]
    responses = stub.ParseMolecules(
        iter(items), metadata=(*metadata, ("x-request-id", request_id)), timeout=30
    )
    if code == grpc.StatusCode.OK:
        answers = list(responses)
        assert [a.id for a in answers] == ["C", "CC", "CCC"]
        assert {a.provenance.principal for a in answers} == {expected}
        line = secured.wait_for_log(request_id=request_id, code="OK", items=3)
        assert line["principal"] == expected
    else:
        with pytest.raises(grpc.RpcError) as caught:
            list(responses)
        _check_refusal(caught.value, code, expected)
        secured.wait_for_log(request_id=request_id, code=code.name)


def _check_refusal(error: grpc.RpcError, code: grpc.StatusCode, reason: str) -> None:
    failure = failure_of(error)
    assert failure.code == code, failure.message
    assert failure.info is not None
    assert failure.info.reason == reason
    if code == grpc.StatusCode.PERMISSION_DENIED:
        # The method is named; the caller's roles are not.
        assert "qulab.v1.MoleculeService/ParseMolecule" in failure.message
        assert "units" not in failure.message


def test_a_role_allows_its_methods(channel: grpc.Channel) -> None:
    stub = units_pb2_grpc.UnitServiceStub(channel)
    request = units_pb2.ConvertUnitsRequest(values=[1.5], from_unit="nm", to_unit="angstrom")
    answer = stub.ConvertUnits(request, metadata=(("x-api-key", UNITS_KEY),), timeout=30)
    assert answer.values[0] == pytest.approx(15.0)
    assert answer.provenance.principal == "unit-bot"


def test_health_and_reflection_need_no_credentials(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    assert (
        health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    names = {s.name for a in answers for s in a.list_services_response.service}
    assert "qulab.v1.MoleculeService" in names


def test_no_secret_is_logged(channel: grpc.Channel, secured: RunningServer) -> None:
    """Runs after the matrix (module order): every key and token sent is absent from
    every line the server wrote, and so is the HS256 secret."""
    from tests.integration._credentials import HS256_SECRET

    stub = molecule_pb2_grpc.MoleculeServiceStub(channel)
    stub.ParseMolecule(REQUEST, metadata=(("x-api-key", ALICE_KEY),), timeout=30)
    secured.wait_for_log(principal="alice")
    secrets = {ALICE_KEY, UNITS_KEY, "qk_not_a_key", HS256_SECRET}
    for metadata, _, _ in MATRIX.values():
        secrets.update(value.split()[-1] for _, value in metadata)
    logged = "\n".join(secured.raw)
    assert "alice" in logged  # the log is there, and names principals
    for secret in secrets:
        assert secret not in logged


def test_a_public_address_without_credentials_does_not_start() -> None:
    result = run_server_once({"QULAB_HOST": "0.0.0.0"})
    assert result.returncode != 0
    assert "QULAB_AUTH=none" in result.stderr
    assert "listening" not in result.stdout


def test_a_broken_credentials_file_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text('{"keys": [{"principal": "x", "sha256": "abc"}]}')
    result = run_server_once({"QULAB_API_KEYS_FILE": str(tmp_path / "keys.json")})
    assert result.returncode != 0
    assert "QULAB_API_KEYS_FILE" in result.stderr
    assert "listening" not in result.stdout


def test_loopback_without_credentials_serves_and_says_so(server: RunningServer) -> None:
    warning = server.wait_for_log(logger="qulab.auth", level="WARNING")
    assert "loopback" in warning["message"]
    listening = server.wait_for_log(message="listening")
    assert listening["auth"] == "off"
    with grpc.insecure_channel(server.address) as channel:
        answer = molecule_pb2_grpc.MoleculeServiceStub(channel).ParseMolecule(REQUEST, timeout=30)
    assert answer.provenance.principal == "anonymous"
