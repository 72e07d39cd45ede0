"""Wiring: settings -> worker pool -> servicers, health, reflection -> grpc.aio server,
and the life cycle: start, serve, drain on SIGTERM/SIGINT, stop.

Drain, in order: health NOT_SERVING for every name; refuse new calls with UNAVAILABLE
(at once, so clients fail over; grpc's own stop() would leave late callers hanging or
cancelled); let admitted calls finish within `drain_grace_s`; stop the gRPC server and the
workers. Nothing admitted is dropped unless the grace period runs out.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from qulab.server import provenance
from qulab.server.cache import ResultCache
from qulab.server.config import Settings
from qulab.server.health import Health
from qulab.server.services._rpc import Rpc
from qulab.server.services.molecules import SERVICE as MOLECULE_SERVICE
from qulab.server.services.molecules import MoleculeServicer
from qulab.server.services.spectra import SPECTRUM_SERVICE, UNIT_SERVICE, SpectrumServicer
from qulab.server.services.structures import SERVICE as STRUCTURE_SERVICE
from qulab.server.services.structures import StructureServicer
from qulab.server.workers.pool import WorkerPool

__all__ = ["SERVICES", "Server", "serve"]

_log = logging.getLogger("qulab.server")
SERVICES = (MOLECULE_SERVICE, STRUCTURE_SERVICE, SPECTRUM_SERVICE, UNIT_SERVICE)
_MIB = 1024 * 1024
_HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


@dataclass
class Server:
    """A started server: its port, and what `drain` needs."""

    settings: Settings
    grpc_server: grpc.aio.Server
    pool: WorkerPool
    health: Health
    rpc: Rpc
    port: int

    async def drain(self) -> None:
        _log.info(
            "draining",
            extra={"grace_s": self.settings.drain_grace_s, "in_flight": self.rpc.in_flight},
        )
        await self.health.drain()
        self.rpc.draining = True
        try:
            await asyncio.wait_for(self.rpc.idle.wait(), self.settings.drain_grace_s)
        except TimeoutError:
            _log.warning(
                "drain grace period over; cancelling the calls left",
                extra={"in_flight": self.rpc.in_flight},
            )
        # Health Watch streams never end by themselves; stop(0) ends them with the rest.
        await self.grpc_server.stop(0)
        await self.pool.close()
        _log.info("stopped")


async def start(settings: Settings) -> Server:
    health = Health(SERVICES)
    await health.set_serving(False)
    pool = WorkerPool(settings, on_serving_change=health.on_pool_change)
    rpc = Rpc(settings, pool, ResultCache(settings.cache_mb * _MIB))
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
        # gRPC core cancels calls waiting to be picked up by the application past a soft
        # limit (default 1,000; measured: ~1,100 calls at once gave CANCELLED with no log
        # line). A flood must instead be refused with a status: by the concurrency cap
        # (RESOURCE_EXHAUSTED) or the admission queue (the same, with a retry pushback).
        # gRPC still has to pick a call up to refuse it, so the pending limit sits well
        # above the cap.
        ("grpc.server.max_pending_requests", 8 * settings.max_concurrent_rpcs),
        ("grpc.server.max_pending_requests_hard_limit", 16 * settings.max_concurrent_rpcs),
    ]
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=settings.max_concurrent_rpcs)
    server.add_generic_rpc_handlers(
        [
            MoleculeServicer(rpc).handler(),
            StructureServicer(rpc).handler(),
            *SpectrumServicer(rpc).handlers(),
        ]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    if settings.reflection:
        reflection.enable_server_reflection(
            [*SERVICES, _HEALTH_SERVICE, reflection.SERVICE_NAME], server
        )
    port = server.add_insecure_port(settings.address)
    await pool.start()
    await server.start()
    _log.info(
        "listening",
        extra={
            "host": settings.host,
            "port": port,
            "workers": pool.size,
            "versions": provenance.library_versions(),
            "server_version": provenance.SERVER_VERSION,
        },
    )
    return Server(settings, server, pool, health, rpc, port)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain and return."""
    server = await start(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.drain()
