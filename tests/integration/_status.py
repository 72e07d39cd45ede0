"""Read the google.rpc details a failed call carries."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    trailers: dict[str, str | bytes]
    status: status_pb2.Status | None
    violations: list[error_details_pb2.BadRequest.FieldViolation] = field(default_factory=list)
    info: error_details_pb2.ErrorInfo | None = None
    retry: error_details_pb2.RetryInfo | None = None


def unpack_status(status: status_pb2.Status) -> Failure:
    failure = Failure(grpc.StatusCode.OK, status.message, {}, status)
    _fill(failure, status)
    return failure


def _fill(failure: Failure, status: status_pb2.Status) -> None:
    for detail in status.details:
        for kind in (
            error_details_pb2.BadRequest,
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
        ):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                if isinstance(message, error_details_pb2.BadRequest):
                    failure.violations.extend(message.field_violations)
                elif isinstance(message, error_details_pb2.ErrorInfo):
                    failure.info = message
                else:
                    failure.retry = message


def failure_of(error: grpc.RpcError) -> Failure:
    """The code, message, trailers and decoded details of a failed call (sync or aio)."""
    assert isinstance(error, grpc.Call | grpc.aio.AioRpcError), error
    trailers = dict(error.trailing_metadata() or ())
    status = rpc_status.from_call(error)
    failure = Failure(error.code(), error.details() or "", trailers, status)
    if status is not None:
        _fill(failure, status)
    return failure
