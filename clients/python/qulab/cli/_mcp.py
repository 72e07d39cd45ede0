"""`qulab mcp`: QuLab's tools for MCP clients (Claude Desktop, IDEs, agent frameworks), over
stdio or MCP's streamable HTTP, on the official `mcp` SDK (`qulab-client[mcp]`; imported
only when the command runs, so the rest of the CLI does without it). `_mcp_server` is the
adapter itself."""

from __future__ import annotations

import argparse
import dataclasses

from qulab.cli._common import ExitCode, UsageError, connection_of, timeout_of

__all__ = ["register"]

DEFAULT_LISTEN = "127.0.0.1:8765"


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = commands.add_parser(
        "mcp",
        parents=[common],
        help="serve QuLab's tools to MCP clients (stdio, or streamable HTTP)",
        description="Serve the QuLab server's tools (ToolService.ListTools, in MCP's format) "
        "to Model Context Protocol clients, and forward their tool calls to "
        "ToolService.CallTool. stdio (the default) serves the one client that started "
        "this command, with the connection flags' credentials. --transport http serves "
        "MCP's streamable HTTP at http://HOST:PORT/mcp and forwards each request's own "
        "`authorization` or `x-api-key` header to QuLab, holding no credentials of its own. "
        "A failed tool call is a tool result with isError and the status message. Needs "
        "the MCP SDK: pip install 'qulab-client[mcp]'.",
    )
    parser.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="stdio (default), or MCP's streamable HTTP",
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"with --transport http: where to listen (default {DEFAULT_LISTEN}; port 0 "
        "picks a free one, printed on stderr)",
    )
    parser.add_argument(
        "--full-tensors",
        action="store_true",
        help="give tensors in full (base64 data) rather than as values or a summary",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> ExitCode:
    try:
        from qulab.cli import _mcp_server
    except ImportError as error:
        raise UsageError(
            f"qulab mcp needs the MCP SDK ({error.name} is missing): "
            "pip install 'qulab-client[mcp]'"
        ) from None
    address, credentials = connection_of(args)
    if args.transport == "stdio":
        _mcp_server.serve_stdio(
            address, credentials, timeout=timeout_of(args), full_tensors=args.full_tensors
        )
        return ExitCode.OK
    if credentials.metadata:
        raise UsageError(
            "--transport http forwards each MCP request's own credentials; give no API key "
            "or token here (flags or QULAB_API_KEY / QULAB_BEARER_TOKEN)"
        )
    try:  # credentials will be forwarded: the same rule as for our own
        dataclasses.replace(credentials, api_key="forwarded").check_target(address)
    except ValueError as error:
        raise UsageError(str(error)) from None
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen must be HOST:PORT, not {args.listen!r}")
    try:
        _mcp_server.serve_http(
            address,
            credentials,
            host=host.strip("[]"),
            port=int(port),
            timeout=timeout_of(args),
            full_tensors=args.full_tensors,
        )
    except OSError as error:
        raise UsageError(f"cannot listen on {args.listen}: {error.strerror}") from None
    return ExitCode.OK
