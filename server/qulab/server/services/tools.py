"""qulab.v1.ToolService: the tools of `qulab.server.tools` for LLM tool-calling.

ListTools lists the tools the caller's roles allow, in the format asked for. CallTool runs a
tool in this process, through the very handler its RPC runs (`Rpc.registered`), on the call
`Rpc.on_behalf` derives from its own: RBAC for the target RPC, then the same caller,
request id, deadline and trace, with the target's protovalidate rules, limits, workers and
provenance. The CallTool call itself has already passed auth, the rate limit and the
deadline like any call; a batch tool's items are paced one token each, as the stream's
messages are. No loopback gRPC hop: nothing is serialized twice, and every refusal is the
target's own.

Errors the target raises name fields by proto path (`fingerprint.n_bits`); CallTool renames
them to the JSON path in the arguments (`arguments.fingerprint.nBits`), in the raised status
and in each item's `error` of a batch tool.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from qulab.server.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    Reported,
    ResourceExhausted,
    renamed_status,
)
from qulab.server.services._rpc import Call, Context, Registered, Rpc, validate
from qulab.server.tools import (
    Catalogue,
    ToolSpec,
    definition,
    descriptor_of,
    from_proto_path,
    result_json,
)
from qulab.v1 import tools_pb2

__all__ = ["SERVICE", "ToolServicer"]

SERVICE = tools_pb2.DESCRIPTOR.services_by_name["ToolService"].full_name
# JSON work on more than this many bytes (arguments in, answer out) runs in a thread, so
# that a large file or answer does not hold the event loop up for long.
_OFF_LOOP_BYTES = 256 * 1024
T = TypeVar("T")


class ToolServicer:
    def __init__(self, rpc: Rpc, catalogue: Catalogue) -> None:
        self._rpc = rpc
        self._catalogue = catalogue
        self._listed: dict[int, dict[str, tools_pb2.Tool]] = {}  # by format, built once

    def handler(self) -> grpc.GenericRpcHandler:
        rpc = self._rpc
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ListTools": rpc.unary(
                    f"/{SERVICE}/ListTools", self.list_tools, tools_pb2.ListToolsRequest
                ),
                "CallTool": rpc.unary(
                    f"/{SERVICE}/CallTool", self.call_tool, tools_pb2.CallToolRequest
                ),
            },
        )

    async def list_tools(
        self, request: tools_pb2.ListToolsRequest, context: Context, call: Call
    ) -> bytes:
        validate(request)
        tools = self._tools(request.format)

        def answer() -> tools_pb2.ListToolsResponse:
            allowed = [t for t in self._catalogue if self._rpc.allows(call, t.method)]
            return tools_pb2.ListToolsResponse(tools=[tools[t.name] for t in allowed])

        parameters = {"format": tools_pb2.ToolFormat.Name(request.format)}
        return self._rpc.answer_here(call, request, answer, parameters)

    def _tools(self, format: int) -> dict[str, tools_pb2.Tool]:
        found = self._listed.get(format)
        if found is None:
            found = self._listed[format] = {t.name: _tool(t, format) for t in self._catalogue}
        return found

    async def call_tool(
        self, request: tools_pb2.CallToolRequest, context: Context, call: Call
    ) -> bytes:
        validate(request)
        size = request.arguments.ByteSize()
        limit = self._rpc.settings.max_tool_arguments_bytes
        if size > limit:
            raise InvalidArgument(
                FieldViolation(
                    field="arguments",
                    reason="LIMIT_EXCEEDED",
                    description=f"{size} bytes; the limit is {limit}",
                )
            )
        tool = self._catalogue.get(request.name)
        if tool is None:
            raise NotFound(
                f"no tool is named {request.name!r} (ListTools lists them)",
                reason="TOOL_NOT_FOUND",
                metadata={"tool": request.name},
            )
        target = self._rpc.on_behalf(call, tool.method)  # PermissionDenied for the target
        registered = self._rpc.registered[tool.method]
        arguments = await _json(lambda: json_format.MessageToDict(request.arguments), size)
        full = request.full_tensors
        if tool.batch:
            body = await self._batch(tool, registered, arguments, full, context, target)
        else:
            body = await self._unary(tool, registered, arguments, full, size, context, target)
        most = self._rpc.settings.max_message_bytes
        if len(body) > most:
            raise ResourceExhausted(
                f"the answer as JSON is {len(body)} bytes, over the server's limit of {most}"
                + ("; ask without full_tensors" if full else ""),
                retry_after_ms=-1,
                reason="RESPONSE_TOO_LARGE",
            )
        return body

    async def _unary(
        self,
        tool: ToolSpec,
        registered: Registered,
        arguments: Any,
        full: bool,
        size: int,
        context: Context,
        target: Call,
    ) -> bytes:
        assert registered.unary is not None
        request = await _json(lambda: tool.request(arguments), size)
        try:
            body = await registered.unary(request, context, target)
        except (InvalidArgument, Reported) as error:
            descriptor = descriptor_of(tool.request_type)
            raise error.renamed(lambda path: from_proto_path(path, descriptor)) from None
        response = tool.response_type.FromString(body)
        return await _json(
            lambda: _answer(tool, result_json(response, full_tensors=full)), len(body)
        )

    async def _batch(
        self,
        tool: ToolSpec,
        registered: Registered,
        arguments: Any,
        full: bool,
        context: Context,
        target: Call,
    ) -> bytes:
        """The stream's handler on the items that parse; each item that does not is its
        own INVALID_ARGUMENT, as a bad stream message is. Answers keep request order."""
        assert registered.stream is not None
        parsed = tool.items(arguments)
        good = [(k, item) for k, item in enumerate(parsed) if not isinstance(item, InvalidArgument)]

        async def requests() -> AsyncIterator[Message]:
            for _, item in good:
                yield item

        answers: list[Any] = []  # responses with an `error` (a google.rpc.Status) field
        async for body in registered.stream(self._rpc.paced(target, requests()), context, target):
            answers.append(tool.response_type.FromString(body))
        descriptor = descriptor_of(tool.request_type)
        results: list[Any] = [tool.response_type() for _ in parsed]
        for (k, _), answer in zip(good, answers, strict=True):
            if answer.HasField("error"):
                answer.error.CopyFrom(renamed_status(answer.error, _item_path(descriptor, k)))
            results[k] = answer
        for k, item in enumerate(parsed):
            if isinstance(item, InvalidArgument):
                results[k].error.CopyFrom(item.to_status())
                raw = arguments["items"][k]
                label = raw.get("id") if isinstance(raw, dict) else None
                if isinstance(label, str) and "id" in descriptor.fields_by_name:
                    results[k].id = label  # echoed, as the stream echoes a bad item's id

        def all_items() -> bytes:
            return _answer(tool, {"items": [result_json(r, full_tensors=full) for r in results]})

        return await _json(all_items, sum(r.ByteSize() for r in results))


def _answer(tool: ToolSpec, result: dict[str, Any]) -> bytes:
    response = tools_pb2.CallToolResponse(name=tool.name, method=tool.method)
    response.result.update(result)
    return response.SerializeToString()


def _tool(tool: ToolSpec, format: int) -> tools_pb2.Tool:
    message = tools_pb2.Tool(
        name=tool.name, description=tool.description, method=tool.method, batch=tool.batch
    )
    message.input_schema.update(tool.input_schema)
    message.definition.update(definition(tool, format))
    return message


def _item_path(descriptor: Any, k: int) -> Callable[[str], str]:
    return lambda path: from_proto_path(path, descriptor, ("items", k))


async def _json(work: Callable[[], T], size: int) -> T:
    """`work()` here when `size` is small, else in a thread."""
    if size < _OFF_LOOP_BYTES:
        return work()
    return await asyncio.to_thread(work)
