"""`qulab mcp` driven by the MCP SDK's own clients against a real QuLab server: over stdio
(the SDK spawns `qulab mcp` as its subprocess) and over streamable HTTP. The tools listed are
the server's ListTools; a call answers as RDKit does; a bad argument and an auth failure
come back as tool results with isError, not as crashes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx2
import pytest
from google.protobuf import json_format
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from rdkit import Chem

from qulab.v1 import tools_pb2, tools_pb2_grpc
from tests.conftest import RunningServer
from tests.integration._credentials import auth_settings

QULAB = Path(sys.executable).parent / "qulab"
KEY = "qk_mcp_agent_0123456789abcdef"
SALICYLIC_ACID = "OC(=O)c1ccccc1O"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("mcp-auth")
    settings = auth_settings(tmp, {KEY: ("mcp-agent", ["user"])})
    running = RunningServer({f"QULAB_{k.upper()}": v for k, v in settings.items()})
    yield running
    assert running.stop() == 0


@asynccontextmanager
async def stdio_session(address: str, env: dict[str, str]) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=str(QULAB), args=["mcp", "--address", address], env=env)
    with tempfile.TemporaryFile("w+") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def server_tools(address: str, key: str | None = None) -> list[dict[str, Any]]:
    metadata = (("x-api-key", key),) if key else ()
    with grpc.insecure_channel(address) as channel:
        listed = tools_pb2_grpc.ToolServiceStub(channel).ListTools(
            tools_pb2.ListToolsRequest(format=tools_pb2.TOOL_FORMAT_MCP),
            metadata=metadata,
            timeout=30,
        )
    return [json_format.MessageToDict(t.definition) for t in listed.tools]


def as_listed(tools: Any) -> list[dict[str, Any]]:
    """MCP tools as the server's MCP-format definitions spell them (numbers as doubles,
    as a google.protobuf.Struct holds them)."""
    found = [
        {"name": t.name, "description": t.description, "inputSchema": t.input_schema}
        for t in tools.tools
    ]
    return json.loads(json.dumps(found), parse_int=float)  # type: ignore[no-any-return]


def text_of(result: Any) -> str:
    (content,) = result.content
    assert content.type == "text"
    return str(content.text)


def check_salicylic_acid(result: Any, principal: str) -> None:
    assert not result.is_error, text_of(result)
    molecule = result.structured_content["molecule"]
    reference = Chem.MolFromSmiles(SALICYLIC_ACID)
    assert molecule["canonicalSmiles"] == Chem.MolToSmiles(reference)
    assert molecule["inchikey"] == Chem.MolToInchiKey(reference)
    assert molecule["numAtoms"] == reference.GetNumAtoms()  # a whole number again, not 10.0
    assert isinstance(molecule["numAtoms"], int)
    assert result.structured_content["provenance"]["principal"] == principal
    assert json.loads(text_of(result)) == result.structured_content


async def test_stdio_serves_the_servers_tools(server: RunningServer) -> None:
    async with stdio_session(server.address, {}) as session:
        listed = await session.list_tools()
        assert as_listed(listed) == server_tools(server.address)
        assert "parse_molecule" in {t.name for t in listed.tools}
        check_salicylic_acid(
            await session.call_tool("parse_molecule", {"smiles": SALICYLIC_ACID}), "anonymous"
        )
        bad = await session.call_tool("parse_molecule", {"smiles": "C(C"})
        assert bad.is_error
        assert text_of(bad).startswith("INVALID_ARGUMENT: arguments.smiles: ")
        several = await session.call_tool(
            "parse_molecule", {"smiles": "", "colour": "red", "options": {"strict": "yes"}}
        )
        assert several.is_error
        lines = text_of(several).splitlines()
        assert len(lines) == 3
        assert "arguments.colour" in text_of(several)
        unknown = await session.call_tool("parse_protein", {})
        assert unknown.is_error
        assert text_of(unknown).startswith("NOT_FOUND: ")


async def test_stdio_uses_the_cli_credentials(secured: RunningServer) -> None:
    async with stdio_session(secured.address, {"QULAB_API_KEY": KEY}) as session:
        listed = await session.list_tools()
        assert as_listed(listed) == server_tools(secured.address, KEY)
        check_salicylic_acid(
            await session.call_tool("parse_molecule", {"smiles": SALICYLIC_ACID}), "mcp-agent"
        )
    async with stdio_session(secured.address, {"QULAB_API_KEY": "qk_wrong"}) as session:
        denied = await session.call_tool("parse_molecule", {"smiles": "CCO"})
        assert denied.is_error
        assert text_of(denied) == "UNAUTHENTICATED: the API key is not valid"
        with pytest.raises(MCPError, match="UNAUTHENTICATED"):
            await session.list_tools()


@pytest.fixture
def http_adapter(secured: RunningServer) -> Iterator[str]:
    """`qulab mcp --transport http` on a free port; its URL."""
    process = subprocess.Popen(
        [str(QULAB), "mcp", "--transport", "http", "--listen", "127.0.0.1:0"],
        env={"PATH": "/usr/bin:/bin", "QULAB_ADDRESS": secured.address},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"serving (http://\S+/mcp)", line)
        assert found, line
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
        if process.stderr is not None:
            process.stderr.close()


@asynccontextmanager
async def http_session(url: str, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        streamable_http_client(url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        yield session


async def test_streamable_http_forwards_each_callers_credentials(
    http_adapter: str, secured: RunningServer
) -> None:
    async with http_session(http_adapter, {"x-api-key": KEY}) as session:
        listed = await session.list_tools()
        assert as_listed(listed) == server_tools(secured.address, KEY)
        check_salicylic_acid(
            await session.call_tool("parse_molecule", {"smiles": SALICYLIC_ACID}), "mcp-agent"
        )
    async with http_session(http_adapter, {}) as session:
        denied = await session.call_tool("parse_molecule", {"smiles": "CCO"})
        assert denied.is_error
        assert text_of(denied).startswith("UNAUTHENTICATED: no credentials")


def test_http_mode_holds_no_credentials_of_its_own(server: RunningServer) -> None:
    done = subprocess.run(
        [str(QULAB), "mcp", "--transport", "http", "--address", server.address],
        env={"PATH": "/usr/bin:/bin", "QULAB_API_KEY": KEY},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "forwards each MCP request's own credentials" in done.stderr
    assert KEY not in done.stderr
