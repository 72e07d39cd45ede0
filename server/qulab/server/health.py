"""grpc.health.v1 for "" and every QuLab service, driven by the worker pool and the drain,
and one more name, `liveness`, for liveness probes.

The readiness names ("" and each service) are NOT_SERVING until the pool has a live worker,
whenever it has none, and from the start of a drain on (after which nothing sets them
back). `liveness` is SERVING from the start to the exit, through a drain too: it says only
that the process and its event loop answer, so that a liveness probe restarts a server that
hangs, never one that is draining or waiting for its workers (readiness keeps traffic away
from those).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2

__all__ = ["LIVENESS", "Health"]

LIVENESS = "liveness"
"""The health service name a liveness probe asks for."""

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    def __init__(self, services: Sequence[str]) -> None:
        self.servicer = health.aio.HealthServicer()
        self._names = ["", *services]
        self._draining = False
        self._updates: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """`liveness` SERVING, the readiness names NOT_SERVING until the pool says."""
        await self.servicer.set(LIVENESS, _SERVING)
        await self.set_serving(False)

    async def set_serving(self, serving: bool) -> None:
        for name in self._names:
            if self._draining:  # checked per name: a drain may begin while this awaits
                return
            await self.servicer.set(name, _SERVING if serving else _NOT_SERVING)

    def on_pool_change(self, serving: bool) -> None:
        """Callback for the pool (called from the event loop, not awaited)."""
        task = asyncio.get_running_loop().create_task(self.set_serving(serving))
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)

    async def drain(self) -> None:
        """NOT_SERVING for every readiness name, for good; `liveness` stays SERVING."""
        self._draining = True
        for name in self._names:
            await self.servicer.set(name, _NOT_SERVING)
