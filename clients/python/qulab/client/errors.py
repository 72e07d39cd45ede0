"""The exceptions a QuLab client raises: one class per gRPC status code, carrying the
`google.rpc` details the server sent, decoded.

    QulabError (a grpc.RpcError, so `except grpc.RpcError` still catches it)
     +-- InvalidArgument       bad input; `field_violations` say which field, why, where
     +-- Unauthenticated       no valid credentials
     +-- PermissionDenied      valid credentials, a role that does not allow the method
     +-- ResourceExhausted     over a limit; `retry_delay` says when to come back
     +-- DeadlineExceeded
     +-- Unavailable           the server is draining, unreachable or has no worker
     |    +-- CircuitOpen      failed fast: the client's circuit breaker is open
     +-- Internal              a server fault; `error_id` is in the server's log
     +-- ... one per remaining code (Cancelled, NotFound, Unimplemented, Unknown, ...)

The gRPC retry policy (clients/service_config.json) has already retried UNAVAILABLE and
RESOURCE_EXHAUSTED by the time one of those is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from qulab.client.interceptors import REQUEST_ID_HEADER

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "CircuitOpen",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "QulabError",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "from_rpc_error",
    "from_status",
]

_DetailT = TypeVar("_DetailT", bound=Message)
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.BadRequest,
    error_details_pb2.ErrorInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.DebugInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
)


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One thing wrong with one request field.

    `line` and `column` (1-based) locate the problem in a multi-line text (Molfile, CIF,
    JCAMP-DX); `position` (0-based) in a one-line text (SMILES). The server states the
    location of the first violation only; the others have None.
    """

    field: str
    description: str
    reason: str = ""
    line: int | None = None
    column: int | None = None
    position: int | None = None


class QulabError(grpc.RpcError):
    """A call that ended with a status other than OK.

    `code()` and `details()` answer as on a `grpc.Call`; the decoded `google.rpc` details
    are `status_details`, and the common ones have attributes of their own.
    """

    status_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        status_details: Sequence[Message] = (),
        trailers: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        super().__init__(f"{self.status_code.name}: {message}")
        self.message = message
        self.status_details = tuple(status_details)
        self.trailers = tuple(trailers)
        info = self.detail(error_details_pb2.ErrorInfo)
        self.reason: str | None = info.reason if info else None
        self.domain: str | None = info.domain if info else None
        self.error_metadata: dict[str, str] = dict(info.metadata) if info else {}
        self.error_id: str | None = self.error_metadata.get("error_id")
        request_ids = [v for k, v in self.trailers if k == REQUEST_ID_HEADER and isinstance(v, str)]
        self.request_id: str | None = request_ids[0] if request_ids else None
        retry = self.detail(error_details_pb2.RetryInfo)
        self.retry_delay: float | None = (
            retry.retry_delay.ToNanoseconds() / 1e9 if retry is not None else None
        )
        self.field_violations = self._field_violations()

    def code(self) -> grpc.StatusCode:
        return self.status_code

    def details(self) -> str:
        return self.message

    def detail(self, kind: type[_DetailT]) -> _DetailT | None:
        """The first detail of type `kind` (e.g. `error_details_pb2.ErrorInfo`), or None."""
        for detail in self.status_details:
            if isinstance(detail, kind):
                return detail
        return None

    def _field_violations(self) -> tuple[FieldViolation, ...]:
        bad_request = self.detail(error_details_pb2.BadRequest)
        if bad_request is None:
            return ()
        where = self.error_metadata  # the location of the first violation, if any

        def located(key: str, index: int) -> int | None:
            value = where.get(key) if index == 0 else None
            return int(value) if value is not None and value.lstrip("-").isdigit() else None

        return tuple(
            FieldViolation(
                field=v.field,
                description=v.description,
                reason=v.reason,
                line=located("line", i),
                column=located("column", i),
                position=located("position", i),
            )
            for i, v in enumerate(bad_request.field_violations)
        )


class Cancelled(QulabError):
    status_code = grpc.StatusCode.CANCELLED


class Unknown(QulabError):
    status_code = grpc.StatusCode.UNKNOWN


class InvalidArgument(QulabError):
    """The request is malformed or its input cannot be read; retrying will not help."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(QulabError):
    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(QulabError):
    status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(QulabError):
    status_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(QulabError):
    status_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(QulabError):
    """Over a rate limit or a capacity; `retry_delay` (seconds) says when to come back,
    None that waiting will not help."""

    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(QulabError):
    status_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(QulabError):
    status_code = grpc.StatusCode.ABORTED


class OutOfRange(QulabError):
    status_code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(QulabError):
    status_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(QulabError):
    """A fault of the server's; quote `error_id` when reporting it."""

    status_code = grpc.StatusCode.INTERNAL


class Unavailable(QulabError):
    status_code = grpc.StatusCode.UNAVAILABLE


class DataLoss(QulabError):
    status_code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(QulabError):
    status_code = grpc.StatusCode.UNAUTHENTICATED


class CircuitOpen(Unavailable):
    """Raised without a call: the last calls found the server unavailable, and the client
    waits `retry_delay` seconds before probing its health again."""

    def __init__(self, message: str, *, retry_delay: float) -> None:
        super().__init__(message)
        self.retry_delay = retry_delay


_BY_CODE: dict[grpc.StatusCode, type[QulabError]] = {
    cls.status_code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


_BY_NUMBER = {code.value[0]: cls for code, cls in _BY_CODE.items()}


def _decode(packed: status_pb2.Status) -> list[Message]:
    decoded: list[Message] = []
    for any_detail in packed.details:
        for kind in _DETAIL_TYPES:
            if any_detail.Is(kind.DESCRIPTOR):
                message = kind()
                any_detail.Unpack(message)
                decoded.append(message)
                break
        else:
            decoded.append(any_detail)  # a detail type this client does not know, still packed
    return decoded


def from_status(
    status: status_pb2.Status, trailers: Sequence[tuple[str, str | bytes]] = ()
) -> QulabError:
    """The QulabError a `google.rpc.Status` stands for: a failed call's, or the per-item
    `error` / `item_status` of a stream or batch answer."""
    cls = _BY_NUMBER.get(status.code, Unknown)
    return cls(status.message, status_details=_decode(status), trailers=trailers)


def from_rpc_error(error: grpc.RpcError) -> QulabError:
    """The QulabError for a failed call of a sync or asyncio channel (itself if it already
    is one). The details come from the `grpc-status-details-bin` trailer when its code
    agrees with the call's (gRPC's own rule, as in grpcio-status)."""
    if isinstance(error, QulabError):
        return error
    if not isinstance(error, grpc.Call | grpc.aio.AioRpcError):
        return Unknown(str(error))
    code = error.code()
    trailers = tuple(error.trailing_metadata() or ())
    status = status_pb2.Status(code=code.value[0], message=error.details() or "")
    for key, value in trailers:
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                packed = status_pb2.Status.FromString(value)
            except Exception:  # a malformed trailer must not hide the call's own status
                break
            if packed.code == status.code:
                status.details.extend(packed.details)
            break
    return from_status(status, trailers)
