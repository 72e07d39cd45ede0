"""Fixtures that start the real server: `python -m qulab.server` on an ephemeral port,
all of it on (workers, health, reflection), its JSON log captured line by line; and the
one rule for tests whose outside tool (Go, Node, helm...) cannot be had."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
_START_TIMEOUT_S = 120.0


def tool_unavailable(reason: str) -> NoReturn:
    """Skip the test that needs an outside tool, or under CI (the `CI` variable set) fail
    it: there, something nobody could check must not pass for checked."""
    if os.environ.get("CI"):
        pytest.fail(f"tool unavailable (CI is set): {reason}", pytrace=False)
    pytest.skip(f"tool unavailable: {reason}")


class RunningServer:
    """A server process and what it logged. `argv` starts it some other way than
    `python -m qulab.server` (in a sandbox, say); `env` is added to this process's."""

    def __init__(
        self, env: Mapping[str, str], argv: Sequence[str] = (), cwd: Path | None = None
    ) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("QULAB_")}
        full_env.update(
            {
                "QULAB_PORT": "0",
                "QULAB_METRICS_PORT": "0",
                "QULAB_WORKERS": "2",
                "PYTHONUNBUFFERED": "1",
            }
        )
        full_env.update(env)
        self.process = subprocess.Popen(
            list(argv) or [sys.executable, "-m", "qulab.server"],
            env=full_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.logs: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._listening = threading.Event()
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.process.stdout, self.process.stderr)
        ]
        for reader in self._readers:
            reader.start()
        if not self._listening.wait(_START_TIMEOUT_S) or self.process.poll() is not None:
            self.stop(signal.SIGKILL)
            raise RuntimeError("server did not start:\n" + "\n".join(self.raw[-50:]))
        listening = next(e for e in self.logs if e.get("message") == "listening")
        self.port: int = listening["port"]
        self.metrics_port: int | None = listening.get("metrics_port")
        self.address = f"127.0.0.1:{self.port}"

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.raw.append(line.rstrip("\n"))
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            self.logs.append(entry)
            if entry.get("message") == "listening":
                self._listening.set()

    def log_entries(self, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.logs if all(e.get(k) == v for k, v in match.items())]

    def wait_for_log(self, timeout: float = 30.0, count: int = 1, **match: Any) -> dict[str, Any]:
        """The first log entry with these fields, once `count` of them have been logged.
        (`queued` and `task sent` entries need QULAB_LOG_LEVEL=DEBUG.)"""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = self.log_entries(**match)
            if len(found) >= count:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"fewer than {count} log entries matching {match}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            # Closed whatever happened: a pipe left open is a ResourceWarning that pytest
            # pins on whichever later test the garbage collector happens to run in.
            for reader in self._readers:
                reader.join(5)
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()


def run_server_once(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m qulab.server` with these settings, run to its end: for starts that must
    fail (a bad setting, a port in use). QULAB_METRICS_PORT=0 unless `env` says."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QULAB_")}
    full_env.update({"QULAB_PORT": "0", "QULAB_METRICS_PORT": "0", "QULAB_WORKERS": "1"})
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "qulab.server"],
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_START_TIMEOUT_S,
    )


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    """One server shared by the tests that do not change its settings or its workers."""
    running = RunningServer({})
    yield running
    assert running.stop() == 0


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    """Start a server of one's own, with settings; it is stopped after the test."""
    started: list[RunningServer] = []

    def start(**settings: str) -> RunningServer:
        running = RunningServer({f"QULAB_{k.upper()}": v for k, v in settings.items()})
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop(signal.SIGKILL if running.process.poll() is None else signal.SIGTERM)
