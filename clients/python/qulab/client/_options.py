"""Defaults shared by the sync and asyncio clients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grpc_health.v1 import health_pb2

DEFAULT_TIMEOUT_S = 30.0
# A client must accept everything the server may send (its default cap is 16 MiB).
_DEFAULT_OPTIONS: dict[str, str | int] = {
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
}

Metadata = Sequence[tuple[str, str | bytes]]
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def channel_options(overrides: Sequence[tuple[str, str | int]]) -> list[tuple[str, str | int]]:
    return list({**_DEFAULT_OPTIONS, **dict(overrides)}.items())


def health_check(channel: Any) -> Any:
    """grpc.health.v1 Check on a sync or aio channel, by method path: the typing stubs of
    grpcio-health-checking lack the stub's methods."""
    return channel.unary_unary(
        _HEALTH_CHECK,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
