"""One RPC as the server sees it: stamped when it arrives, completed by the interceptors
(principal, deadline), read by servicers and written into provenance and the log line."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from qulab.server.interceptors.roles import Grant
    from qulab.server.telemetry import SpanRecord

__all__ = ["ANONYMOUS", "Call", "Context"]

Context = grpc.aio.ServicerContext[Any, Any]

ANONYMOUS = "anonymous"


@dataclass(slots=True)
class Call:
    method: str  # "/qulab.v1.MoleculeService/ParseMolecule"
    request_id: str
    received_ns: int  # time.time_ns() on arrival
    streaming: bool
    # The caller's metadata, read once (auth and tracing look in it too).
    metadata: Collection[tuple[str, str | bytes]] = ()
    principal: str = ANONYMOUS
    grant: Grant | None = None  # what the principal's roles allow (set by auth)
    # loop.time() seconds. A unary call's: the client's, or the default, capped. A stream's:
    # the client's, or None (each item of a stream has its own; see interceptors.deadline).
    deadline: float | None = None
    traced: SpanRecord | None = None  # the span being recorded, when the call is sampled
    trace_id: str = ""  # 32 hex digits, when sampled or the caller sent one
    span_id: str = ""
    items: int = 0  # stream messages answered
    received: int = 0  # stream messages read
    # The method a tool call came through ("/qulab.v1.ToolService/CallTool") when this is
    # the call it makes to the RPC it names; logged beside `method`.
    via: str = ""
