"""The Go tools the interop tests drive: grpcurl and grpc-health-probe.

Their versions are pinned in one place, `tests/interop/tools/go.mod` (its `tool` and
`require` lines; `go.sum` beside it holds their checksums), and they are built from it with
`GOBIN=.tools/bin go install tool`. A module of our own rather than `go install
module@version`: the latter also asks the module proxy for the module's version list (to
look for a deprecation notice), which the proxy refuses for grpc-health-probe; installing
from a go.mod with a go.sum needs nothing but the pinned modules themselves.

They are built once per checkout: a stamp in `.tools/bin` records the hash of go.mod and
go.sum, so changing a pin rebuilds them. The build's output goes to
`.tools/interop-install.log`. When Go is missing or the build fails, the tests are skipped
with the reason, except under CI (the `CI` variable set), where they fail with it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

TOOLS_MODULE = Path(__file__).resolve().parent / "tools"
TOOLS_DIR = ROOT / ".tools"
BIN = TOOLS_DIR / "bin"
INSTALL_LOG = TOOLS_DIR / "interop-install.log"
INSTALL_TIMEOUT_S = 300.0
"""Bound on building both tools (about a minute here with an empty module cache)."""
RUN_TIMEOUT_S = 30.0
_STAMP = BIN / ".interop-tools.sha256"
_GO_CANDIDATES = ("go", "/usr/local/go/bin/go")


@dataclass(frozen=True)
class GoTools:
    """The built tools; each call runs one and returns its exit code and output."""

    grpcurl_path: Path
    health_probe_path: Path

    def grpcurl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.grpcurl_path), *args])

    def health_probe(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.health_probe_path), *args])


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _unavailable(reason: str) -> None:
    """Skip, or under CI fail, every test that needs the tools."""
    if os.environ.get("CI"):
        pytest.fail(f"interop tools unavailable (CI is set): {reason}", pytrace=False)
    pytest.skip(f"interop tools unavailable: {reason}")


def _go() -> str | None:
    for candidate in _GO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _pins_digest() -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((TOOLS_MODULE / name).read_bytes())
    return digest.hexdigest()


def _install(go: str) -> str | None:
    """Build the pinned tools into BIN; the reason it failed, or None."""
    BIN.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GOBIN": str(BIN),
        "GOTOOLCHAIN": "local",  # never download another Go toolchain
        "GOFLAGS": "-mod=readonly",  # build exactly what go.mod and go.sum pin
    }
    with INSTALL_LOG.open("w") as log:
        process = subprocess.Popen(
            [go, "install", "tool"],
            cwd=TOOLS_MODULE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so a timeout can stop the compilers it started too
        )
        try:
            code = process.wait(INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return f"`go install tool` took over {INSTALL_TIMEOUT_S:.0f} s (log: {INSTALL_LOG})"
    if code != 0:
        tail = INSTALL_LOG.read_text(errors="replace").strip().splitlines()[-5:]
        return f"`go install tool` exited {code} (log: {INSTALL_LOG}): " + " | ".join(tail)
    return None


@pytest.fixture(scope="session")
def go_tools() -> GoTools:
    tools = GoTools(BIN / "grpcurl", BIN / "grpc-health-probe")
    built = [tools.grpcurl_path, tools.health_probe_path]
    digest = _pins_digest()
    if all(p.is_file() for p in built) and _STAMP.is_file() and _STAMP.read_text() == digest:
        return tools
    go = _go()
    if go is None:
        _unavailable(f"Go is not installed (looked for {', '.join(_GO_CANDIDATES)})")
    assert go is not None
    failure = _install(go)
    if failure is None and not all(p.is_file() for p in built):
        failure = f"`go install tool` did not produce {', '.join(p.name for p in built)}"
    if failure is not None:
        _unavailable(failure)
    _STAMP.write_text(digest)
    return tools
