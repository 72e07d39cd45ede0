"""A real OTLP trace receiver on loopback: what a server under test exports, as a collector
would receive it, over gRPC (`TraceService/Export`) or HTTP/protobuf (`POST /v1/traces`).

    with GrpcReceiver() as receiver:
        server = RunningServer({**receiver.env(), ...})
        ...
        (span,) = receiver.wait_for(lambda s: s.name == "compute")
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = ["GrpcReceiver", "HttpReceiver", "ReceivedSpan", "Receiver"]

_HOST = "127.0.0.1"
_PROTOBUF = "application/x-protobuf"
_MAX_BODY = 64 * 1024 * 1024


def value_of(value: common_pb2.AnyValue) -> Any:
    """An OTLP attribute value as plain Python."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind)


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {pair.key: value_of(pair.value) for pair in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    """One received span, with the attributes of the resource that sent it."""

    span: trace_pb2.Span
    resource: Mapping[str, Any]
    scope: str

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def kind(self) -> int:
        return self.span.kind

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_span_id(self) -> str:
        """Empty for a root span."""
        return self.span.parent_span_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes_of(self.span.attributes)

    @property
    def status(self) -> int:
        return self.span.status.code

    @property
    def start_ns(self) -> int:
        return self.span.start_time_unix_nano

    @property
    def end_ns(self) -> int:
        return self.span.end_time_unix_nano

    @property
    def is_server(self) -> bool:
        return self.span.kind == trace_pb2.Span.SPAN_KIND_SERVER


class Receiver:
    """Stores every `ResourceSpans` exported to it; `wait_for` polls with a bound."""

    protocol: ClassVar[str]

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._resource_spans: list[trace_pb2.ResourceSpans] = []
        self.requests = 0
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://{_HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """The OTEL_* variables that make a server export here."""
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": self.protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
        }

    def store(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self._changed:
            self.requests += 1
            self._resource_spans.extend(request.resource_spans)
            self._changed.notify_all()

    @property
    def resource_spans(self) -> list[trace_pb2.ResourceSpans]:
        with self._changed:
            return list(self._resource_spans)

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in the order it arrived."""
        found: list[ReceivedSpan] = []
        for resource_spans in self.resource_spans:
            resource = attributes_of(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                found.extend(
                    ReceivedSpan(span, resource, scope_spans.scope.name)
                    for span in scope_spans.spans
                )
        return found

    def wait_for(
        self,
        predicate: Callable[[ReceivedSpan], bool],
        count: int = 1,
        timeout: float = 30.0,
    ) -> list[ReceivedSpan]:
        """The received spans matching `predicate`, once at least `count` of them have."""
        end = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [s for s in self.spans if predicate(s)]
                left = end - time.monotonic()
                if len(found) >= count or left <= 0:
                    break
                self._changed.wait(min(left, 0.5))
        if len(found) < count:
            seen = [(s.name, s.trace_id, s.attributes.get("qulab.request_id")) for s in self.spans]
            raise AssertionError(
                f"{len(found)} of {count} spans arrived within {timeout} s; received: {seen}"
            )
        return found

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver.store(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class GrpcReceiver(Receiver):
    """`opentelemetry.proto.collector.trace.v1.TraceService` on a sync gRPC server."""

    protocol = "grpc"

    def __init__(self) -> None:
        super().__init__()
        self._executor: futures.ThreadPoolExecutor | None = None
        self._server: grpc.Server | None = None

    def start(self) -> None:
        self._executor = futures.ThreadPoolExecutor(max_workers=4)
        self._server = grpc.server(self._executor)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        self.port = self._server.add_insecure_port(f"{_HOST}:0")
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(10)
        if self._executor is not None:
            self._executor.shutdown(wait=True)


class _TracesHandler(BaseHTTPRequestHandler):
    server: _HttpServer

    def do_POST(self) -> None:
        if self.path != "/v1/traces":
            self._answer(404, b"", "text/plain")
            return
        if self.headers.get_content_type() != _PROTOBUF:
            self._answer(415, b"", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= _MAX_BODY:
            self._answer(400, b"", "text/plain")
            return
        body = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        except (OSError, EOFError, zlib.error, DecodeError):  # the exporter's fault: say so
            self._answer(400, b"", "text/plain")
            return
        self.server.receiver.store(request)
        response = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self._answer(200, response, _PROTOBUF)

    def _answer(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what arrived, not an access log."""


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: Receiver) -> None:
        super().__init__((_HOST, 0), _TracesHandler)
        self.receiver = receiver


class HttpReceiver(Receiver):
    """`POST /v1/traces` with an ExportTraceServiceRequest body (OTLP/HTTP, protobuf)."""

    protocol = "http/protobuf"

    def __init__(self) -> None:
        super().__init__()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server = _HttpServer(self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
