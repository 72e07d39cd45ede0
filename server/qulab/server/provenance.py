"""Provenance: where an answer came from, as a `qulab.v1.Provenance` and as a log record.

`build` makes the per-call part; `as_field` serializes it as a response's `provenance`
field with the part that never changes (server and library versions) appended as bytes
serialized once at start (concatenated protobuf is merged), so no call rebuilds that map.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Mapping
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message

from qulab.server._protowire import length_delimited
from qulab.server._version import __version__
from qulab.v1 import common_pb2

__all__ = ["SERVER_VERSION", "as_field", "build", "library_versions", "log_fields"]

SERVER_VERSION = __version__
_LIBRARIES = (
    "rdkit",
    "selfies",
    "gemmi",
    "spglib",
    "pint",
    "numpy",
    "protobuf",
    "grpcio",
    "protovalidate",
)


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


_VERSIONS = _library_versions()
_CONSTANT = common_pb2.Provenance(
    server_version=SERVER_VERSION, library_versions=_VERSIONS
).SerializeToString()


def library_versions() -> Mapping[str, str]:
    """Versions of the libraries behind every answer (read from package metadata, so the
    server process never imports RDKit)."""
    return _VERSIONS


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def _duration(ns: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def build(
    *,
    request_id: str,
    method: str,
    principal: str,
    received_ns: int,
    started_ns: int,
    finished_ns: int,
    queue_ns: int,
    compute_ns: int,
    input_sha256: str,
    input_size: int,
    output_size: int,
    parameters: Mapping[str, str],
    cache_hit: bool,
    worker_pid: int,
    trace_id: str = "",
) -> common_pb2.Provenance:
    return common_pb2.Provenance(
        request_id=request_id,
        method=method,
        principal=principal,
        received_time=_timestamp(received_ns),
        started_time=_timestamp(started_ns),
        finished_time=_timestamp(finished_ns),
        queue_duration=_duration(queue_ns),
        compute_duration=_duration(compute_ns),
        input_sha256=input_sha256,
        input_size_bytes=input_size,
        output_size_bytes=output_size,
        parameters=parameters,
        cache_hit=cache_hit,
        trace_id=trace_id,
        worker_pid=worker_pid,
    )


def as_field(record: common_pb2.Provenance, response_type: type[Message]) -> bytes:
    """`record` plus the versions, serialized as the `provenance` field of `response_type`;
    appended to a serialized response, it sets that field."""
    inner = record.SerializeToString() + _CONSTANT
    number = response_type.DESCRIPTOR.fields_by_name["provenance"].number
    return length_delimited(number, inner)


def log_fields(p: common_pb2.Provenance) -> dict[str, Any]:
    """The provenance as plain JSON-ready fields (faster than json_format on the hot path);
    library versions are left out: they are logged once, at start."""
    return {
        "request_id": p.request_id,
        "method": p.method,
        "principal": p.principal,
        "received_ns": p.received_time.ToNanoseconds(),
        "started_ns": p.started_time.ToNanoseconds(),
        "finished_ns": p.finished_time.ToNanoseconds(),
        "queue_ns": p.queue_duration.ToNanoseconds(),
        "compute_ns": p.compute_duration.ToNanoseconds(),
        "input_sha256": p.input_sha256,
        "input_size_bytes": p.input_size_bytes,
        "output_size_bytes": p.output_size_bytes,
        "server_version": SERVER_VERSION,
        "parameters": dict(p.parameters),
        "cache_hit": p.cache_hit,
        "trace_id": p.trace_id,
        "worker_pid": p.worker_pid,
    }
