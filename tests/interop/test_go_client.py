"""The generated Go client (`clients/go`): its generated code is what `make proto` writes
now, it vets, its own tests pass against the shared real server, and its example runs."""

from __future__ import annotations

import re

import pytest

from tests.conftest import RunningServer
from tests.interop._toolchains import (
    GO_MODULE,
    INSTALL_TIMEOUT_S,
    RUN_TIMEOUT_S,
    client_drift,
    example_lines,
    expected_example_lines,
    go,
    go_env,
    run,
    unavailable,
)

# The first test may install the plugins and download and compile the Go modules.
pytestmark = [pytest.mark.interop, pytest.mark.timeout(INSTALL_TIMEOUT_S + 2 * RUN_TIMEOUT_S)]

GO_TESTS = {
    "TestHealthIsServing",
    "TestParseMolecule",
    "TestServiceConfigIsApplied",
    "TestBadSmilesIsInvalidArgumentWithFieldViolation",
    "TestParseMoleculesStreamKeepsOrderAndReportsErrorsPerItem",
    "TestEmbeddedServiceConfigIsTheSharedFile",
    "TestServiceConfigParses",
    "TestUnavailableAndResourceExhaustedAreRetried",
    "TestWithoutTheServiceConfigNothingIsRetried",
    "TestDefaultTimeoutIsSentAsTheDeadline",
    "TestInvalidArgumentIsNotRetried",
    "TestRetriesAreBoundedAndThrottled",
}
"""Every Go test, so that one lost (renamed, or never compiled) fails here."""


@pytest.fixture(scope="module")
def go_client() -> str:
    """The go command, with the client's modules downloaded (from the module proxy)."""
    command = go()
    done = run([command, "mod", "download"], GO_MODULE, go_env(), timeout=INSTALL_TIMEOUT_S)
    if done.returncode != 0:
        unavailable(f"`go mod download` exited {done.returncode}: {done.stdout[-2000:]}")
    return command


def test_generated_go_code_is_up_to_date() -> None:
    drift = client_drift("clients/go/")
    assert not drift, f"run `make proto`; out of date: {', '.join(drift)}"


def test_go_client_and_example_vet(go_client: str) -> None:
    done = run([go_client, "vet", "./..."], GO_MODULE, go_env())
    assert done.returncode == 0, done.stdout


def test_go_tests_pass_against_the_server(go_client: str, server: RunningServer) -> None:
    done = run(
        [go_client, "test", "-count=1", "-v", "./..."],
        GO_MODULE,
        go_env(QULAB_ADDRESS=server.address),
    )
    assert done.returncode == 0, done.stdout
    passed = set(re.findall(r"^--- PASS: (\w+)", done.stdout, re.MULTILINE))
    assert passed == GO_TESTS, done.stdout
    assert "--- SKIP" not in done.stdout, done.stdout


def test_go_example_runs_against_the_server(go_client: str, server: RunningServer) -> None:
    done = run([go_client, "run", "./example"], GO_MODULE, go_env(QULAB_ADDRESS=server.address))
    assert done.returncode == 0, done.stdout
    assert example_lines(done.stdout) == expected_example_lines("InvalidArgument"), done.stdout
