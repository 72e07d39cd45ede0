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
from grpc_reflection.v1alpha.reflection import SERVICE_NAME as REFLECTION_SERVICE

from qulab.server import provenance, reflection
from qulab.server.cache import ResultCache
from qulab.server.config import Settings, SettingsError
from qulab.server.health import Health
from qulab.server.interceptors import Interceptors
from qulab.server.metrics import Metrics
from qulab.server.services._rpc import Rpc
from qulab.server.services.molecules import SERVICE as MOLECULE_SERVICE
from qulab.server.services.molecules import MoleculeServicer
from qulab.server.services.server_info import SERVICE as SERVER_SERVICE
from qulab.server.services.server_info import ServerInfoServicer
from qulab.server.services.spectra import SPECTRUM_SERVICE, UNIT_SERVICE, SpectrumServicer
from qulab.server.services.structures import SERVICE as STRUCTURE_SERVICE
from qulab.server.services.structures import StructureServicer
from qulab.server.services.tools import SERVICE as TOOL_SERVICE
from qulab.server.services.tools import ToolServicer
from qulab.server.status import ServerStatus
from qulab.server.telemetry import Tracing
from qulab.server.tls import server_credentials
from qulab.server.tools import Catalogue
from qulab.server.workers.pool import WorkerPool

__all__ = ["SERVICES", "Server", "serve"]

_log = logging.getLogger("qulab.server")
SERVICES = (
    MOLECULE_SERVICE,
    STRUCTURE_SERVICE,
    SPECTRUM_SERVICE,
    UNIT_SERVICE,
    SERVER_SERVICE,
    TOOL_SERVICE,
)
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
    interceptors: Interceptors
    port: int
    background: list[asyncio.Task[None]]
    tracing: Tracing | None = None
    metrics_port: int | None = None

    async def reload_credentials(self, trigger: str) -> None:
        if self.interceptors.auth is not None:
            await self.interceptors.auth.reload(trigger)
        else:
            _log.info("no credential files to reload", extra={"trigger": trigger})

    async def drain(self) -> None:
        _log.info(
            "draining",
            extra={"grace_s": self.settings.drain_grace_s, "in_flight": self.rpc.in_flight},
        )
        await self.health.drain()
        self.rpc.draining = True
        for task in self.background:
            task.cancel()
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
        if self.tracing is not None:
            # Export the last spans; the batch exporter blocks, so off the event loop.
            await asyncio.get_running_loop().run_in_executor(None, self.tracing.shutdown)
        _log.info("stopped")


async def start(settings: Settings, tracing: Tracing | None = None) -> Server:
    """Start serving; SettingsError when a credentials or TLS file does not load.
    `tracing` comes from the OTEL_* variables (`Tracing.from_env`); None is off."""
    interceptors = Interceptors.build(settings)
    credentials = server_credentials(settings)
    health = Health(SERVICES)
    await health.start()
    pool = WorkerPool(settings, on_serving_change=health.on_pool_change)
    metrics = Metrics() if settings.metrics else None
    rpc = Rpc(settings, pool, ResultCache(settings.cache_mb * _MIB), interceptors, tracing, metrics)
    status = ServerStatus(settings, pool, rpc, interceptors, tracing)
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
        *_connection_age_options(settings),
    ]
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=settings.max_concurrent_rpcs)
    handlers = [
        MoleculeServicer(rpc).handler(),
        StructureServicer(rpc).handler(),
        *SpectrumServicer(rpc).handlers(),
        ServerInfoServicer(rpc, status).handler(),
    ]
    # The tools are those of the methods just registered, so a new RPC is a tool at once.
    catalogue = Catalogue(rpc.registered, max_batch_items=settings.max_batch_items)
    handlers.append(ToolServicer(rpc, catalogue).handler())
    server.add_generic_rpc_handlers(handlers)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    if settings.reflection:
        reflection.enable([*SERVICES, _HEALTH_SERVICE, REFLECTION_SERVICE], server)
    # Both ports are taken before any worker starts, so a port in use stops the start
    # with its setting named, and nothing to clean up.
    try:
        if credentials is None:
            port = server.add_insecure_port(settings.address)
        else:
            port = server.add_secure_port(settings.address, credentials)
    except RuntimeError:  # gRPC says only "Failed to bind"
        raise SettingsError(
            f"QULAB_HOST/QULAB_PORT: cannot listen on {settings.address} (in use?)"
        ) from None
    metrics_port = None
    if metrics is not None:
        metrics.watch(status)
        try:
            metrics_port = metrics.serve(settings.host, settings.metrics_port)
        except OSError as exc:
            raise SettingsError(
                f"QULAB_METRICS_PORT: cannot listen on {settings.host}:{settings.metrics_port}"
                f" ({exc.strerror})"
            ) from None
    await pool.start()
    await server.start()
    background = []
    if interceptors.auth is not None:
        background.append(asyncio.create_task(interceptors.auth.watch()))
    started = Server(
        settings, server, pool, health, rpc, interceptors, port, background, tracing, metrics_port
    )
    _log.info(
        "listening",
        extra={
            "host": settings.host,
            "port": port,
            "workers": pool.size,
            "versions": provenance.library_versions(),
            "server_version": provenance.SERVER_VERSION,
            "tls": "mtls" if settings.tls_client_ca_file else "tls" if credentials else "off",
            "auth": "required" if interceptors.auth is not None else "off",
            "metrics_port": started.metrics_port,
            "tracing": tracing is not None,
        },
    )
    return started


def _connection_age_options(settings: Settings) -> list[tuple[str, int]]:
    """gRPC core's connection-age options, each left out when its setting is 0: gRPC's
    own default for both is for ever."""
    options = []
    if settings.max_connection_age_s > 0:
        options.append(("grpc.max_connection_age_ms", _ms(settings.max_connection_age_s)))
    if settings.max_connection_age_grace_s > 0:
        options.append(
            ("grpc.max_connection_age_grace_ms", _ms(settings.max_connection_age_grace_s))
        )
    return options


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


async def serve(settings: Settings, tracing: Tracing | None = None) -> None:
    """Run until SIGTERM or SIGINT, then drain and return. SIGHUP reloads credentials.

    The handlers are installed before the start, so that a SIGTERM that arrives while the
    server starts (or just after it logs "listening") still drains it rather than
    killing it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started: list[Server] = []
    reloads: set[asyncio.Task[None]] = set()

    def reload() -> None:
        if started:  # before the start, the files are about to be read anyway
            task = loop.create_task(started[0].reload_credentials("SIGHUP"))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    started.append(await start(settings, tracing))
    await stop.wait()
    await started[0].drain()
