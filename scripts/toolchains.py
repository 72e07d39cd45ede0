"""Installing the pinned tools the project builds for itself, in one way for every caller.

Go tools are the `tool` lines of a go.mod of ours (go.sum beside it holds their checksums)
and are built with `GOBIN=.tools/bin go install tool`; npm packages come from a
package-lock.json with `npm ci`. A go.mod of our own rather than `go install
module@version`: the latter also asks the module proxy for the module's version list (to
look for a deprecation notice), which the proxy refuses for some modules; installing from a
go.mod with a go.sum needs nothing but the pinned modules themselves.

Each install happens once per checkout: a stamp records the hash of its pin files, so
changing a pin reinstalls. Installs are serialised by a lock file (a test run, a bench run
and `make proto` may start together), bounded in time (everything the install started is
stopped past INSTALL_TIMEOUT_S) and logged under `.tools/`. `ToolchainUnavailable` says why
a tool cannot be had here; what to do then (skip, fail under CI, carry on) is the caller's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "GO_CANDIDATES",
    "INSTALL_TIMEOUT_S",
    "TOOLS_BIN",
    "TOOLS_DIR",
    "ToolchainUnavailable",
    "find_go",
    "find_node",
    "go_env",
    "install_go_tools",
    "install_npm_packages",
]

ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = ROOT / ".tools"
TOOLS_BIN = TOOLS_DIR / "bin"
GO_CANDIDATES = ("go", "/usr/local/go/bin/go")
INSTALL_TIMEOUT_S = 300.0
"""Bound on one install (about a minute and a half for the biggest, with empty caches)."""
_LOCK = TOOLS_DIR / ".install.lock"


class ToolchainUnavailable(Exception):
    """Go, Node or npm is missing, or an install failed; the message says why."""


def find_go() -> str | None:
    for candidate in GO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def go_env() -> dict[str, str]:
    """The environment every Go command of ours runs in."""
    return {
        **os.environ,
        "GOTOOLCHAIN": "local",  # never download another Go toolchain
        "GOFLAGS": "-mod=readonly",  # build exactly what go.mod and go.sum pin
    }


def find_node() -> tuple[str, str]:
    """The paths of node and npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = [name for name, path in (("node", node), ("npm", npm)) if path is None]
        raise ToolchainUnavailable(f"{' and '.join(missing)} not found on PATH")
    return node, npm


def install_go_tools(module: Path, executables: Sequence[str], log_name: str) -> Path:
    """TOOLS_BIN, holding `executables` as the `tool` lines of `module`/go.mod pin them
    (built now if the pins changed since the last build)."""
    outputs = [TOOLS_BIN / name for name in executables]
    stamp = TOOLS_BIN / f".{log_name}.sha256"
    digest = _digest(module, ("go.mod", "go.sum"))
    if _stamped(stamp, digest, outputs):
        return TOOLS_BIN
    go = find_go()
    if go is None:
        raise ToolchainUnavailable(f"Go is not installed (looked for {', '.join(GO_CANDIDATES)})")
    with _locked():
        if not _stamped(stamp, digest, outputs):  # unless another process built them meanwhile
            TOOLS_BIN.mkdir(parents=True, exist_ok=True)
            env = {**go_env(), "GOBIN": str(TOOLS_BIN)}
            _run_logged([go, "install", "tool"], module, env, TOOLS_DIR / f"{log_name}.log")
            missing = [p.name for p in outputs if not p.is_file()]
            if missing:
                raise ToolchainUnavailable(f"`go install tool` did not produce {missing}")
            stamp.write_text(digest)
    return TOOLS_BIN


def install_npm_packages(package: Path, expected: Path, log_name: str) -> Path:
    """`package`/node_modules, installed with `npm ci` from package-lock.json (now, if the
    lock changed since the last install); `expected` is a file the install must produce."""
    node_modules = package / "node_modules"
    stamp = node_modules / f".{log_name}.sha256"
    digest = _digest(package, ("package.json", "package-lock.json"))
    if _stamped(stamp, digest, [expected]):
        return node_modules
    _, npm = find_node()
    with _locked():
        if not _stamped(stamp, digest, [expected]):
            # No install scripts: nothing of ours needs one, and a registry package's script
            # is code we did not pin.
            argv = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
            _run_logged(argv, package, dict(os.environ), TOOLS_DIR / f"{log_name}.log")
            if not expected.is_file():
                raise ToolchainUnavailable(f"`npm ci` did not install {expected}")
            stamp.write_text(digest)
    return node_modules


def _digest(folder: Path, names: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def _stamped(stamp: Path, digest: str, outputs: Sequence[Path]) -> bool:
    return all(p.is_file() for p in outputs) and stamp.is_file() and stamp.read_text() == digest


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_logged(argv: Sequence[str], cwd: Path, env: dict[str, str], log_path: Path) -> None:
    """Run an install command, its output to `log_path`, within INSTALL_TIMEOUT_S."""
    what = " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so a timeout can stop what it started too
        )
        try:
            code = process.wait(INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise ToolchainUnavailable(
                f"`{what}` took over {INSTALL_TIMEOUT_S:.0f} s (log: {log_path})"
            ) from None
    if code != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise ToolchainUnavailable(f"`{what}` exited {code} (log: {log_path}): " + " | ".join(tail))
