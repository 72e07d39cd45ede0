"""qulab.v1.ServerService: the server's own state (`status.ServerStatus`), answered in the
server process; it goes through the same interceptors as every other call."""

from __future__ import annotations

import grpc

from qulab.server.services._rpc import Call, Context, Rpc
from qulab.server.status import ServerStatus
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
        return self._rpc.answer_here(call, request, self._status.info)
