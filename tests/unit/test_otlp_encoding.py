"""QuLab's hand-written OTLP span encoding, read back with opentelemetry-proto's own
messages: every field, attribute type and the error status survive exactly; and the
exporter's batching."""

from __future__ import annotations

import http.server
import threading

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from qulab.server._otlp import (
    Attribute,
    SpanExporter,
    encode_attributes,
    encode_request_prefix,
    encode_span,
)

TRACE = bytes(range(16))
SPAN = bytes(range(100, 108))
PARENT = bytes(range(200, 208))


def _read(encoded: bytes) -> trace_pb2.Span:
    scope_spans = trace_pb2.ScopeSpans.FromString(encoded)  # the span as field 2
    (span,) = scope_spans.spans
    return span


def _value(attribute: object) -> object:
    value = attribute.value  # type: ignore[attr-defined]
    return getattr(value, value.WhichOneof("value"))


def test_a_span_reads_back_field_for_field() -> None:
    attributes = {
        "rpc.system": "grpc",
        "rpc.grpc.status_code": 0,
        "big": 2**62 + 5,
        "negative": -3,
        "ok": True,
        "off": False,
        "ratio": 0.25,
        "unicode": "Å é ☃",
    }
    encoded = encode_span(
        TRACE, SPAN, PARENT, b"qulab.v1.X/Y", 2, 1_700_000_000_123_456_789,
        1_700_000_000_223_456_789, encode_attributes(attributes, 9),
    )  # fmt: skip
    span = _read(encoded)
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE, SPAN, PARENT)
    assert span.name == "qulab.v1.X/Y"
    assert span.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert span.start_time_unix_nano == 1_700_000_000_123_456_789
    assert span.end_time_unix_nano == 1_700_000_000_223_456_789
    assert {a.key: _value(a) for a in span.attributes} == attributes
    assert span.status.code == trace_pb2.Status.STATUS_CODE_UNSET


def test_a_root_span_has_no_parent_and_an_error_has_its_message() -> None:
    span = _read(encode_span(TRACE, SPAN, b"", b"queue", 1, 1, 2, b"", error="worker died"))
    assert span.parent_span_id == b""
    assert span.kind == trace_pb2.Span.SPAN_KIND_INTERNAL
    assert span.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert span.status.message == "worker died"


@pytest.mark.parametrize("count", [1, 3])
def test_a_request_wraps_resource_scope_and_spans(count: int) -> None:
    resource, scope = encode_request_prefix(
        {"service.name": "qulab", "service.instance.id": "x"}, "qulab.server", "1.2.3"
    )
    spans = b"".join(encode_span(TRACE, SPAN, b"", b"s", 1, 1, 2, b"") for _ in range(count))
    scope_spans = b"\x12" + _len(scope + spans) + scope + spans
    body = resource + scope_spans
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(b"\x0a" + _len(body) + body)
    (resource_spans,) = request.resource_spans
    assert {a.key: _value(a) for a in resource_spans.resource.attributes} == {
        "service.name": "qulab",
        "service.instance.id": "x",
    }
    (scoped,) = resource_spans.scope_spans
    assert (scoped.scope.name, scoped.scope.version) == ("qulab.server", "1.2.3")
    assert len(scoped.spans) == count


def _len(data: bytes) -> bytes:
    out, n = bytearray(), len(data)
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@pytest.mark.parametrize("value", ["abc", "", 0, 7, 300, -1, True, False, 1.5])
def test_a_prepared_attribute_encodes_like_the_general_path(value: object) -> None:
    assert Attribute("k.e.y")(value) == encode_attributes({"k.e.y": value}, 9)  # type: ignore[arg-type,dict-item]


def test_the_exporter_sends_full_batches_and_keeps_the_rest_for_the_schedule() -> None:
    """Spans that arrive while a batch is being sent wait for the next full batch or the
    schedule (here: the shutdown), rather than going at once as a small export of their
    own. Over a real OTLP/HTTP receiver, whose first answer waits for the test."""
    received: list[int] = []
    first_arrived, release, second_arrived = threading.Event(), threading.Event(), threading.Event()

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            received.append(
                sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            )
            (first_arrived if len(received) == 1 else second_arrived).set()
            if len(received) == 1:
                release.wait(30)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_port}",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # no export on the schedule in this test
    }
    exporter = SpanExporter(env, {"service.name": "test"}, ("test", "1"))
    span = encode_span(TRACE, SPAN, b"", b"s", 1, 1, 2, b"")
    try:
        for _ in range(4):
            exporter.add(span, 1)
        assert first_arrived.wait(30)
        for _ in range(2):  # queued while the first batch is on its way
            exporter.add(span, 1)
        release.set()
        # Two spans are not a batch: nothing more goes before the schedule.
        assert not second_arrived.wait(0.5)
        assert received == [4]
    finally:
        release.set()
        exporter.shutdown()  # sends what is left
        receiver.shutdown()
        receiver.server_close()
    assert received == [4, 2]
    assert exporter.exported == 6
