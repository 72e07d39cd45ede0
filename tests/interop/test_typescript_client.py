"""The generated TypeScript client (`clients/typescript`): its generated code is what
`make proto` writes now, it compiles under `tsc --strict`, its own tests (`node --test`)
pass against the shared real server, and its example runs."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.conftest import RunningServer
from tests.interop._toolchains import (
    INSTALL_TIMEOUT_S,
    RUN_TIMEOUT_S,
    TS_PACKAGE,
    client_drift,
    example_lines,
    expected_example_lines,
    node,
    run,
)

# The first test may run `npm ci`.
pytestmark = [pytest.mark.interop, pytest.mark.timeout(INSTALL_TIMEOUT_S + 2 * RUN_TIMEOUT_S)]

DIST = TS_PACKAGE / "dist"
TS_TESTS = {
    "reports SERVING on health checks",
    "parses a molecule, with provenance",
    "refuses a bad SMILES with INVALID_ARGUMENT and a field violation",
    "streams ParseMolecules in order, with per-item errors",
    "is clients/service_config.json",
    "is refused by grpc-js when broken, and accepted as it is",
    "retries UNAVAILABLE and RESOURCE_EXHAUSTED",
    "retries nothing when absent",
    "does not retry INVALID_ARGUMENT",
    "sends its 30 s default timeout as the deadline",
    "bounds retries by maxAttempts and throttles them",
}
"""Every TypeScript test, so that one lost (renamed, or never compiled) fails here."""


@pytest.fixture(scope="module")
def typescript_client() -> str:
    """The node command, with the client, its tests and its example compiled into dist/
    by `tsc` (strict; see tsconfig.json). A compile error fails every test here."""
    command = node()
    shutil.rmtree(DIST, ignore_errors=True)  # no stale output of deleted sources
    tsc = TS_PACKAGE / "node_modules" / ".bin" / "tsc"
    done = run([str(tsc), "-p", "tsconfig.json"], TS_PACKAGE)
    if done.returncode != 0:
        pytest.fail(f"tsc exited {done.returncode}:\n{done.stdout}", pytrace=False)
    return command


def test_generated_typescript_code_is_up_to_date() -> None:
    drift = client_drift("clients/typescript/")
    assert not drift, f"run `make proto`; out of date: {', '.join(drift)}"


def test_typescript_tests_pass_against_the_server(
    typescript_client: str, server: RunningServer
) -> None:
    tests = sorted(str(p.relative_to(TS_PACKAGE)) for p in (DIST / "test").glob("*.test.js"))
    done = run(
        [typescript_client, "--test", "--test-reporter=tap", *tests],
        TS_PACKAGE,
        {**os.environ, "QULAB_ADDRESS": server.address},
    )
    assert done.returncode == 0, done.stdout
    passed = set(re.findall(r"^\s*ok \d+ - (.+)$", done.stdout, re.MULTILINE))
    assert passed >= TS_TESTS, done.stdout
    for count in ("fail", "cancelled", "skipped", "todo"):
        assert f"# {count} 0" in done.stdout, done.stdout


def test_typescript_example_runs_against_the_server(
    typescript_client: str, server: RunningServer
) -> None:
    done = run(
        [typescript_client, "dist/examples/parse.js"],
        TS_PACKAGE,
        {**os.environ, "QULAB_ADDRESS": server.address},
    )
    assert done.returncode == 0, done.stdout
    assert example_lines(done.stdout) == expected_example_lines("INVALID_ARGUMENT"), done.stdout
