"""Read the google.rpc details a failed call (or a stream item's error) carries, through
the client's own decoding (`qulab.client.errors`), in the shape the tests assert on."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from qulab.client.errors import FieldViolation, QulabError, from_rpc_error, from_status


@dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    trailers: dict[str, str | bytes]
    details: tuple[Message, ...]
    violations: list[FieldViolation] = field(default_factory=list)
    info: error_details_pb2.ErrorInfo | None = None
    retry: error_details_pb2.RetryInfo | None = None


def _failure(error: QulabError) -> Failure:
    return Failure(
        code=error.code(),
        message=error.message,
        trailers=dict(error.trailers),
        details=error.status_details,
        violations=list(error.field_violations),
        info=error.detail(error_details_pb2.ErrorInfo),
        retry=error.detail(error_details_pb2.RetryInfo),
    )


def unpack_status(status: status_pb2.Status) -> Failure:
    """A per-item `google.rpc.Status` of a stream or batch answer."""
    return _failure(from_status(status))


def failure_of(error: grpc.RpcError) -> Failure:
    """The code, message, trailers and decoded details of a failed call (sync or aio, raw
    stub or qulab client)."""
    return _failure(from_rpc_error(error))
