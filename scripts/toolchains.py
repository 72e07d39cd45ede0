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

Two more kinds of install, for tools that are not Go `tool` lines or npm packages: a Python
tool whose dependencies clash with the project's gets a virtual environment of its own from
a hash-pinned requirements file (`install_python_env`), and a file shipped inside a Go
module is fetched with `go mod download`, checked against its go.sum hash
(`download_go_module`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = [
    "GO_CANDIDATES",
    "INSTALL_TIMEOUT_S",
    "TOOLS_BIN",
    "TOOLS_DIR",
    "ToolchainUnavailable",
    "download_go_module",
    "find_go",
    "find_node",
    "go_env",
    "install_go_tools",
    "install_npm_packages",
    "install_python_env",
    "locked",
    "pinned_version",
    "require_go",
    "run_bounded",
    "run_logged",
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


def require_go() -> str:
    """The go command; ToolchainUnavailable when there is none."""
    go = find_go()
    if go is None:
        raise ToolchainUnavailable(f"Go is not installed (looked for {', '.join(GO_CANDIDATES)})")
    return go


def pinned_version(module_folder: Path, module: str) -> str:
    """The version `module_folder`/go.mod pins `module` (a module path) at."""
    for line in (module_folder / "go.mod").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == module:
            return fields[1]
    raise ToolchainUnavailable(f"{module} is not pinned in {module_folder / 'go.mod'}")


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
    go = require_go()
    with locked():
        if not _stamped(stamp, digest, outputs):  # unless another process built them meanwhile
            TOOLS_BIN.mkdir(parents=True, exist_ok=True)
            env = {**go_env(), "GOBIN": str(TOOLS_BIN)}
            run_logged([go, "install", "tool"], TOOLS_DIR / f"{log_name}.log", cwd=module, env=env)
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
    with locked():
        if not _stamped(stamp, digest, [expected]):
            # No install scripts: nothing of ours needs one, and a registry package's script
            # is code we did not pin.
            argv = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
            run_logged(argv, TOOLS_DIR / f"{log_name}.log", cwd=package)
            if not expected.is_file():
                raise ToolchainUnavailable(f"`npm ci` did not install {expected}")
            stamp.write_text(digest)
    return node_modules


def install_python_env(pins: Path, env_dir: Path, executable: str) -> Path:
    """`env_dir`/bin/`executable`, from a virtual environment of its own holding exactly
    the hash-pinned requirements file `pins` (`uv pip compile --generate-hashes`),
    installed now if the pins changed since the last install."""
    command = env_dir / "bin" / executable
    stamp = env_dir / ".pins.sha256"
    digest = _digest(pins.parent, (pins.name,))
    if _stamped(stamp, digest, [command]):
        return command
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise ToolchainUnavailable("uv is not installed (make setup installs it into .venv)")
    log = TOOLS_DIR / f"{env_dir.name}-install.log"
    with locked():
        if not _stamped(stamp, digest, [command]):
            shutil.rmtree(env_dir, ignore_errors=True)
            base = getattr(sys, "_base_executable", sys.executable)
            run_logged([uv, "venv", "--quiet", "--python", base, str(env_dir)], log)
            python = str(env_dir / "bin" / "python")
            run_logged(
                [uv, "pip", "sync", "--quiet", "--require-hashes", "--python", python, str(pins)],
                log,
                timeout=2 * INSTALL_TIMEOUT_S,  # a large tool's wheels, downloaded once
            )
            if not command.is_file():
                raise ToolchainUnavailable(f"installing {pins} did not produce {command}")
            stamp.write_text(digest)
    return command


def download_go_module(module: str, version: str, go_sum_hash: str) -> Path:
    """The folder of `module`@`version` in Go's module cache (downloaded now if needed),
    once its hash is the go.sum line's `go_sum_hash`."""
    go = require_go()
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    output = run_logged(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        TOOLS_DIR / "go-mod-download.log",
        cwd=TOOLS_DIR,  # no go.mod here or above: a plain module download
        env={**go_env(), "GOFLAGS": "-mod=mod"},
    )
    info = json.loads(output)
    if "Error" in info:
        raise ToolchainUnavailable(f"go mod download {module}@{version}: {info['Error']}")
    if info.get("Sum") != go_sum_hash:
        raise ToolchainUnavailable(
            f"{module}@{version} has hash {info.get('Sum')}, not {go_sum_hash}"
        )
    return Path(info["Dir"])


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the install lock: one install at a time across processes."""
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_logged(
    argv: Sequence[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = INSTALL_TIMEOUT_S,
) -> str:
    """Run an install step to its end and return its standard output; the command and
    its stderr (and its stdout too) are appended to `log_path`. Past `timeout` it is
    stopped, with everything it started, and ToolchainUnavailable says so, as it does
    when the step fails."""
    what = " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        log.write(f"$ {what}\n")
        log.flush()
        try:
            done = run_bounded(argv, timeout=timeout, cwd=cwd, env=env, stderr=log)
        except subprocess.TimeoutExpired:
            raise ToolchainUnavailable(
                f"`{what}` took over {timeout:.0f} s (log: {log_path})"
            ) from None
        log.write(done.stdout)
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise ToolchainUnavailable(
            f"`{what}` exited {done.returncode} (log: {log_path}): " + " | ".join(tail)
        )
    return done.stdout


def run_bounded(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stderr: int | IO[str] = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end, its stdout captured (`stderr` as subprocess takes it).
    Past `timeout` it is stopped with everything it started (compilers, test binaries:
    it runs in a session of its own) and subprocess.TimeoutExpired is raised, with the
    output it wrote."""
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )
    try:
        output, errors = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, errors = process.communicate()
        raise subprocess.TimeoutExpired(list(argv), timeout, output, errors) from None
    return subprocess.CompletedProcess(list(argv), process.returncode, output, errors)


def _digest(folder: Path, names: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def _stamped(stamp: Path, digest: str, outputs: Sequence[Path]) -> bool:
    return all(p.is_file() for p in outputs) and stamp.is_file() and stamp.read_text() == digest
