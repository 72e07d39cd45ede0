"""A real Prometheus server for tests that check what it scrapes from QuLab.

The binary comes from Debian's `prometheus` package: `apt-get download` fetches the .deb
(whatever version the mirror has) and `dpkg-deb -x` unpacks it under `.tools/prometheus/`
(git-ignored with the rest of `.tools/`), once per checkout. When the system's package
lists do not know the package (a container that deleted them) or cannot be read, the lists
are fetched into that folder instead of /var/lib/apt, which needs no root. A file lock
makes concurrent callers wait for one download.

When it cannot be had, the tests that need it are skipped with the reason, except under CI
(the `CI` variable set), where they fail with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

CACHE = ROOT / ".tools" / "prometheus"
BINARY = CACHE / "root" / "usr" / "bin" / "prometheus"
FETCH_LOG = CACHE / "fetch.log"
FETCH_TIMEOUT_S = 300.0
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
_LOCK = CACHE / ".lock"
_APT_STATE = CACHE / "apt"


def binary() -> Path:
    """The unpacked `prometheus` binary, fetched on first use; skips (fails under CI)
    when it cannot be had."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _runs(BINARY):
            failure = _fetch()
            if failure is None and not _runs(BINARY):
                failure = f"{BINARY} does not run (log: {FETCH_LOG})"
            if failure is not None:
                _unavailable(failure)
    return BINARY


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"Prometheus unavailable (CI is set): {reason}", pytrace=False)
    pytest.skip(f"Prometheus unavailable: {reason}")


def _runs(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        result = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _fetch() -> str | None:
    """Download and unpack the package into CACHE; the reason it failed, or None."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (not a Debian-based system?)"
    with FETCH_LOG.open("w") as log, tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        work = Path(scratch)
        # The system's lists first; then lists of our own (no root needed, /var untouched).
        if _apt(["download", "prometheus"], work, log) != 0:
            private = [
                "-o",
                f"Dir::State::Lists={_APT_STATE / 'lists'}",
                "-o",
                f"Dir::Cache={_APT_STATE / 'cache'}",
                "-o",
                "Debug::NoLocking=true",
            ]
            (_APT_STATE / "lists" / "partial").mkdir(parents=True, exist_ok=True)
            (_APT_STATE / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
            if _apt([*private, "update"], work, log) != 0:
                return f"`apt-get update` failed (log: {FETCH_LOG})"
            if _apt([*private, "download", "prometheus"], work, log) != 0:
                return f"`apt-get download prometheus` failed (log: {FETCH_LOG})"
        debs = sorted(work.glob("prometheus_*.deb"))
        if not debs:
            return f"`apt-get download prometheus` left no .deb (log: {FETCH_LOG})"
        unpacked = work / "root"
        if _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], work, log) != 0:
            return f"`dpkg-deb -x {debs[0].name}` failed (log: {FETCH_LOG})"
        shutil.rmtree(CACHE / "root", ignore_errors=True)
        os.replace(unpacked, CACHE / "root")
        log.write(f"unpacked {debs[0].name} into {CACHE / 'root'}\n")
    return None


def _apt(args: list[str], cwd: Path, log: Any) -> int:
    return _run(["apt-get", "-q", *args], cwd, log)


def _run(argv: list[str], cwd: Path, log: Any) -> int:
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    try:
        return subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=FETCH_TIMEOUT_S,
            check=False,
        ).returncode
    except subprocess.TimeoutExpired:
        log.write(f"timed out after {FETCH_TIMEOUT_S:.0f} s\n")
        return -1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Prometheus:
    """A running Prometheus that scrapes one target every second."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector; raises on anything but `status: success`."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(address, timeout=10) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as error:  # a bad query is a 400 with a JSON error
            with error:
                body = json.load(error)
        assert body.get("status") == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for_value(self, expr: str, expected: float, timeout: float = 30.0) -> None:
        """Poll `expr` (one-sample result) until it equals `expected`."""
        end = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < end:
            seen = self.query(expr)
            if len(seen) == 1 and float(seen[0]["value"][1]) == expected:
                return
            time.sleep(0.25)
        raise AssertionError(f"{expr} is {seen}, not {expected}, after {timeout} s")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def scraping(target: str, workdir: Path) -> Iterator[Prometheus]:
    """Run Prometheus scraping `target` (host:port, path /metrics) every second, with its
    data in `workdir`; it is stopped on leaving, whatever happened."""
    executable = binary()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: qulab\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = _free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(executable),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    prometheus = Prometheus(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_ready(prometheus)
        yield prometheus
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(prometheus: Prometheus) -> None:
    end = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < end:
        if prometheus.process.poll() is not None:
            raise AssertionError(
                f"Prometheus exited with {prometheus.process.returncode}:\n" + prometheus.log_tail()
            )
        try:
            with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as error:  # 503 while it loads
            error.close()
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    raise AssertionError(
        f"Prometheus not ready after {READY_TIMEOUT_S:.0f} s:\n" + prometheus.log_tail()
    )
