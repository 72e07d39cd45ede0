"""Defaults shared by the sync and asyncio clients."""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_TIMEOUT_S = 30.0
# A client must accept everything the server may send (its default cap is 16 MiB).
_DEFAULT_OPTIONS: dict[str, str | int] = {
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
}

Metadata = Sequence[tuple[str, str | bytes]]
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def channel_options(overrides: Sequence[tuple[str, str | int]]) -> list[tuple[str, str | int]]:
    return list({**_DEFAULT_OPTIONS, **dict(overrides)}.items())
