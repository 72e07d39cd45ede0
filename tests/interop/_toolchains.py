"""Go and Node, for the tests of the generated Go and TypeScript clients and of the Go
tools (tests/interop/conftest.py).

`scripts.proto` generates those clients and owns their pins (the Go plugins from
`clients/go/go.mod`, ts-proto from `clients/typescript/package-lock.json`), installed by
`scripts.toolchains`. When a toolchain is missing or an install fails, the tests are
skipped with the reason, except under CI (the `CI` variable set), where they fail with it:
there, a client nobody could test must not pass for a tested one.
"""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from rdkit import Chem

from scripts import proto, toolchains
from scripts.toolchains import INSTALL_TIMEOUT_S
from tests.conftest import tool_unavailable as unavailable

__all__ = [
    "GO_MODULE",
    "INSTALL_TIMEOUT_S",
    "RUN_TIMEOUT_S",
    "TS_PACKAGE",
    "client_drift",
    "example_lines",
    "expected_example_lines",
    "go",
    "go_env",
    "node",
    "run",
    "unavailable",
]

RUN_TIMEOUT_S = 420.0
"""Bound on one build or test run; the first `go vet` compiles grpc-go (a minute or two on
two cores with an empty build cache)."""


GO_MODULE = proto.GO_MODULE
TS_PACKAGE = proto.TS_PACKAGE


def go() -> str:
    """The go command."""
    found = toolchains.find_go()
    if found is None:
        unavailable(f"Go is not installed (looked for {', '.join(toolchains.GO_CANDIDATES)})")
    return found


def go_env(**extra: str) -> dict[str, str]:
    """The environment Go runs in for the clients (no toolchain download, read-only
    go.mod), plus `extra`."""
    return {**toolchains.go_env(), **extra}


def node() -> str:
    """The node command, once clients/typescript/node_modules is installed."""
    try:
        path = toolchains.find_node()[0]
        proto.ensure_node_modules()
    except toolchains.ToolchainUnavailable as why:
        unavailable(str(why))
    return path


@functools.cache
def _drift() -> tuple[str, ...] | str:
    """The drifted generated files, or why they could not be generated (once per run)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return tuple(proto.client_drift(Path(tmp)))
        except toolchains.ToolchainUnavailable as why:
            return str(why)


def client_drift(prefix: str) -> list[str]:
    """The generated files under `prefix` (e.g. "clients/go/") that differ from what
    `make proto` would write now."""
    drift = _drift()
    if isinstance(drift, str):
        unavailable(drift)
    return [path for path in drift if path.startswith(prefix)]


def run(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = RUN_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end, its stderr merged into its stdout; past `timeout`, stop it
    and everything it started (compilers, test binaries) and fail the test."""
    try:
        return toolchains.run_bounded(
            argv, timeout=timeout, cwd=cwd, env=env, stderr=subprocess.STDOUT
        )
    except subprocess.TimeoutExpired as overrun:
        pytest.fail(
            f"`{' '.join(argv)}` took over {timeout:.0f} s:\n{overrun.output}", pytrace=False
        )


def _canonical(smiles: str) -> str:
    return str(Chem.MolToSmiles(Chem.MolFromSmiles(smiles)))


def expected_example_lines(invalid_argument: str) -> list[str]:
    """What each client's example prints (`invalid_argument`: how its language names the
    code), canonical SMILES as RDKit here writes them; the request id and the message of
    the error are left out."""
    aspirin = "CC(=O)Oc1ccccc1C(=O)O"
    return [
        f"aspirin: {_canonical(aspirin)} C9H8O4 BSYNRYMUTXBXSQ-UHFFFAOYSA-N",
        f"ethanol: {_canonical('OCC')}",
        f"benzene: {_canonical('C1=CC=CC=C1')}",
        f"broken: {invalid_argument}:",
        '  field "smiles": INVALID_SMILES',
        f"caffeine: {_canonical('CN1C=NC2=C1C(=O)N(C(=O)N2C)C')}",
    ]


def example_lines(output: str) -> list[str]:
    """The example's output, less what changes from run to run (see above)."""
    lines = output.splitlines()
    lines[0:1] = [re.sub(r" \(request \w+\)$", "", line) for line in lines[0:1]]
    return [re.sub(r"^(broken: \w+:).*", r"\1", line) for line in lines]
