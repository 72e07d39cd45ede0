"""clients/service_config.json, the one retry policy every client language uses: what it
retries (UNAVAILABLE and RESOURCE_EXHAUSTED only), that it is throttled, that every service
of the contract is covered, and that the Python client ships this very file."""

from __future__ import annotations

import json
import re
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor

import qulab.client
from tests._contract import services
from tests.conftest import ROOT

CONFIG_FILE = ROOT / "clients" / "service_config.json"
SERVICES = services()


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(CONFIG_FILE.read_text())
    return loaded


def _policy_for(config: dict[str, Any], method: descriptor.MethodDescriptor) -> dict[str, Any]:
    """The methodConfig gRPC picks for `method`: an exact method name beats a service."""
    exact = [
        c
        for c in config["methodConfig"]
        for n in c["name"]
        if n == {"service": method.containing_service.full_name, "method": method.name}
    ]
    whole = [
        c
        for c in config["methodConfig"]
        for n in c["name"]
        if n == {"service": method.containing_service.full_name}
    ]
    assert len(exact) + len(whole) >= 1, method.full_name
    return (exact or whole)[0]


def test_the_package_ships_the_shared_file() -> None:
    assert qulab.client.service_config() == CONFIG_FILE.read_text()


@pytest.mark.parametrize(
    "method",
    [m for s in SERVICES for m in s.methods],
    ids=lambda m: m.full_name,
)
def test_every_method_retries_only_unavailable_and_resource_exhausted(
    config: dict[str, Any], method: descriptor.MethodDescriptor
) -> None:
    chosen = _policy_for(config, method)
    retry = chosen["retryPolicy"]
    assert sorted(retry["retryableStatusCodes"]) == ["RESOURCE_EXHAUSTED", "UNAVAILABLE"]
    assert 2 <= retry["maxAttempts"] <= 5  # gRPC caps attempts at 5
    streaming = method.client_streaming or method.server_streaming
    # A unary call gets a default deadline; a stream lasts as long as its input.
    assert ("timeout" in chosen) is not streaming


def test_retries_are_throttled(config: dict[str, Any]) -> None:
    throttling = config["retryThrottling"]
    assert 0 < throttling["maxTokens"] <= 1000
    assert 0 < throttling["tokenRatio"] <= 1


def test_health_checks_are_not_retried(config: dict[str, Any]) -> None:
    (health,) = [
        c for c in config["methodConfig"] if {"service": "grpc.health.v1.Health"} in c["name"]
    ]
    assert "retryPolicy" not in health


def test_durations_are_in_the_json_mapping_form(config: dict[str, Any]) -> None:
    text = json.dumps(config)
    for value in re.findall(r'"(?:timeout|initialBackoff|maxBackoff)": "([^"]*)"', text):
        assert re.fullmatch(r"\d+(\.\d+)?s", value), value


def _first_call_code(config_text: str) -> grpc.StatusCode:
    """grpc core parses a service config when the channel is built: an invalid one fails
    the first call with INVALID_ARGUMENT; a valid one gets as far as connecting."""
    options = [("grpc.enable_retries", 1), ("grpc.service_config", config_text)]
    with (
        grpc.insecure_channel("localhost:1", options=options) as channel,  # nothing listens
        pytest.raises(grpc.RpcError) as caught,
    ):
        channel.unary_unary("/qulab.v1.UnitService/ConvertUnits")(b"", timeout=5)
    code: grpc.StatusCode = caught.value.code()  # type: ignore[attr-defined]
    return code


def test_grpc_accepts_it(config: dict[str, Any]) -> None:
    assert _first_call_code(CONFIG_FILE.read_text()) is grpc.StatusCode.UNAVAILABLE
    broken = json.loads(json.dumps(config))
    broken["methodConfig"][0]["retryPolicy"]["maxAttempts"] = 1
    assert _first_call_code(json.dumps(broken)) is grpc.StatusCode.INVALID_ARGUMENT
