"""The server under test: `python -m qulab.server` as a subprocess on 127.0.0.1.

Started with the given QULAB_* settings on an ephemeral port; ready when it logs its
"listening" line (which carries the port). Its log (one JSON line per call) is read by a
thread and only the last lines are kept, for the error message if it dies. Always stopped
on leaving the `running_server` block: SIGTERM (it drains), then SIGKILL if it lingers.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO

from bench._corpus import ROOT

__all__ = ["ServerProcess", "running_server"]

_START_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ServerProcess:
    pid: int
    address: str


class _LogReader(threading.Thread):
    def __init__(self, stream: IO[str]) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self.tail: collections.deque[str] = collections.deque(maxlen=50)
        self.port: int | None = None
        self.listening = threading.Event()

    def run(self) -> None:
        for line in self._stream:
            self.tail.append(line.rstrip("\n"))
            if self.port is None and '"listening"' in line:
                with contextlib.suppress(ValueError, KeyError):
                    self.port = int(json.loads(line)["port"])
                    self.listening.set()
        self.listening.set()  # the server exited: stop waiting


@contextlib.contextmanager
def running_server(settings: Mapping[str, str]) -> Iterator[ServerProcess]:
    """A started server with `settings` (QULAB_* names) on top of QULAB_PORT=0."""
    # Only the settings given: no QULAB_* and no OTEL_* from the shell (a stray OTLP
    # endpoint would make every benchmark trace).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QULAB_", "OTEL_"))}
    env.update(
        {
            "QULAB_HOST": "127.0.0.1",
            "QULAB_PORT": "0",
            "QULAB_METRICS_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(settings)
    process = subprocess.Popen(
        [sys.executable, "-m", "qulab.server"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    log = _LogReader(process.stdout)
    log.start()
    try:
        if not log.listening.wait(_START_TIMEOUT_S) or log.port is None:
            raise RuntimeError("the server did not start:\n" + "\n".join(log.tail))
        yield ServerProcess(pid=process.pid, address=f"127.0.0.1:{log.port}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.join(5)
