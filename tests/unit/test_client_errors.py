"""A failed call's status, decoded by the client: the exception class for its code, and
the google.rpc details as attributes. Statuses are built by the server's own error
classes, so the two sides are checked against each other."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from qulab.client import errors
from qulab.server.errors import (
    FieldViolation,
    Internal,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
)


def test_field_violations_with_the_location_of_the_first() -> None:
    sent = InvalidArgument(
        FieldViolation("content", "unknown tag", reason="CIF_SYNTAX", line=12, column=3),
        FieldViolation("format", "not a structure format"),
    )
    got = errors.from_status(sent.to_status())
    assert isinstance(got, errors.InvalidArgument)
    assert got.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert got.message == sent.message
    assert got.details() == sent.message
    assert got.field_violations == (
        errors.FieldViolation("content", "unknown tag", "CIF_SYNTAX", line=12, column=3),
        errors.FieldViolation("format", "not a structure format", "INVALID_FIELD"),
    )
    assert got.reason == "CIF_SYNTAX"
    assert got.domain == "qulab.v1"


def test_a_smiles_position() -> None:
    sent = InvalidArgument(FieldViolation("smiles", "unclosed ring", position=4))
    (violation,) = errors.from_status(sent.to_status()).field_violations
    assert (violation.position, violation.line) == (4, None)


def test_retry_delay_and_its_absence() -> None:
    limited = errors.from_status(ResourceExhausted("slow down", retry_after_ms=1250).to_status())
    assert isinstance(limited, errors.ResourceExhausted)
    assert limited.retry_delay == pytest.approx(1.25)
    capped = errors.from_status(ResourceExhausted("too big", retry_after_ms=-1).to_status())
    assert capped.retry_delay is None


def test_error_id_of_an_internal_error() -> None:
    sent = Internal("worker crashed")
    got = errors.from_status(sent.to_status())
    assert isinstance(got, errors.Internal)
    assert got.error_id == sent.error_id
    assert got.error_id in got.message


def test_every_code_has_its_class() -> None:
    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        got = errors.from_status(status_pb2.Status(code=code.value[0], message="m"))
        assert got.code() is code
        assert isinstance(got, grpc.RpcError)


def test_an_unknown_detail_is_kept_packed() -> None:
    packed = any_pb2.Any(type_url="type.googleapis.com/acme.Thing", value=b"\x08\x01")
    got = errors.from_status(
        status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message="no", details=[packed])
    )
    assert got.status_details == (packed,)
    assert got.reason is None
    assert got.field_violations == ()


def test_detail_lookup_by_type() -> None:
    got = errors.from_status(PermissionDenied("no role allows it").to_status())
    info = got.detail(error_details_pb2.ErrorInfo)
    assert info is not None
    assert info.reason == "PERMISSION_DENIED"
    assert got.detail(error_details_pb2.RetryInfo) is None


def test_circuit_open_is_unavailable_with_a_delay() -> None:
    opened = errors.CircuitOpen("down", retry_delay=2.5)
    assert isinstance(opened, errors.Unavailable)
    assert opened.code() is grpc.StatusCode.UNAVAILABLE
    assert opened.retry_delay == 2.5
