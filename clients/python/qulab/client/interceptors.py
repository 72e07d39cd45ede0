"""Client interceptors that add QuLab's call metadata: a request id, the caller's
OpenTelemetry trace context, and the credentials' key or token.

`Client` and `AsyncClient` install them; they also work on a channel of your own:

    channel = grpc.intercept_channel(grpc.insecure_channel(target), MetadataInterceptor())
    channel = grpc.aio.insecure_channel(target, interceptors=async_interceptors())

The request id (`x-request-id`, a random UUID unless the caller sent one) is set once per
call, above the channel's retries, so every attempt of a call carries the same id and the
server's log lines for them can be joined. The trace context is injected with the globally
configured OpenTelemetry propagator (W3C `traceparent` by default) when the
`opentelemetry-api` package is installed (the `otel` extra); without it, nothing is added.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import grpc

__all__ = ["MetadataInterceptor", "async_interceptors", "call_metadata"]

REQUEST_ID_HEADER = "x-request-id"

try:
    from opentelemetry import propagate as _propagate
except ImportError:  # tracing is optional for the client
    _propagate = None  # type: ignore[assignment]

Metadata = Sequence[tuple[str, str | bytes]]


def call_metadata(
    metadata: Metadata | None, extra: Sequence[tuple[str, str]] = ()
) -> tuple[tuple[str, str | bytes], ...]:
    """`metadata` plus a request id (kept if present), the current trace context and
    `extra` (credentials)."""
    pairs: list[tuple[str, str | bytes]] = list(metadata or ())
    keys = {k for k, _ in pairs}
    if REQUEST_ID_HEADER not in keys:
        pairs.append((REQUEST_ID_HEADER, uuid.uuid4().hex))
    if _propagate is not None:
        carrier: dict[str, str] = {}
        _propagate.inject(carrier)
        pairs.extend((k, v) for k, v in carrier.items() if k not in keys)
    pairs.extend((k, v) for k, v in extra if k not in keys)
    return tuple(pairs)


class _Details(grpc.ClientCallDetails):
    def __init__(
        self, details: grpc.ClientCallDetails, metadata: tuple[tuple[str, str | bytes], ...]
    ) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """For blocking channels (`grpc.intercept_channel`). `extra` is metadata for every
    call, such as `Credentials.metadata`."""

    def __init__(self, extra: Sequence[tuple[str, str]] = ()) -> None:
        self._extra = tuple(extra)

    def _with_metadata(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _Details(details, call_metadata(details.metadata, self._extra))

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._with_metadata(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._with_metadata(details), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, requests: Any
    ) -> Any:
        return continuation(self._with_metadata(details), requests)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, requests: Any
    ) -> Any:
        return continuation(self._with_metadata(details), requests)


def _aio_details(
    details: grpc.aio.ClientCallDetails, extra: Sequence[tuple[str, str]]
) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=grpc.aio.Metadata(*call_metadata(tuple(details.metadata or ()), extra)),
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _AsyncMetadata:
    def __init__(self, extra: Sequence[tuple[str, str]]) -> None:
        self._extra = tuple(extra)

    async def _continue(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_aio_details(details, self._extra), request)


class _AsyncUnaryUnary(_AsyncMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._continue(continuation, details, request)


class _AsyncUnaryStream(_AsyncMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._continue(continuation, details, request)


class _AsyncStreamUnary(_AsyncMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, requests: Any
    ) -> Any:
        return await self._continue(continuation, details, requests)


class _AsyncStreamStream(_AsyncMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, requests: Any
    ) -> Any:
        return await self._continue(continuation, details, requests)


def async_interceptors(
    extra: Sequence[tuple[str, str]] = (),
) -> list[grpc.aio.ClientInterceptor]:
    """The same for asyncio channels: grpc.aio wants one interceptor object per call kind
    (a single object subclassing all four would only ever be used as the first)."""
    return [
        _AsyncUnaryUnary(extra),
        _AsyncUnaryStream(extra),
        _AsyncStreamUnary(extra),
        _AsyncStreamStream(extra),
    ]
