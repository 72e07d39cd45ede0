"""The tools: one per public unary RPC and one batch tool per streaming RPC, each with a name,
a description and an input schema derived from the contract, and its definition in the
tool-calling formats of MCP, OpenAI and Anthropic.

    name          the method's name in snake_case: ParseMolecule -> parse_molecule
    description   the method's proto comment (a batch tool adds how its items work)
    input schema  the request message's JSON Schema (`_schema`), with the `Example:` lines
                  of its proto comment as `examples`; a batch tool's is `{"items": [...]}`
                  of the stream's requests, at most QULAB_MAX_BATCH_ITEMS of them

ToolService itself is not a tool, nor are grpc.health.v1 and reflection (they are not
QuLab RPCs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import jsonschema
from google.protobuf import descriptor, descriptor_pool, message_factory
from google.protobuf.message import Message

from qulab.server.errors import FieldViolation, InvalidArgument
from qulab.server.tools import _arguments
from qulab.server.tools._schema import SchemaBuilder
from qulab.server.tools._source import Comments
from qulab.v1 import tools_pb2

__all__ = [
    "EXCLUDED_SERVICES",
    "NAME_PATTERN",
    "Catalogue",
    "ToolSpec",
    "definition",
    "descriptor_of",
    "portable",
]

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # OpenAI's and Anthropic's rule
EXCLUDED_SERVICES = frozenset({tools_pb2.DESCRIPTOR.services_by_name["ToolService"].full_name})
_BATCH_NOTE = (
    "This tool is the batch form of a stream: give the requests as `items` (at most {limit})."
    " The answer is `items`, one response each, in request order; an item that fails has"
    " its own `error` (a google.rpc.Status) and the others go on."
)
# Left out of a definition: the dialect, and the examples (long base64 files would cost
# tokens on every request that lists the tools).
_NOT_IN_DEFINITIONS = ("$schema", "examples")
# A schema nothing is valid against, spelt with a keyword every dialect knows (not `false`).
_NEVER: dict[str, Any] = {"not": {}}


def descriptor_of(message_type: type[Message]) -> descriptor.Descriptor:
    """A message class's descriptor (typed as protobuf's, whatever the backend's class)."""
    return cast(descriptor.Descriptor, message_type.DESCRIPTOR)


def snake_case(name: str) -> str:
    """ParseMolecule -> parse_molecule, GetServerInfo -> get_server_info."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool: what ListTools says of it and what CallTool needs to run it."""

    name: str
    method: str  # "/qulab.v1.MoleculeService/ParseMolecule"
    description: str
    input_schema: dict[str, Any]
    batch: bool
    request_type: type[Message]
    response_type: type[Message]
    max_items: int = 0  # a batch tool's limit
    _validator: Any = field(default=None, repr=False)  # the whole input schema
    _item_validator: Any = field(default=None, repr=False)  # a batch tool's items

    def request(self, arguments: Any) -> Message:
        """The target RPC's request from a unary tool's arguments; InvalidArgument at the
        JSON path of what is wrong."""
        return _request(arguments, self.request_type, self._validator, ())

    def items(self, arguments: Any) -> list[Message | InvalidArgument]:
        """A batch tool's requests, each parsed on its own: a bad item is its own error (as
        in the stream), the others go on. A malformed `items` fails the whole call."""
        envelope = {"items": []} if not isinstance(arguments, dict) else arguments
        if not isinstance(arguments, dict) or set(arguments) != {"items"}:
            unknown = sorted(set(envelope) - {"items"})
            where, what = (unknown[0], "is not a field") if unknown else ("items", "is required")
            raise InvalidArgument(
                FieldViolation(
                    field=_arguments.json_path([where]), description=what, reason="schema.items"
                )
            )
        items = envelope["items"]
        if not isinstance(items, list) or not 1 <= len(items) <= self.max_items:
            size = len(items) if isinstance(items, list) else "no"
            raise InvalidArgument(
                FieldViolation(
                    field=_arguments.json_path(["items"]),
                    description=f"must be a list of 1 to {self.max_items} requests; got {size}",
                    reason="schema.items",
                )
            )
        found: list[Message | InvalidArgument] = []
        for k, item in enumerate(items):
            try:
                found.append(_request(item, self.request_type, self._item_validator, ("items", k)))
            except InvalidArgument as error:
                found.append(error)
        return found


def _request(
    arguments: Any, request_type: type[Message], validator: Any, at: tuple[str | int, ...]
) -> Message:
    normalised = _arguments.normalise(arguments, descriptor_of(request_type), at)
    problems = _arguments.violations(validator, normalised, at)
    if problems:
        raise InvalidArgument(*problems)
    return _arguments.parse(normalised, request_type, at)


class Catalogue:
    """The tools of the methods a server serves, built once at start."""

    def __init__(
        self,
        methods: Iterable[str],
        *,
        max_batch_items: int,
        comments: Comments | None = None,
    ) -> None:
        """`methods`: the served methods, "/package.Service/Method"."""
        self._comments = comments or Comments.load()
        self._builder = SchemaBuilder(self._comments)
        self._max_batch_items = max_batch_items
        self._tools: dict[str, ToolSpec] = {}
        for method in sorted(methods):
            spec = self._spec(method)
            if spec is None:
                continue
            if spec.name in self._tools or not NAME_PATTERN.match(spec.name):
                raise ValueError(f"tool name {spec.name!r} of {method} is taken or not valid")
            self._tools[spec.name] = spec

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(sorted(self._tools.values(), key=lambda t: t.name))

    def get(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def _spec(self, method: str) -> ToolSpec | None:
        service_name, method_name = method.strip("/").split("/")
        if service_name in EXCLUDED_SERVICES:
            return None
        found = descriptor_pool.Default().FindServiceByName(service_name)
        rpc: descriptor.MethodDescriptor = found.methods_by_name[method_name]
        if rpc.client_streaming != rpc.server_streaming:
            return None  # no tool shape for a one-sided stream (QuLab has none)
        examples: list[Any] = list(self._comments.examples.get(rpc.input_type.full_name, ()))
        description = self._comments.of(rpc.full_name)
        single = self._builder.request(rpc.input_type)
        batch, limit, schema = rpc.client_streaming, 0, single
        if batch:
            if "error" not in rpc.output_type.fields_by_name:
                raise ValueError(f"{method}: a batch tool needs an `error` per response")
            limit = self._max_batch_items
            schema = self._builder.batch(rpc.input_type, limit)
            examples = [{"items": examples}] if examples else []
            description = "\n\n".join([description, _BATCH_NOTE.format(limit=limit)]).strip()
        if examples:
            schema["examples"] = examples
        validator = _validator(schema)
        return ToolSpec(
            name=snake_case(method_name),
            method=method,
            description=description,
            input_schema=schema,
            batch=batch,
            request_type=message_factory.GetMessageClass(rpc.input_type),
            response_type=message_factory.GetMessageClass(rpc.output_type),
            max_items=limit,
            _validator=validator,
            _item_validator=_validator(single) if batch else validator,
        )


def _validator(schema: Mapping[str, Any]) -> Any:
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def definition(tool: ToolSpec, format: int) -> dict[str, Any]:
    """`tool` as the API of `format` (a `tools_pb2.ToolFormat`) takes it. Every format
    gets the same parameters: `input_schema` with its oneof rules restated without
    top-level combinators (`portable`), since the Anthropic API refuses a tool whose schema
    has `oneOf`, `anyOf` or `allOf` at its top, and MCP hosts pass schemas on to it."""
    parameters = portable(tool.input_schema)
    if format == tools_pb2.TOOL_FORMAT_OPENAI:
        return {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": parameters,
            },
        }
    if format == tools_pb2.TOOL_FORMAT_ANTHROPIC:
        return {"name": tool.name, "description": tool.description, "input_schema": parameters}
    return {"name": tool.name, "description": tool.description, "inputSchema": parameters}


def portable(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` (an object's, as `_schema` writes it) accepting exactly what it accepts, its
    top-level oneof rules written with keywords LLM APIs take there: "at most one of M" as
    `dependentSchemas` (a member given forbids the others), "at least one of M" as
    `if` none of M is given `then` nothing is valid (chained through `else` when a message
    has more than one such oneof)."""
    top = {
        k: v for k, v in schema.items() if k not in (*_NOT_IN_DEFINITIONS, "oneOf", "not", "allOf")
    }
    constraints = [
        *schema.get("allOf", ()),
        *({k: schema[k]} for k in ("oneOf", "not") if k in schema),
    ]
    exclusive: dict[str, dict[str, Any]] = {}
    required: list[list[str]] = []
    for constraint in constraints:
        if constraint.keys() == {"oneOf"}:  # exactly one: {"oneOf": [{"required": [m]}...]}
            members = [option["required"][0] for option in constraint["oneOf"]]
            required.append(members)
        elif constraint.keys() == {"not"}:  # at most one: {"not": {"anyOf": [pairs]}}
            members = sorted({m for pair in constraint["not"]["anyOf"] for m in pair["required"]})
        else:
            raise ValueError(f"no portable form for the top-level constraint {constraint}")
        for member in members:
            others = exclusive.setdefault(member, {"properties": {}})["properties"]
            others.update({other: _NEVER for other in members if other != member})
    if exclusive:
        top["dependentSchemas"] = exclusive
    chain: dict[str, Any] = {}
    for members in reversed(required):
        none_given = {"properties": {member: _NEVER for member in members}}
        chain = {"if": none_given, "then": _NEVER, **({"else": chain} if chain else {})}
    top.update(chain)
    return top
