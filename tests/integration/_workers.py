"""The worker processes of a server under test, found through /proc."""

from __future__ import annotations

import time

from bench._cpu import descendants
from tests.conftest import RunningServer


def worker_pids(server: RunningServer, count: int, timeout: float = 30.0) -> list[int]:
    """The pids of the server's worker processes (children of its forkserver)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        tree = descendants(server.process.pid)
        found = [pid for pid in tree if is_worker(pid)]
        if len(found) == count:
            return sorted(found)
        time.sleep(0.05)
    raise AssertionError(f"expected {count} workers, found {found}")


def is_worker(pid: int) -> bool:
    """A live worker is a child of the server's forkserver."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and is_forkserver(int(fields[1]))


def is_forkserver(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"forkserver" in cmdline.read()
    except OSError:
        return False


def is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
