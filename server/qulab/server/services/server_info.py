"""qulab.v1.ServerService: the server's own state (`status.ServerStatus`), answered in the
server process; it goes through the same interceptors as every other call."""

from __future__ import annotations

import os
import time

import grpc

from qulab.server.services._rpc import Call, Context, Rpc
from qulab.server.status import ServerStatus
from qulab.server.workers.pool import ItemResult
from qulab.v1 import server_pb2

__all__ = ["SERVICE", "ServerInfoServicer"]

SERVICE = server_pb2.DESCRIPTOR.services_by_name["ServerService"].full_name


class ServerInfoServicer:
    def __init__(self, rpc: Rpc, status: ServerStatus) -> None:
        self._rpc = rpc
        self._status = status

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "GetServerInfo": self._rpc.unary(
                    f"/{SERVICE}/GetServerInfo",
                    self.get_server_info,
                    server_pb2.GetServerInfoRequest,
                )
            },
        )

    async def get_server_info(
        self, request: server_pb2.GetServerInfoRequest, context: Context, call: Call
    ) -> bytes:
        started = time.time_ns()
        t0 = time.perf_counter_ns()
        body = self._status.info().SerializeToString()
        here = ItemResult(
            ok=True,
            body=body,
            queue_ns=0,
            compute_ns=time.perf_counter_ns() - t0,
            started_ns=started,
            finished_ns=time.time_ns(),
            worker_pid=os.getpid(),  # computed by the server process itself
        )
        payload = request.SerializeToString(deterministic=True)
        record = self._rpc.provenance(call, payload, [here], {}, len(body))
        return self._rpc.respond(call, body, record, server_pb2.GetServerInfoResponse)
