"""Health beyond SERVING / NOT_SERVING: the degraded states an operator (or a router)
wants to know about before they become failures. Read by the metrics (`qulab_degraded`)
and by GetServerInfo; computed on demand, never on the call path."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qulab.server.app import Server

__all__ = ["QUEUE_NEAR", "degradations", "worker_memory"]

QUEUE_NEAR = 0.8  # of the queue's capacity
MEMORY_NEAR = 0.8  # of a worker's address-space cap, or of the container's memory limit
RESTARTS_WINDOW_S = 60.0
RESTARTS_MANY = 3  # worker replacements within the window
_CGROUP = Path("/sys/fs/cgroup")


def degradations(server: Server) -> list[tuple[str, str]]:
    """(reason, description) for each way the server is degraded now."""
    found: list[tuple[str, str]] = []
    settings, pool = server.settings, server.pool
    if server.rpc.draining:
        found.append(("DRAINING", "the server is shutting down"))
    if pool.alive < pool.size:
        found.append(("WORKERS_MISSING", f"{pool.alive} of {pool.size} workers are running"))
    restarts = pool.stats.replaced_within(RESTARTS_WINDOW_S)
    if restarts >= RESTARTS_MANY:
        found.append(
            (
                "WORKERS_RESTARTING",
                f"{restarts} workers replaced in the last {RESTARTS_WINDOW_S:g} s",
            )
        )
    if pool.queued >= QUEUE_NEAR * settings.queue_size:
        found.append(
            ("QUEUE_NEAR_CAPACITY", f"{pool.queued} of {settings.queue_size} queue places taken")
        )
    cap = settings.worker_memory_mb * 1024 * 1024
    largest = max(worker_memory(pool.worker_pids), default=0)
    if cap and largest >= MEMORY_NEAR * cap:
        found.append(
            ("WORKER_MEMORY_NEAR_CAP", f"a worker uses {largest >> 20} MiB of its {cap >> 20} MiB")
        )
    usage, limit = container_memory()
    if limit and usage >= MEMORY_NEAR * limit:
        found.append(
            ("MEMORY_NEAR_LIMIT", f"the container uses {usage >> 20} MiB of its {limit >> 20} MiB")
        )
    return found


def worker_memory(pids: list[int]) -> list[int]:
    """Each worker's address space in bytes (what its RLIMIT_AS cap counts)."""
    sizes = []
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmSize:"):
                    sizes.append(int(line.split()[1]) * 1024)
    return sizes


def container_memory() -> tuple[int, int]:
    """(usage, limit) in bytes from cgroup v2; limit 0 when there is none."""
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        usage = int((_CGROUP / "memory.current").read_text())
    except (OSError, ValueError):
        return 0, 0
    return usage, 0 if limit == "max" else int(limit)
