"""The tool catalogue, without a server: a tool for every public method of the contract, JSON
Schemas that are valid draft 2020-12, accept every `Example:` of the proto comments and
refuse bad arguments the way the protovalidate rules do, descriptions from the comments,
the OpenAI / Anthropic / MCP shapes, answers as JSON with readable tensors, and the call a
tool call makes to its target (same caller, deadline and trace; RBAC for the target)."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any, cast

import jsonschema
import numpy as np
import protovalidate
import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.message import Message

from qulab.server.cache import ResultCache
from qulab.server.call import Call
from qulab.server.config import Settings
from qulab.server.errors import InvalidArgument, PermissionDenied
from qulab.server.interceptors import Interceptors
from qulab.server.interceptors.deadline import Deadlines
from qulab.server.interceptors.roles import Role, RoleTable
from qulab.server.services._rpc import Rpc
from qulab.server.tools import (
    Catalogue,
    ToolSpec,
    definition,
    from_proto_path,
    portable,
    result_json,
)
from qulab.server.tools._results import INLINE_ELEMENTS
from qulab.server.tools.catalogue import NAME_PATTERN, snake_case
from qulab.tensors import from_tensor, to_tensor
from qulab.v1 import molecule_pb2, spectrum_pb2, structure_pb2, tools_pb2, units_pb2
from tests._contract import MODULES, methods, path_of
from tests.conftest import ROOT

PROTOS = ROOT / "protos" / "qulab" / "v1"
TOOL_SERVICE = "qulab.v1.ToolService"
MAX_ITEMS = 100
V = jsonschema.Draft202012Validator


def catalogue(max_items: int) -> Catalogue:
    """The tools of every method of the contract, as a server with this batch limit has."""
    return Catalogue([path_of(m) for m in methods()], max_batch_items=max_items)


CATALOGUE = catalogue(MAX_ITEMS)
TOOLS = {tool.name: tool for tool in CATALOGUE}


def validator(tool: ToolSpec) -> Any:
    return V(tool.input_schema, format_checker=V.FORMAT_CHECKER)


def proto_examples() -> Iterator[tuple[str, dict[str, Any]]]:
    """(message full name, example) for each `// Example:` line in protos/, read from the
    .proto text itself (not through the server's reader): the comment lines right above a
    `message` line are that message's."""
    for path in sorted(PROTOS.glob("*.proto")):
        pending: list[dict[str, Any]] = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            text = line.strip()
            if text.startswith("// Example:"):
                pending.append(json.loads(text[len("// Example:") :]))
            elif text.startswith("//"):
                continue
            else:
                found = re.match(r"message (\w+) \{", text)
                if pending and not found:
                    raise AssertionError(f"{path.name}:{number}: Example lines above no message")
                for example in pending:
                    yield f"qulab.v1.{found.group(1)}", example  # type: ignore[union-attr]
                pending = []


EXAMPLES = list(proto_examples())


def tool_examples() -> Iterator[tuple[str, dict[str, Any]]]:
    """(tool name, arguments) for every example: a unary tool's own, a batch tool's items."""
    for tool in CATALOGUE:
        mine = [e for m, e in EXAMPLES if m == tool.request_type.DESCRIPTOR.full_name]
        if tool.batch:
            yield tool.name, {"items": mine}
        else:
            yield from ((tool.name, e) for e in mine)


def test_every_method_of_the_contract_is_a_tool() -> None:
    expected = {}
    for method in methods():
        if method.containing_service.full_name == TOOL_SERVICE:
            continue  # ToolService is not a tool of itself
        assert method.client_streaming == method.server_streaming  # QuLab's shapes
        expected[snake_case(method.name)] = (path_of(method), method.client_streaming)
    assert {name: (t.method, t.batch) for name, t in TOOLS.items()} == expected
    assert {"parse_molecule", "parse_molecules", "convert_units", "get_server_info"} <= set(TOOLS)
    assert all(NAME_PATTERN.match(name) for name in TOOLS)


def test_snake_case_names() -> None:
    assert snake_case("ParseMolecule") == "parse_molecule"
    assert snake_case("GetServerInfo") == "get_server_info"
    assert snake_case("EncodeSpectrum") == "encode_spectrum"


@pytest.mark.parametrize("tool", list(CATALOGUE), ids=lambda t: t.name)
def test_schema_is_valid_draft_2020_12_with_an_example(tool: ToolSpec) -> None:
    V.check_schema(tool.input_schema)
    assert tool.input_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert tool.input_schema["type"] == "object"
    assert tool.input_schema["additionalProperties"] is False
    examples = tool.input_schema["examples"]
    assert examples, f"no Example: line on {tool.request_type.DESCRIPTOR.full_name}"
    assert [(n, e) for n, e in tool_examples() if n == tool.name] == [
        (tool.name, e) for e in examples
    ]


@pytest.mark.parametrize(("name", "arguments"), list(tool_examples()), ids=lambda v: str(v)[:40])
def test_every_example_validates_and_is_a_valid_request(
    name: str, arguments: dict[str, Any]
) -> None:
    tool = TOOLS[name]
    validator(tool).validate(arguments)
    requests = [tool.request(arguments)] if not tool.batch else tool.items(arguments)
    for request in requests:
        assert isinstance(request, Message), request
        protovalidate.validate(request)


def test_examples_of_tool_service_messages_parse() -> None:
    """ToolService's requests are not tools; their examples must still be right."""
    found = [(m, e) for m, e in EXAMPLES if m.startswith("qulab.v1.") and "Tool" in m]
    assert {m for m, _ in found} == {"qulab.v1.ListToolsRequest", "qulab.v1.CallToolRequest"}
    for name, example in found:
        message = json_format.ParseDict(example, _message_class(name)())
        protovalidate.validate(message)
        if isinstance(message, tools_pb2.CallToolRequest):
            tool = TOOLS[message.name]
            validator(tool).validate(json_format.MessageToDict(message.arguments))


def _message_class(full_name: str) -> type[Message]:
    for module in MODULES:
        found = module.DESCRIPTOR.message_types_by_name.get(full_name.split(".")[-1])
        if found is not None:
            return message_factory.GetMessageClass(found)
    raise KeyError(full_name)


ASPIRIN = {"smiles": "CC(=O)Oc1ccccc1C(=O)O"}
MORGAN = {"molecules": [{"smiles": "CCO"}], "encoding": "MOLECULE_ENCODING_MORGAN"}
GRID = {"start": 4000, "stop": 400, "points": 512}
NACL = {"content": base64.b64encode(b"data_NaCl\n").decode()}

# (tool, arguments, JSON path the error names): every one must be refused by the schema,
# and by the request's protovalidate rules too where the JSON parses into a request.
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("parse_molecule", {"smiles": 42}, "arguments.smiles"),  # wrong type
    ("parse_molecule", {**ASPIRIN, "colour": "red"}, "arguments.colour"),  # unknown field
    ("parse_molecule", {**ASPIRIN, "selfies": "[C]"}, "arguments"),  # two oneof members
    ("parse_molecule", {"id": "nothing"}, "arguments"),  # no oneof member (required)
    ("parse_molecule", {"smiles": ""}, "arguments.smiles"),  # min_len
    ("parse_molecule", {"inchi": "1S/CH4/h1H4"}, "arguments.inchi"),  # prefix
    ("parse_molecule", {**ASPIRIN, "id": "x" * 257}, "arguments.id"),  # max_len
    ("parse_molecule", {**ASPIRIN, "options": {"sanitize": "yes"}}, "arguments.options.sanitize"),
    ("encode_molecule", {**MORGAN, "fingerprint": {"nBits": 7}}, "arguments.fingerprint.nBits"),
    ("encode_molecule", {**MORGAN, "fingerprint": {"nBits": 65537}}, "arguments.fingerprint.nBits"),
    ("encode_molecule", {**MORGAN, "fingerprint": {"radius": 9}}, "arguments.fingerprint.radius"),
    ("encode_molecule", {**MORGAN, "fingerprint": {"radius": -1}}, "arguments.fingerprint.radius"),
    ("encode_molecule", {**MORGAN, "fingerprint": {"nBits": 2.5}}, "arguments.fingerprint.nBits"),
    (
        "encode_molecule",
        {**MORGAN, "encoding": "MOLECULE_ENCODING_UNSPECIFIED"},
        "arguments.encoding",
    ),  # enum not_in
    ("encode_molecule", {**MORGAN, "encoding": "ECFP4"}, "arguments.encoding"),  # not a name
    ("encode_molecule", {"encoding": "MOLECULE_ENCODING_MACCS"}, "arguments.molecules"),
    ("encode_molecule", {**MORGAN, "molecules": []}, "arguments.molecules"),  # min_items
    (
        "encode_molecule",
        {**MORGAN, "molecules": [{"smiles": "C", "inchi": "InChI=1S/CH4/h1H4"}]},
        "arguments.molecules[0]",
    ),  # two members of a nested oneof
    ("convert_units", {"values": [1], "toUnit": "m"}, "arguments.fromUnit"),  # required
    (
        "convert_units",
        {"values": [1], "fromUnit": "m", "toUnit": "m", "context": "x"},
        "arguments.context",
    ),
    ("convert_units", {"values": ["one"], "fromUnit": "m", "toUnit": "m"}, "arguments.values[0]"),
    ("parse_structure", {"content": "not base64!"}, "arguments.content"),
    ("parse_structure", {**NACL, "format": "STRUCTURE_FORMAT_PDB"}, "arguments.format"),
    (
        "parse_structure",
        {**NACL, "options": {"symmetryTolerance": 0}},
        "arguments.options.symmetryTolerance",
    ),
    (
        "parse_structure",
        {**NACL, "options": {"symmetryTolerance": 1.5}},
        "arguments.options.symmetryTolerance",
    ),
    (
        "parse_structure",
        {**NACL, "options": {"species": ["Fe", ""]}},
        "arguments.options.species[1]",
    ),
    ("write_structure", {"outputFormat": "STRUCTURE_FORMAT_CIF"}, "arguments.input"),
    (
        "encode_spectrum",
        {"spectra": [NACL], "options": {"grid": {**GRID, "points": 1}}},
        "arguments.options.grid.points",
    ),
    ("encode_spectrum", {"spectra": [NACL], "options": {}}, "arguments.options.grid"),
    ("parse_molecules", {"items": []}, "arguments.items"),
    ("parse_molecules", {"items": [ASPIRIN] * (MAX_ITEMS + 1)}, "arguments.items"),
    ("parse_molecules", {"items": [{"smiles": 1}]}, "arguments.items[0].smiles"),
    ("get_server_info", {"verbose": True}, "arguments.verbose"),
]


def first_refusal(tool: ToolSpec, arguments: dict[str, Any]) -> InvalidArgument | None:
    """Why the tool refuses the arguments (a batch tool: the first bad item), or None."""
    try:
        if tool.batch:
            bad = [i for i in tool.items(arguments) if isinstance(i, InvalidArgument)]
            return bad[0] if bad else None
        tool.request(arguments)
    except InvalidArgument as refused:
        return refused
    return None


@pytest.mark.parametrize(("name", "arguments", "path"), BAD, ids=lambda v: str(v)[:48])
def test_schemas_refuse_bad_arguments_as_the_rules_do(
    name: str, arguments: dict[str, Any], path: str
) -> None:
    tool = TOOLS[name]
    assert not validator(tool).is_valid(arguments)
    refused = first_refusal(tool, arguments)
    assert refused is not None
    assert refused.violations[0].field == path
    assert len(refused.violations[0].description) < 300  # never a long value quoted
    # Where the protobuf JSON parser takes it, protovalidate must refuse it too: the schema
    # is never stricter than the contract's rules.
    try:
        request = json_format.ParseDict(arguments, tool.request_type())
    except (json_format.ParseError, TypeError, ValueError):
        return
    if tool.batch:
        return  # items are checked one by one
    with pytest.raises(protovalidate.ValidationError):
        protovalidate.validate(request)


GOOD_EDGES: list[tuple[str, dict[str, Any]]] = [
    ("encode_molecule", {**MORGAN, "fingerprint": {"nBits": 8, "radius": 0}}),
    ("encode_molecule", {**MORGAN, "fingerprint": {"nBits": 65536, "radius": 8}}),
    ("parse_structure", {**NACL, "options": {"symmetryTolerance": 1, "occupancyTolerance": 0}}),
    ("convert_units", {"values": [1], "fromUnit": "m", "toUnit": "km", "context": ""}),
    ("parse_molecule", {"inchi": "InChI=1S/CH4/h1H4", "id": "x" * 256}),
    ("parse_molecules", {"items": [ASPIRIN] * MAX_ITEMS}),
]


@pytest.mark.parametrize(("name", "arguments"), GOOD_EDGES, ids=lambda v: str(v)[:48])
def test_schemas_accept_what_the_rules_accept_at_the_bounds(
    name: str, arguments: dict[str, Any]
) -> None:
    tool = TOOLS[name]
    validator(tool).validate(arguments)
    if not tool.batch:
        protovalidate.validate(json_format.ParseDict(arguments, tool.request_type()))


def test_proto_field_names_are_accepted_and_a_field_given_twice_is_not() -> None:
    tool = TOOLS["convert_units"]
    request = tool.request({"values": [1], "from_unit": "nm", "toUnit": "m"})
    assert isinstance(request, units_pb2.ConvertUnitsRequest)
    assert (request.from_unit, request.to_unit) == ("nm", "m")
    nested = TOOLS["encode_molecule"].request({**MORGAN, "fingerprint": {"n_bits": 64}})
    assert nested.fingerprint.n_bits == 64  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgument) as twice:
        tool.request({"values": [1], "from_unit": "nm", "fromUnit": "nm", "toUnit": "m"})
    assert twice.value.violations[0].field == "arguments.fromUnit"


def test_int64_takes_a_decimal_string_and_bytes_either_base64_alphabet() -> None:
    tensor = TOOLS["convert_units"].input_schema["$defs"]["qulab.v1.Tensor"]
    shape = V(tensor["properties"]["shape"])
    assert shape.is_valid([3, "4"])
    assert not shape.is_valid(["4x"])
    assert not shape.is_valid([1.5])
    data = V(tensor["properties"]["data"])
    assert data.is_valid("+/8=")
    assert data.is_valid("-_8")
    assert not data.is_valid("a b")


def test_descriptions_come_from_the_proto_comments() -> None:
    source = (PROTOS / "molecule.proto").read_text()
    first_line = re.search(r"// (Parses one molecule[^\n]*)", source).group(1)  # type: ignore[union-attr]
    parse = TOOLS["parse_molecule"]
    assert parse.description.startswith(first_line)
    assert "Example:" not in parse.description
    smiles = parse.input_schema["properties"]["smiles"]["description"]
    assert smiles == 'Daylight SMILES (RDKit dialect), e.g. "CCO".'
    encoding = TOOLS["encode_molecule"].input_schema["properties"]["encoding"]
    assert "MOLECULE_ENCODING_MACCS: The 167 MACCS structural keys" in encoding["description"]
    assert "MOLECULE_ENCODING_UNSPECIFIED" not in encoding["enum"]
    batch = TOOLS["parse_molecules"].description
    assert batch.startswith("Parses a stream of molecules.")
    assert f"at most {MAX_ITEMS}" in batch


def test_definitions_have_each_apis_shape() -> None:
    tool = TOOLS["parse_molecule"]
    parameters = portable(tool.input_schema)
    mcp = definition(tool, tools_pb2.TOOL_FORMAT_MCP)
    assert mcp == {"name": tool.name, "description": tool.description, "inputSchema": parameters}
    assert definition(tool, tools_pb2.TOOL_FORMAT_UNSPECIFIED) == mcp
    openai = definition(tool, tools_pb2.TOOL_FORMAT_OPENAI)
    assert openai == {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": parameters},
    }
    anthropic = definition(tool, tools_pb2.TOOL_FORMAT_ANTHROPIC)
    assert anthropic == {
        "name": tool.name,
        "description": tool.description,
        "input_schema": parameters,
    }


@pytest.mark.parametrize("tool", list(CATALOGUE), ids=lambda t: t.name)
def test_definitions_have_no_combinator_at_the_top(tool: ToolSpec) -> None:
    """The Anthropic API refuses a whole request whose tools include one with `oneOf`,
    `anyOf` or `allOf` at the top of its schema ("input_schema does not support oneOf,
    allOf, or anyOf at the top level"), and MCP hosts pass MCP schemas on to it."""
    parameters = portable(tool.input_schema)
    assert parameters["type"] == "object"
    assert not parameters.keys() & {"$schema", "examples", "oneOf", "anyOf", "allOf", "not"}
    assert parameters["properties"] == tool.input_schema["properties"]
    V.check_schema(parameters)


def test_parse_molecule_keeps_its_oneof_rule_in_the_definitions() -> None:
    """Its oneof is required, so the portable form has both halves (the test below then
    checks that they mean what the full schema means)."""
    parameters = portable(TOOLS["parse_molecule"].input_schema)
    assert "smiles" in parameters["dependentSchemas"]
    assert "smiles" in parameters["if"]["properties"]


VERDICT_CASES = [
    *((name, arguments) for name, arguments, _ in BAD),
    *GOOD_EDGES,
    *tool_examples(),
    ("parse_molecule", {"smiles": "C", "selfies": "[C]", "inchi": "InChI=1S/CH4/h1H4"}),
    ("parse_molecule", {}),
]


@pytest.mark.parametrize(("name", "arguments"), VERDICT_CASES, ids=lambda v: str(v)[:48])
def test_definitions_accept_exactly_what_the_full_schema_accepts(
    name: str, arguments: dict[str, Any]
) -> None:
    tool = TOOLS[name]
    full = validator(tool).is_valid(arguments)
    restated = V(portable(tool.input_schema), format_checker=V.FORMAT_CHECKER)
    assert restated.is_valid(arguments) == full


def test_proto_paths_become_json_paths() -> None:
    encode = molecule_pb2.EncodeMoleculeRequest.DESCRIPTOR
    assert from_proto_path("fingerprint.n_bits", encode) == "arguments.fingerprint.nBits"
    assert from_proto_path("molecules[3].smiles", encode) == "arguments.molecules[3].smiles"
    item = molecule_pb2.ParseMoleculeRequest.DESCRIPTOR
    assert from_proto_path("smiles", item, ("items", 2)) == "arguments.items[2].smiles"
    spectra = spectrum_pb2.EncodeSpectrumRequest.DESCRIPTOR
    assert (
        from_proto_path("spectra[0].arrays.x_unit", spectra) == "arguments.spectra[0].arrays.xUnit"
    )


def test_results_give_small_tensors_as_values_and_summarise_large_ones() -> None:
    small = np.arange(6, dtype=np.float64).reshape(2, 3)
    small[0, 1] = np.nan
    large = np.zeros((3, INLINE_ELEMENTS), dtype=np.uint8)
    large[1, :5] = 1
    response = structure_pb2.EncodeStructureResponse(
        features=to_tensor(large), feature_names=["a"], provenance={"request_id": "r"}
    )
    lattice = structure_pb2.ParseStructureResponse(
        structures=[structure_pb2.Structure(lattice=structure_pb2.Lattice(matrix=to_tensor(small)))]
    )
    summary = result_json(response, full_tensors=False)["features"]
    assert summary == {
        "dtype": "DTYPE_UINT8",
        "shape": [3, INLINE_ELEMENTS],
        "nonzero": 5,
        "nan": 0,
        "min": 0,
        "max": 1,
        "mean": pytest.approx(5 / large.size),
        "omitted": True,
    }
    values = result_json(lattice, full_tensors=False)["structures"][0]["lattice"]["matrix"]
    assert values == {
        "dtype": "DTYPE_FLOAT64",
        "shape": [2, 3],
        "values": [[0.0, "NaN", 2.0], [3.0, 4.0, 5.0]],
    }
    json.dumps(values, allow_nan=False)
    full = result_json(response, full_tensors=True)
    back = json_format.ParseDict(full, structure_pb2.EncodeStructureResponse())
    assert np.array_equal(from_tensor(back.features), large)
    assert result_json(response, full_tensors=False)["provenance"] == {"requestId": "r"}


def test_descriptor_set_is_the_protos() -> None:
    """The shipped descriptor set holds every proto file with its comments (make check
    regenerates it and fails on drift; this names the failure)."""
    from qulab.server.tools._source import Comments

    comments = Comments.load()
    for path in PROTOS.glob("*.proto"):
        package_messages = re.findall(r"^message (\w+) \{", path.read_text(), re.MULTILINE)
        for name in package_messages:
            assert f"qulab.v1.{name}" in comments.text, (path.name, name)


def _rpc_with(grant_methods: tuple[str, ...] | None) -> tuple[Any, Call]:
    """An `Rpc` (no pool: `on_behalf` needs none) and an admitted tool call. With
    `grant_methods` the server authenticates and the caller's role allows those methods;
    without, there is no authentication (every caller may call everything)."""
    settings = Settings()
    interceptors = Interceptors(None, None, Deadlines(settings))
    call = Call(
        "/qulab.v1.ToolService/CallTool",
        "request-1",
        time.time_ns(),
        False,
        principal="agent",
        deadline=1234.5,
        trace_id="ab" * 16,
    )
    if grant_methods is not None:
        interceptors.auth = cast(Any, object())  # any authenticator: only its presence counts
        table = RoleTable([Role("agent", grant_methods)], {}, 0.0, 0)
        call.grant = table.grant(["agent"])
    rpc = Rpc(settings, cast(Any, None), ResultCache(0), interceptors)
    return rpc, call


def test_a_tool_call_reaches_its_target_as_the_same_caller_within_its_deadline() -> None:
    rpc, call = _rpc_with(("qulab.v1.ToolService/*", "qulab.v1.MoleculeService/Parse*"))
    target = rpc.on_behalf(call, "/qulab.v1.MoleculeService/ParseMolecule")
    assert target.method == "/qulab.v1.MoleculeService/ParseMolecule"
    assert target.via == "/qulab.v1.ToolService/CallTool"
    assert (target.principal, target.request_id, target.deadline, target.trace_id) == (
        "agent",
        "request-1",
        1234.5,
        "ab" * 16,
    )
    assert target.grant is call.grant
    assert call.method == "/qulab.v1.ToolService/CallTool"  # the tool call itself unchanged
    assert rpc.allows(call, "/qulab.v1.MoleculeService/ParseMolecules")
    assert not rpc.allows(call, "/qulab.v1.StructureService/ParseStructure")
    with pytest.raises(PermissionDenied, match=r"qulab\.v1\.StructureService/ParseStructure"):
        rpc.on_behalf(call, "/qulab.v1.StructureService/ParseStructure")


def test_without_authentication_every_target_is_allowed() -> None:
    rpc, call = _rpc_with(None)
    assert rpc.allows(call, "/qulab.v1.ServerService/GetServerInfo")
    assert rpc.on_behalf(call, "/qulab.v1.ServerService/GetServerInfo").via
