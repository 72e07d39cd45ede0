"""The Go tools QuLab is checked and measured with: grpcurl, grpc-health-probe and ghz.

Their versions are pinned in one place, `tests/interop/tools/go.mod` (its `tool` and
`require` lines; `go.sum` beside it holds their checksums), and they are built from it with
`GOBIN=.tools/bin go install tool`, by the interop tests (`tests/interop/conftest.py`) and
by the ghz benchmark (`bench.ghz`) alike. A module of our own rather than `go install
module@version`: the latter also asks the module proxy for the module's version list (to
look for a deprecation notice), which the proxy refuses for some of them; installing from a
go.mod with a go.sum needs nothing but the pinned modules themselves.

They are built once per checkout: a stamp in `.tools/bin` records the hash of go.mod and
go.sum, so changing a pin rebuilds them. The build's output goes to
`.tools/interop-install.log`; a lock file keeps two builds (a test run and a bench run) from
overlapping. `ensure_built` raises `Unavailable`, with the reason, when Go is missing or the
build fails; what to do then is the caller's choice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from bench._corpus import ROOT

__all__ = [
    "BIN",
    "GO_CANDIDATES",
    "INSTALL_LOG",
    "INSTALL_TIMEOUT_S",
    "TOOLS",
    "TOOLS_DIR",
    "TOOLS_MODULE",
    "Unavailable",
    "ensure_built",
    "find_go",
    "pinned_version",
]

TOOLS_MODULE = ROOT / "tests" / "interop" / "tools"
TOOLS_DIR = ROOT / ".tools"
BIN = TOOLS_DIR / "bin"
INSTALL_LOG = TOOLS_DIR / "interop-install.log"
INSTALL_TIMEOUT_S = 300.0
"""Bound on building the tools (about a minute and a half here with an empty module cache)."""
TOOLS = ("grpcurl", "grpc-health-probe", "ghz")
"""The executables `go install tool` puts in BIN: the last element of each tool path."""
GO_CANDIDATES = ("go", "/usr/local/go/bin/go")
_STAMP = BIN / ".interop-tools.sha256"
_LOCK = TOOLS_DIR / ".build.lock"


class Unavailable(Exception):
    """The tools cannot be had here; the message says why."""


def find_go() -> str | None:
    for candidate in GO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def pinned_version(module: str) -> str:
    """The version go.mod pins `module` (a module path, such as github.com/bojand/ghz) at."""
    for line in (TOOLS_MODULE / "go.mod").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == module:
            return fields[1]
    raise Unavailable(f"{module} is not pinned in {TOOLS_MODULE / 'go.mod'}")


def _pins_digest() -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((TOOLS_MODULE / name).read_bytes())
    return digest.hexdigest()


def _up_to_date(digest: str) -> bool:
    built = all((BIN / name).is_file() for name in TOOLS)
    return built and _STAMP.is_file() and _STAMP.read_text() == digest


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install(go: str) -> None:
    """Build the pinned tools into BIN."""
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
            raise Unavailable(
                f"`go install tool` took over {INSTALL_TIMEOUT_S:.0f} s (log: {INSTALL_LOG})"
            ) from None
    if code != 0:
        tail = INSTALL_LOG.read_text(errors="replace").strip().splitlines()[-5:]
        raise Unavailable(
            f"`go install tool` exited {code} (log: {INSTALL_LOG}): " + " | ".join(tail)
        )
    missing = [name for name in TOOLS if not (BIN / name).is_file()]
    if missing:
        raise Unavailable(f"`go install tool` did not produce {', '.join(missing)}")


def ensure_built() -> Path:
    """BIN, holding every tool of TOOLS built from the current pins (built now if not)."""
    digest = _pins_digest()
    if _up_to_date(digest):
        return BIN
    go = find_go()
    if go is None:
        raise Unavailable(f"Go is not installed (looked for {', '.join(GO_CANDIDATES)})")
    with _locked():
        if not _up_to_date(digest):  # unless another process built them while we waited
            _install(go)
            _STAMP.write_text(digest)
    return BIN
