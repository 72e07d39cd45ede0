"""grpc.health.v1 for "" and every QuLab service, driven by the worker pool and the drain.

NOT_SERVING until the pool has a live worker, whenever it has none, and from the start
of a drain on (after which nothing sets it back).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2

__all__ = ["Health"]

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    def __init__(self, services: Sequence[str]) -> None:
        self.servicer = health.aio.HealthServicer()
        self._names = ["", *services]
        self._updates: set[asyncio.Task[None]] = set()

    async def set_serving(self, serving: bool) -> None:
        for name in self._names:
            await self.servicer.set(name, _SERVING if serving else _NOT_SERVING)

    def on_pool_change(self, serving: bool) -> None:
        """Callback for the pool (called from the event loop, not awaited)."""
        task = asyncio.get_running_loop().create_task(self.set_serving(serving))
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)

    async def drain(self) -> None:
        """NOT_SERVING for every name, for good."""
        await self.servicer.enter_graceful_shutdown()
