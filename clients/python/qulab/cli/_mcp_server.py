"""The MCP adapter: an MCP server (the SDK's low-level `Server`) whose tools are the QuLab
server's.

- tools/list asks the QuLab server's ListTools for MCP's format each time, so the tools
  (names, descriptions, input schemas) are exactly the server's and cannot drift.
- tools/call is CallTool with the same name and arguments; the answer comes back as
  `structuredContent` and as its JSON text. A failed call (bad arguments, not allowed,
  unknown tool, server down...) is a tool result with `isError` and the status message, so
  the model can read it and try again; nothing is raised at the MCP client.
- Credentials: stdio uses the CLI's (flags, else QULAB_* variables); streamable HTTP
  forwards each HTTP request's own `authorization` / `x-api-key` header and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import mcp_types as types
import uvicorn
from google.protobuf import json_format
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INTERNAL_ERROR

from qulab.client import AsyncClient, Credentials, __version__
from qulab.client.credentials import API_KEY_HEADER, AUTHORIZATION_HEADER
from qulab.client.errors import QulabError
from qulab.v1 import tools_pb2

__all__ = ["Adapter", "serve_http", "serve_stdio"]

_FORWARDED = (AUTHORIZATION_HEADER, API_KEY_HEADER)
_INSTRUCTIONS = (
    "QuLab parses and encodes chemistry data: molecules (SMILES, SELFIES, InChI, Molfile), "
    "crystal structures (CIF, POSCAR; files as base64 `content`), spectra (JCAMP-DX) and "
    "unit conversions. Every answer carries a provenance record."
)


class Adapter:
    """tools/list and tools/call, forwarded to one QuLab server."""

    def __init__(self, client: AsyncClient, *, forward_headers: bool, full_tensors: bool):
        self._client = client
        self._forward = forward_headers
        self._full_tensors = full_tensors

    def server(self) -> Server[Any]:
        return Server(
            "qulab",
            version=__version__,
            instructions=_INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        request = tools_pb2.ListToolsRequest(format=tools_pb2.TOOL_FORMAT_MCP)
        try:
            listed = await self._client.list_tools(request, metadata=self._metadata(ctx))
        except QulabError as error:  # no tool result to carry it: a protocol error
            raise MCPError(code=INTERNAL_ERROR, message=_error_text(error)) from None
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=tool.name,
                    description=tool.description,
                    # The definition's schema: the full one restated for LLM APIs.
                    input_schema=_plain(
                        json_format.MessageToDict(
                            tool.definition.fields["inputSchema"].struct_value
                        )
                    ),
                )
                for tool in listed.tools
            ]
        )

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        request = tools_pb2.CallToolRequest(name=params.name, full_tensors=self._full_tensors)
        try:
            request.arguments.update(params.arguments or {})
            answer = await self._client.call_tool(request, metadata=self._metadata(ctx))
        except QulabError as error:
            return _failed(_error_text(error))
        except (TypeError, ValueError) as error:  # arguments a Struct cannot hold
            return _failed(f"INVALID_ARGUMENT: arguments: {error}")
        result = _plain(json_format.MessageToDict(answer.result))
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(result))], structured_content=result
        )

    def _metadata(self, ctx: ServerRequestContext[Any]) -> Sequence[tuple[str, str]]:
        """The HTTP request's credentials (streamable HTTP), else none (the client's own
        channel credentials apply)."""
        headers: Mapping[str, str] | None = getattr(ctx.request, "headers", None)
        if not self._forward or headers is None:
            return ()
        return tuple((name, headers[name]) for name in _FORWARDED if headers.get(name))


def _failed(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


def _error_text(error: QulabError) -> str:
    """ "CODE: message", then each further field violation on a line of its own."""
    lines = [str(error)]
    if error.error_id and error.error_id not in error.message:
        lines[0] += f" (error id {error.error_id})"
    lines += [f"{v.field}: {v.description}" for v in error.field_violations[1:]]
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """JSON from a google.protobuf.Struct, whose numbers are all doubles: whole numbers
    as integers again."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def serve_stdio(
    address: str, credentials: Credentials, *, timeout: float, full_tensors: bool
) -> None:
    """Serve the MCP client on this process's stdin and stdout until it closes them."""

    async def main() -> None:
        async with AsyncClient(address, timeout=timeout, credentials=credentials) as client:
            server = Adapter(client, forward_headers=False, full_tensors=full_tensors).server()
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

    asyncio.run(main())


def serve_http(
    address: str,
    credentials: Credentials,
    *,
    host: str,
    port: int,
    timeout: float,
    full_tensors: bool,
) -> None:
    """Serve MCP's streamable HTTP (stateless, JSON answers) at http://host:port/mcp until
    SIGINT or SIGTERM. The listening address is printed on stderr once bound; OSError when
    it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(
        f"qulab mcp: serving http://{shown}:{listener.getsockname()[1]}/mcp",
        file=sys.stderr,
        flush=True,
    )

    async def main() -> None:
        async with AsyncClient(address, timeout=timeout, credentials=credentials) as client:
            adapter = Adapter(client, forward_headers=True, full_tensors=full_tensors)
            app = adapter.server().streamable_http_app(
                stateless_http=True, json_response=True, host=host
            )
            config = uvicorn.Config(app, log_level="warning", lifespan="on")
            await uvicorn.Server(config).serve(sockets=[listener])

    asyncio.run(main())
