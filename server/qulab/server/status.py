"""The server's state beyond SERVING / NOT_SERVING: the degraded states an operator (or a
router) wants to know about before they become failures. Read by the metrics
(`qulab_degraded`) and by GetServerInfo; computed on demand, never on the call path."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import timestamp_pb2

from qulab.server import provenance
from qulab.server.config import Settings
from qulab.server.interceptors import Interceptors
from qulab.server.services._rpc import Rpc
from qulab.server.telemetry import Tracing
from qulab.server.workers.pool import WorkerPool
from qulab.v1 import server_pb2

__all__ = ["MEMORY_NEAR", "QUEUE_NEAR", "RESTARTS_MANY", "RESTARTS_WINDOW_S", "ServerStatus"]

QUEUE_NEAR = 0.8  # of the queue's capacity
MEMORY_NEAR = 0.8  # of a worker's address-space cap, or of the container's memory limit
RESTARTS_WINDOW_S = 60.0
RESTARTS_MANY = 3  # worker replacements within the window
_CGROUP = Path("/sys/fs/cgroup")
_MIB = 1 << 20


@dataclass
class ServerStatus:
    settings: Settings
    pool: WorkerPool
    rpc: Rpc
    interceptors: Interceptors
    tracing: Tracing | None = None
    started_ns: int = field(default_factory=time.time_ns)

    def degradations(self, largest_worker: int | None = None) -> list[tuple[str, str]]:
        """(reason, description) for each way the server is degraded now.
        `largest_worker`: the largest worker's address space, when already read."""
        found: list[tuple[str, str]] = []
        settings, pool = self.settings, self.pool
        if self.rpc.draining:
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
                (
                    "QUEUE_NEAR_CAPACITY",
                    f"{pool.queued} of {settings.queue_size} queue places taken",
                )
            )
        cap = settings.worker_memory_mb * _MIB
        largest = self.largest_worker() if largest_worker is None else largest_worker
        if cap and largest >= MEMORY_NEAR * cap:
            found.append(
                (
                    "WORKER_MEMORY_NEAR_CAP",
                    f"a worker uses {largest // _MIB} MiB of its {cap // _MIB} MiB",
                )
            )
        usage, limit = container_memory()
        if limit and usage >= MEMORY_NEAR * limit:
            found.append(
                (
                    "MEMORY_NEAR_LIMIT",
                    f"the container uses {usage // _MIB} MiB of its {limit // _MIB} MiB",
                )
            )
        return found

    def largest_worker(self) -> int:
        return max(worker_memory(self.pool.worker_pids), default=0)

    def info(self) -> server_pb2.GetServerInfoResponse:
        largest = self.largest_worker()  # read /proc once for both uses
        degradations = self.degradations(largest)
        pool, stats = self.pool, self.pool.stats
        if self.rpc.draining or not pool.alive:
            state = server_pb2.SERVER_STATE_NOT_SERVING
        elif degradations:
            state = server_pb2.SERVER_STATE_DEGRADED
        else:
            state = server_pb2.SERVER_STATE_SERVING
        started = timestamp_pb2.Timestamp()
        started.FromNanoseconds(self.started_ns)
        return server_pb2.GetServerInfoResponse(
            state=state,
            degradations=[server_pb2.Degradation(reason=r, description=d) for r, d in degradations],
            server_version=provenance.SERVER_VERSION,
            library_versions=provenance.library_versions(),
            started_time=started,
            rpcs_in_flight=self.rpc.in_flight,
            workers=server_pb2.WorkerPoolInfo(
                configured=pool.size,
                alive=pool.alive,
                restarts=stats.replaced,
                crashes=stats.crashed,
                deadline_kills=stats.overran,
                memory_cap_bytes=self.settings.worker_memory_mb * _MIB,
                largest_memory_bytes=largest,
            ),
            queue=server_pb2.QueueInfo(
                depth=pool.queued,
                capacity=self.settings.queue_size,
                expired=stats.expired_in_queue,
            ),
        )


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
