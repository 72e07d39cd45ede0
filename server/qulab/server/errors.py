"""The one exception tree of the server, and its translation to `google.rpc.Status`.

    QulabError                      base; `code` is the canonical gRPC code
     +-- InvalidArgument            bad input: google.rpc.BadRequest field violations
     +-- NotFound                   the thing named does not exist (a tool name)
     +-- Unauthenticated            no valid credentials (API key, bearer token, client cert)
     +-- PermissionDenied           valid credentials whose roles do not allow the method
     +-- ResourceExhausted          queue full / over a quota: google.rpc.RetryInfo
     +-- DeadlineExceeded           the caller's deadline passed before the answer was ready
     +-- Unavailable                the server is draining or has no worker to run the call
     +-- Internal                   a bug or a crashed worker: an error id that is in the log
     +-- Reported                   any of these, already a Status (made in a worker process)

Domain code and worker processes raise these without knowing anything about gRPC: this
module imports only protobuf messages. `QulabError.to_status()` is the single place an
error becomes a wire status; `qulab.server.services._rpc` sends it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

__all__ = [
    "ERROR_DOMAIN",
    "DeadlineExceeded",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "QulabError",
    "Reported",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "renamed_status",
]

ERROR_DOMAIN = "qulab.v1"


class QulabError(Exception):
    """Base of every error the server reports on purpose."""

    code: ClassVar[int] = code_pb2.UNKNOWN
    default_reason: ClassVar[str] = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})

    def _details(
        self,
    ) -> list[
        error_details_pb2.ErrorInfo | error_details_pb2.BadRequest | error_details_pb2.RetryInfo
    ]:
        return [
            error_details_pb2.ErrorInfo(
                reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata
            )
        ]

    def to_status(self) -> status_pb2.Status:
        """This error as a `google.rpc.Status` with its typed details packed in."""
        details = []
        for detail in self._details():
            packed = any_pb2.Any()
            packed.Pack(detail)
            details.append(packed)
        return status_pb2.Status(code=self.code, message=self.message, details=details)


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One thing wrong with one request field.

    `position` is a 0-based character offset into a one-line text (SMILES); `line` and
    `column` (1-based) locate the problem in a multi-line text (Molfile, CIF, JCAMP-DX).
    """

    field: str
    description: str
    reason: str = "INVALID_FIELD"
    position: int | None = None
    line: int | None = None
    column: int | None = None

    def where(self) -> dict[str, str]:
        found = {"position": self.position, "line": self.line, "column": self.column}
        return {k: str(v) for k, v in found.items() if v is not None}


class InvalidArgument(QulabError):
    """The request is malformed or the input cannot be read; retrying will not help."""

    code = code_pb2.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(self, *violations: FieldViolation, message: str | None = None) -> None:
        if not violations:
            raise ValueError("InvalidArgument needs at least one field violation")
        first = violations[0]
        where = ", ".join(f"{k} {v}" for k, v in first.where().items())
        text = message or f"{first.field}: {first.description}" + (f" ({where})" if where else "")
        super().__init__(
            text, reason=first.reason, metadata={"field": first.field, **first.where()}
        )
        self.violations: Sequence[FieldViolation] = violations

    def renamed(self, rename: Callable[[str], str]) -> InvalidArgument:
        """The same error with each field path passed through `rename`: for a field nested
        in the caller's message ("structures[3]." in front), or named differently there."""
        return InvalidArgument(
            *(dataclasses.replace(v, field=rename(v.field)) for v in self.violations)
        )

    def _details(
        self,
    ) -> list[
        error_details_pb2.ErrorInfo | error_details_pb2.BadRequest | error_details_pb2.RetryInfo
    ]:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description, reason=v.reason
                )
                for v in self.violations
            ]
        )
        return [bad_request, *super()._details()]


class NotFound(QulabError):
    """What the request names does not exist; `metadata` says what was looked for."""

    code = code_pb2.NOT_FOUND
    default_reason = "NOT_FOUND"


class Unauthenticated(QulabError):
    """The call carries no valid credentials. The message says what was wrong (missing,
    unknown key, expired token...) and never repeats what was sent."""

    code = code_pb2.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(QulabError):
    """The caller is known but none of its roles allows the method."""

    code = code_pb2.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class ResourceExhausted(QulabError):
    """Over a capacity limit. `retry_after_ms` < 0 tells clients not to retry at all."""

    code = code_pb2.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_ms: int, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_ms = retry_after_ms

    def _details(
        self,
    ) -> list[
        error_details_pb2.ErrorInfo | error_details_pb2.BadRequest | error_details_pb2.RetryInfo
    ]:
        details = super()._details()
        if self.retry_after_ms >= 0:
            delay = duration_pb2.Duration()
            delay.FromMilliseconds(self.retry_after_ms)
            details.append(error_details_pb2.RetryInfo(retry_delay=delay))
        return details


class DeadlineExceeded(QulabError):
    code = code_pb2.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class Unavailable(QulabError):
    code = code_pb2.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class Internal(QulabError):
    """A fault of the server's. The message names an error id that is in the server log;
    the cause itself (a traceback, a signal) never goes on the wire."""

    code = code_pb2.INTERNAL
    default_reason = "INTERNAL"

    def __init__(self, what: str, *, error_id: str | None = None, reason: str | None = None):
        self.error_id = error_id or uuid.uuid4().hex
        super().__init__(
            f"{what} (error id {self.error_id})",
            reason=reason,
            metadata={"error_id": self.error_id},
        )


class Reported(QulabError):
    """An error a worker process already turned into a `google.rpc.Status`."""

    def __init__(self, status: status_pb2.Status) -> None:
        reason = None
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
        super().__init__(status.message, reason=reason)
        self.status = status
        self.code = status.code  # type: ignore[misc]  # per instance, from the worker

    @classmethod
    def from_bytes(cls, body: bytes) -> Reported:
        return cls(status_pb2.Status.FromString(body))

    def renamed(self, rename: Callable[[str], str]) -> Reported:
        """The same error with each field path of its details passed through `rename`
        (as `InvalidArgument.renamed`), and in its message where the message starts with
        the first one."""
        return Reported(renamed_status(self.status, rename))

    def to_status(self) -> status_pb2.Status:
        return self.status


def renamed_status(status: status_pb2.Status, rename: Callable[[str], str]) -> status_pb2.Status:
    """`status` with the field paths of its BadRequest and ErrorInfo details, and the one
    its message starts with, passed through `rename`: for a status about a field nested in
    the caller's message, or named differently there."""
    renamed = status_pb2.Status()
    renamed.CopyFrom(status)
    for detail in renamed.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            first = bad.field_violations[0].field if bad.field_violations else None
            for violation in bad.field_violations:
                violation.field = rename(violation.field)
            if first is not None and renamed.message.startswith(f"{first}:"):
                renamed.message = rename(first) + renamed.message[len(first) :]
            detail.Pack(bad)
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if "field" in info.metadata:
                info.metadata["field"] = rename(info.metadata["field"])
            detail.Pack(info)
    return renamed
