"""What the sync and asyncio clients share: channel options (with the service config),
health checks, and the guard every call passes (circuit breaker, error translation)."""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2

from qulab.client.breaker import CircuitBreaker, Verdict
from qulab.client.errors import CircuitOpen, QulabError, Unavailable, from_rpc_error

DEFAULT_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 5.0
# A client must accept everything the server may send (its default cap is 16 MiB).
_DEFAULT_OPTIONS: dict[str, str | int] = {
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
}

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")
Metadata = Sequence[tuple[str, str | bytes]]
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def service_config() -> str:
    """The retry policy, retry throttling and default deadlines every QuLab client uses
    (clients/service_config.json, shipped inside this package)."""
    return importlib.resources.files("qulab.client").joinpath("service_config.json").read_text()


def channel_options(
    overrides: Sequence[tuple[str, str | int]], *, retries: bool
) -> list[tuple[str, str | int]]:
    policy: dict[str, str | int] = (
        {"grpc.enable_retries": 1, "grpc.service_config": service_config()}
        if retries
        else {"grpc.enable_retries": 0}
    )
    return list({**_DEFAULT_OPTIONS, **policy, **dict(overrides)}.items())


def health_check(channel: Any) -> Any:
    """grpc.health.v1 Check on a sync or aio channel, by method path: the typing stubs of
    grpcio-health-checking lack the stub's methods."""
    return channel.unary_unary(
        _HEALTH_CHECK,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )


class Guard:
    """The circuit breaker (if any) around each call, and the translation of a failed
    call into a `QulabError`. The clients run the health probe it asks for."""

    def __init__(self, target: str, breaker: CircuitBreaker | bool) -> None:
        self._target = target
        self.breaker = CircuitBreaker() if breaker is True else breaker or None

    def admit(self) -> bool:
        """True when the caller must probe health (and report it with `probed`) before
        calling; raises CircuitOpen when the call must fail fast."""
        if self.breaker is None:
            return False
        verdict, wait = self.breaker.admit()
        if verdict is Verdict.FAIL_FAST:
            raise self._open(wait)
        return verdict is Verdict.PROBE_FIRST

    def probed(self, status: int | None) -> None:
        """The probe's answer (a ServingStatus, or None when the probe itself failed)."""
        assert self.breaker is not None
        serving = status == health_pb2.HealthCheckResponse.SERVING
        self.breaker.probed(serving)
        if not serving:
            raise self._open(self.breaker.reset_after_s)

    def failed(self, error: grpc.RpcError) -> QulabError:
        qulab_error = from_rpc_error(error)
        if self.breaker is not None:
            self.breaker.record(isinstance(qulab_error, Unavailable))
        return qulab_error

    def succeeded(self) -> None:
        if self.breaker is not None:
            self.breaker.record(False)

    def _open(self, wait: float) -> CircuitOpen:
        assert self.breaker is not None
        return CircuitOpen(
            f"{self._target} was unavailable for the last {self.breaker.failures} calls; "
            f"failing fast, next health probe in {wait:.1f} s",
            retry_delay=wait,
        )
