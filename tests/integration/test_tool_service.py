"""ToolService on a real server: ListTools covers every QuLab RPC, every `Example:` of the
protos called through CallTool gives what the RPC itself gives and what RDKit, gemmi,
pymatgen, the `jcamp` package and pint give; bad arguments are named by JSON path; and a
tool call goes through the target's own RBAC (a real roles file), rate limit, provenance and
limits."""

from __future__ import annotations

import base64
import io
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gemmi
import grpc
import jcamp  # type: ignore[import-untyped]
import numpy as np
import pint
import pytest
import selfies
from google.protobuf import json_format
from pymatgen.core import Composition, Structure
from pymatgen.io.vasp import Poscar
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from rdkit import Chem
from rdkit.Chem import DataStructs, MACCSkeys, rdFingerprintGenerator
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

from qulab.client import Client, api_key
from qulab.server.config import Settings
from qulab.server.tools import portable, result_json
from qulab.tensors import from_tensor
from qulab.v1 import common_pb2, tools_pb2, tools_pb2_grpc
from tests._contract import methods, path_of
from tests.conftest import RunningServer
from tests.integration._credentials import auth_settings, write_roles
from tests.integration._status import failure_of
from tests.unit.test_tools import catalogue, tool_examples

Arguments = dict[str, Any]
# The tools as a server with the default settings lists them.
TOOLS = {tool.name: tool for tool in catalogue(Settings().max_batch_items)}


@pytest.fixture(scope="module")
def tools(server: RunningServer) -> Iterator[tools_pb2_grpc.ToolServiceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield tools_pb2_grpc.ToolServiceStub(channel)


def call(
    stub: tools_pb2_grpc.ToolServiceStub,
    name: str,
    arguments: Any,
    *,
    full: bool = False,
    metadata: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    request = tools_pb2.CallToolRequest(name=name, full_tensors=full)
    request.arguments.update(arguments)
    answer = stub.CallTool(request, metadata=metadata, timeout=60)
    assert answer.name == name
    assert answer.method == TOOLS[name].method
    result: dict[str, Any] = json_format.MessageToDict(answer.result)
    return result


def refused(stub: tools_pb2_grpc.ToolServiceStub, name: str, arguments: Any, **kw: Any) -> Any:
    with pytest.raises(grpc.RpcError) as caught:
        call(stub, name, arguments, **kw)
    return failure_of(caught.value)


def test_list_tools_has_every_rpc_of_the_server(tools: tools_pb2_grpc.ToolServiceStub) -> None:
    for format in tools_pb2.ToolFormat.values():
        listed = tools.ListTools(tools_pb2.ListToolsRequest(format=format), timeout=30)
        expected = {
            path_of(m)
            for m in methods()
            if m.containing_service.full_name != "qulab.v1.ToolService"
        }
        assert {t.method for t in listed.tools} == expected
        assert [t.name for t in listed.tools] == sorted(TOOLS)
        assert listed.provenance.method == "/qulab.v1.ToolService/ListTools"
        for tool in listed.tools:
            spec = TOOLS[tool.name]
            assert tool.description == spec.description
            assert tool.batch == spec.batch
            schema = json_format.MessageToDict(tool.input_schema)
            assert json.dumps(schema, sort_keys=True) == json.dumps(
                _doubles(spec.input_schema), sort_keys=True
            )
            shape = json_format.MessageToDict(tool.definition)
            if format == tools_pb2.TOOL_FORMAT_OPENAI:
                assert shape["type"] == "function"
                assert shape["function"]["name"] == tool.name
            elif format == tools_pb2.TOOL_FORMAT_ANTHROPIC:
                assert shape["name"] == tool.name
                assert shape["input_schema"]["type"] == "object"
            else:
                assert shape["inputSchema"] == _doubles(portable(spec.input_schema))


def _doubles(value: Any) -> Any:
    """JSON as a google.protobuf.Struct holds it: every number a double."""
    if isinstance(value, dict):
        return {k: _doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_doubles(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def test_a_bad_format_is_refused(tools: tools_pb2_grpc.ToolServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        tools.ListTools(tools_pb2.ListToolsRequest(format=42), timeout=30)  # type: ignore[arg-type]
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.violations[0].field == "format"


# -- every example, against the RPC itself and an independent reference ----------------


def _without_provenance(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_provenance(v) for k, v in value.items() if k != "provenance"}
    if isinstance(value, list):
        return [_without_provenance(v) for v in value]
    return value


def _direct(server: RunningServer, name: str, arguments: Arguments) -> dict[str, Any]:
    """The RPC called directly (no ToolService) with the same request, as a tool answers."""
    tool = TOOLS[name]
    with grpc.insecure_channel(server.address) as channel:
        if tool.batch:
            stream = channel.stream_stream(
                tool.method,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=tool.response_type.FromString,
            )
            requests = [json_format.ParseDict(a, tool.request_type()) for a in arguments["items"]]
            answers = list(stream(iter(requests), timeout=60))
            return {"items": [result_json(a, full_tensors=True) for a in answers]}
        unary = channel.unary_unary(
            tool.method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=tool.response_type.FromString,
        )
        answer = unary(json_format.ParseDict(arguments, tool.request_type()), timeout=60)
        return result_json(answer, full_tensors=True)


@pytest.mark.parametrize(("name", "arguments"), list(tool_examples()), ids=lambda v: str(v)[:40])
def test_every_example_answers_as_the_rpc_and_the_reference(
    name: str, arguments: Arguments, tools: tools_pb2_grpc.ToolServiceStub, server: RunningServer
) -> None:
    result = call(tools, name, arguments, full=True)
    assert _without_provenance(_doubles(result)) == _without_provenance(
        _doubles(_direct(server, name, arguments))
    )
    REFERENCES.get(name, _no_reference)(arguments, result)


def _no_reference(arguments: Arguments, result: dict[str, Any]) -> None:
    raise AssertionError("every tool with an example has a reference check")


def _mol(spec: Arguments) -> Chem.Mol:
    if "smiles" in spec:
        return Chem.MolFromSmiles(spec["smiles"])
    if "selfies" in spec:
        return Chem.MolFromSmiles(selfies.decoder(spec["selfies"]))
    return Chem.MolFromInchi(spec["inchi"])


def _check_molecule(spec: Arguments, found: dict[str, Any]) -> None:
    mol = _mol(spec)
    assert found["canonicalSmiles"] == Chem.MolToSmiles(mol)
    assert found["inchikey"] == Chem.MolToInchiKey(mol)
    assert found["formula"] == CalcMolFormula(mol)


def check_parse_molecule(arguments: Arguments, result: dict[str, Any]) -> None:
    _check_molecule(arguments, result["molecule"])
    assert result.get("id", "") == arguments.get("id", "")
    assert result["provenance"]["method"] == "/qulab.v1.MoleculeService/ParseMolecule"


def check_parse_molecules(arguments: Arguments, result: dict[str, Any]) -> None:
    assert len(result["items"]) == len(arguments["items"])
    for spec, item in zip(arguments["items"], result["items"], strict=True):
        _check_molecule(spec, item["molecule"])
        assert item["provenance"]["method"] == "/qulab.v1.MoleculeService/ParseMolecules"


def _tensor(found: dict[str, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(from_tensor(json_format.ParseDict(found, common_pb2.Tensor())))


def check_encode_molecule(arguments: Arguments, result: dict[str, Any]) -> None:
    features = _tensor(result["features"])
    for row, spec in zip(features, arguments["molecules"], strict=True):
        mol = _mol(spec)
        if arguments["encoding"] == "MOLECULE_ENCODING_MACCS":
            expected = np.zeros(167, dtype=np.uint8)
            DataStructs.ConvertToNumpyArray(MACCSkeys.GenMACCSKeys(mol), expected)
        else:
            options = arguments.get("fingerprint", {})
            generator = rdFingerprintGenerator.GetMorganGenerator(
                radius=options.get("radius", 2), fpSize=options.get("nBits", 2048)
            )
            expected = generator.GetFingerprintAsNumPy(mol)
        assert np.array_equal(row, expected)


def _file(arguments: Arguments) -> str:
    return base64.b64decode(arguments["content"]).decode()


def _pymatgen(text: str) -> Structure:
    kind = "cif" if text.startswith("data_") else "poscar"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's own notes about the files
        return Structure.from_str(text, fmt=kind)


def check_parse_structure(arguments: Arguments, result: dict[str, Any]) -> None:
    (found,) = result["structures"]
    text = _file(arguments)
    reference = _pymatgen(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # spglib's deprecation notices, through pymatgen
        analyzer = SpacegroupAnalyzer(reference)
        number = analyzer.get_space_group_number()
        conventional = analyzer.get_conventional_standard_structure()
    assert found["detectedSymmetry"]["number"] == number
    if arguments.get("options", {}).get("cell") == "CELL_CHOICE_CONVENTIONAL":
        reference = conventional
    assert len(found["sites"]) == len(reference)
    assert found["volume"] == pytest.approx(reference.volume, rel=1e-9)
    assert Composition(found["formula"]) == reference.composition
    if text.startswith("data_"):  # gemmi's own expansion of the CIF agrees
        small = gemmi.make_small_structure_from_block(gemmi.cif.read_string(text).sole_block())
        assert len(small.get_all_unit_cell_sites()) == len(found["sites"])


def check_write_structure(arguments: Arguments, result: dict[str, Any]) -> None:
    written = Poscar.from_str(result["text"]).structure
    original = _pymatgen(_file(arguments["input"]))
    assert written.composition == original.composition
    assert written.lattice.abc == pytest.approx(original.lattice.abc)


def check_encode_structure(arguments: Arguments, result: dict[str, Any]) -> None:
    features = _tensor(result["features"])
    names = result["featureNames"]
    for row, spec in zip(features, arguments["structures"], strict=True):
        composition = _pymatgen(_file(spec)).composition
        for element in composition:
            fraction = composition.get_atomic_fraction(element)
            assert row[names.index(f"frac_{element.symbol}")] == pytest.approx(fraction)


def _jcamp(arguments: Arguments) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found: dict[str, Any] = jcamp.read(io.BytesIO(base64.b64decode(arguments["content"])))
    return found


def check_parse_spectrum(arguments: Arguments, result: dict[str, Any]) -> None:
    (block,) = result["blocks"]
    reference = _jcamp(arguments)
    x_um = pint.UnitRegistry().Quantity(reference["x"], "1/cm").to("um", "sp").magnitude
    assert block["xUnit"] == arguments["options"]["xUnit"]
    assert np.allclose(_tensor(block["x"]), x_um, rtol=1e-12)
    assert np.allclose(_tensor(block["y"]), reference["y"], rtol=1e-12)


def check_encode_spectrum(arguments: Arguments, result: dict[str, Any]) -> None:
    grid = arguments["options"]["grid"]
    reference = _jcamp(arguments["spectra"][0])
    axis = np.linspace(grid["start"], grid["stop"], grid["points"])
    order = np.argsort(reference["x"])
    expected = np.interp(axis, reference["x"][order], reference["y"][order])
    expected /= np.abs(expected).max()  # NORMALIZATION_MAX
    assert np.allclose(_tensor(result["features"])[0], expected, rtol=1e-6)


def check_convert_units(arguments: Arguments, result: dict[str, Any]) -> None:
    units = pint.UnitRegistry()
    quantity = units.Quantity(np.asarray(arguments["values"], dtype=float), arguments["fromUnit"])
    context = arguments.get("context")
    expected = quantity.to(arguments["toUnit"], *([context] if context else [])).magnitude
    assert np.allclose(result["values"], expected, rtol=1e-12)


def check_get_server_info(arguments: Arguments, result: dict[str, Any]) -> None:
    assert result["state"] == "SERVER_STATE_SERVING"
    assert result["provenance"]["method"] == "/qulab.v1.ServerService/GetServerInfo"


REFERENCES: dict[str, Callable[[Arguments, dict[str, Any]], None]] = {
    "parse_molecule": check_parse_molecule,
    "parse_molecules": check_parse_molecules,
    "encode_molecule": check_encode_molecule,
    "parse_structure": check_parse_structure,
    "write_structure": check_write_structure,
    "encode_structure": check_encode_structure,
    "parse_spectrum": check_parse_spectrum,
    "encode_spectrum": check_encode_spectrum,
    "convert_units": check_convert_units,
    "get_server_info": check_get_server_info,
}


def test_every_tool_has_a_reference_check() -> None:
    assert set(REFERENCES) == set(TOOLS)


# -- results, provenance, the audit line -------------------------------------------------


def test_tensors_are_summarised_unless_asked_for(tools: tools_pb2_grpc.ToolServiceStub) -> None:
    arguments = {"molecules": [{"smiles": "c1ccccc1O"}], "encoding": "MOLECULE_ENCODING_MORGAN"}
    summary = call(tools, "encode_molecule", arguments)["features"]
    full = _tensor(call(tools, "encode_molecule", arguments, full=True)["features"])
    assert summary["omitted"] is True
    assert "data" not in summary
    assert summary["shape"] == [1, 2048]
    assert summary["dtype"] == "DTYPE_UINT8"
    assert summary["nonzero"] == np.count_nonzero(full)
    assert summary["mean"] == pytest.approx(full.mean())
    small = call(tools, "parse_structure", {"content": _nacl_cif()})
    matrix = small["structures"][0]["lattice"]["matrix"]
    assert np.allclose(matrix["values"], np.eye(3) * 5.6402)


def _nacl_cif() -> str:
    return next(a for n, a in tool_examples() if n == "parse_structure")["content"]  # type: ignore[no-any-return]


def test_provenance_and_audit_name_the_target_method(
    tools: tools_pb2_grpc.ToolServiceStub, server: RunningServer
) -> None:
    result = call(
        tools, "parse_molecule", {"smiles": "CCN"}, metadata=(("x-request-id", "tool-prov-1"),)
    )
    provenance = result["provenance"]
    assert provenance["method"] == "/qulab.v1.MoleculeService/ParseMolecule"
    assert provenance["requestId"] == "tool-prov-1"
    assert provenance["principal"] == "anonymous"
    line = server.wait_for_log(request_id="tool-prov-1", code="OK")
    assert line["method"] == "/qulab.v1.MoleculeService/ParseMolecule"
    assert line["via"] == "/qulab.v1.ToolService/CallTool"
    assert line["input_sha256"] == provenance["inputSha256"]


# -- refusals --------------------------------------------------------------------------


BAD_CALLS = [
    ("parse_molecule", {"smiles": 42}, "arguments.smiles", "schema.type"),
    (
        "parse_molecule",
        {"smiles": "CCO", "colour": "red"},
        "arguments.colour",
        "schema.additionalProperties",
    ),
    ("parse_molecule", {"smiles": "CCO", "selfies": "[C]"}, "arguments", "schema.oneOf"),
    ("parse_molecule", {"smiles": "C(C"}, "arguments.smiles", "INVALID_SMILES"),  # the worker's
    (
        "encode_molecule",
        {
            "molecules": [{"smiles": "C"}],
            "encoding": "MOLECULE_ENCODING_MORGAN",
            "fingerprint": {"n_bits": 4},
        },
        "arguments.fingerprint.nBits",
        "schema.minimum",
    ),
    ("convert_units", {"fromUnit": "nm", "toUnit": "m"}, "arguments.values", "ONE_OF"),  # code's
    ("convert_units", {"values": [1], "fromUnit": "nm", "toUnit": "kg"}, "arguments.toUnit", None),
    (
        "parse_structure",
        {"content": base64.b64encode(b"data_x\n_cell_length_a 1\n").decode()},
        "arguments.content",
        None,
    ),
    (
        "parse_molecules",
        {"items": [{"smiles": "C"}], "extra": 1},
        "arguments.extra",
        "schema.items",
    ),
]


@pytest.mark.parametrize(
    ("name", "arguments", "path", "reason"), BAD_CALLS, ids=lambda v: str(v)[:40]
)
def test_bad_arguments_are_invalid_argument_at_their_json_path(
    name: str,
    arguments: Arguments,
    path: str,
    reason: str | None,
    tools: tools_pb2_grpc.ToolServiceStub,
) -> None:
    failure = refused(tools, name, arguments)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.violations[0].field == path
    if reason is not None:
        assert failure.violations[0].reason == reason
    assert "Traceback" not in failure.message


def test_a_batch_answers_each_item_with_its_own_error(
    tools: tools_pb2_grpc.ToolServiceStub,
) -> None:
    items = [
        {"smiles": "CCO", "id": "ok"},
        {"smiles": 7, "id": "not text"},
        {"smiles": "C(C", "id": "unclosed"},
        {"smiles": "c1ccccc1", "id": "benzene"},
    ]
    answers = call(tools, "parse_molecules", {"items": items})["items"]
    assert [a.get("id") for a in answers] == ["ok", "not text", "unclosed", "benzene"]
    assert answers[0]["molecule"]["canonicalSmiles"] == "CCO"
    assert answers[3]["molecule"]["canonicalSmiles"] == "c1ccccc1"
    for k in (1, 2):
        error = answers[k]["error"]
        assert error["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        (bad_request,) = [d for d in error["details"] if d["@type"].endswith("BadRequest")]
        assert bad_request["fieldViolations"][0]["field"] == f"arguments.items[{k}].smiles"
    assert "molecule" not in answers[1]
    assert "molecule" not in answers[2]
    not_an_object = call(tools, "parse_molecules", {"items": ["CCO", {"smiles": "C"}]})["items"]
    (bad_request,) = not_an_object[0]["error"]["details"][:1]
    assert bad_request["fieldViolations"][0]["field"] == "arguments.items[0]"
    assert not_an_object[1]["molecule"]["canonicalSmiles"] == "C"


def test_an_unknown_tool_is_not_found(tools: tools_pb2_grpc.ToolServiceStub) -> None:
    request = tools_pb2.CallToolRequest(name="parse_protein")
    with pytest.raises(grpc.RpcError) as caught:
        tools.CallTool(request, timeout=30)
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.NOT_FOUND
    assert failure.info is not None
    assert failure.info.reason == "TOOL_NOT_FOUND"
    with pytest.raises(grpc.RpcError) as caught:
        tools.CallTool(tools_pb2.CallToolRequest(name="parse molecule!"), timeout=30)
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.violations[0].field == "name"


def test_limits_on_arguments_and_answers(start_server: Callable[..., RunningServer]) -> None:
    small = start_server(max_tool_arguments_bytes="600", max_message_bytes="4096")
    with grpc.insecure_channel(small.address) as channel:
        stub = tools_pb2_grpc.ToolServiceStub(channel)
        failure = refused(stub, "parse_molecule", {"smiles": "C" * 700})
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
        assert failure.violations[0].field == "arguments"
        assert failure.violations[0].reason == "LIMIT_EXCEEDED"
        # An answer larger than the message limit is refused with a status, not cut.
        failure = refused(stub, "parse_structure", {"content": _nacl_cif()})
        assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert failure.info is not None
        assert failure.info.reason == "RESPONSE_TOO_LARGE"
        assert call(stub, "convert_units", {"values": [1], "fromUnit": "m", "toUnit": "cm"})


# -- the target's RBAC and the caller's rate limit --------------------------------------

MOLECULES_KEY = "qk_molecule_agent_0123456789"
TOOLLESS_KEY = "qk_no_tools_0123456789abcdef"
LIMITED_KEY = "qk_limited_0123456789abcdef"
ROLES = {
    # Molecule RPCs, and the tool service to reach them.
    "molecule-agent": {
        "methods": ["qulab.v1.MoleculeService/*", "qulab.v1.ToolService/*"],
    },
    # Every parse RPC, but not the tool service.
    "parser": {"methods": ["*/Parse*"]},
    "slow": {"methods": ["qulab.v1.ToolService/*", "*/Convert*"], "rate_per_s": 0.001, "burst": 1},
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp("tool-auth")
    write_roles(tmp / "roles.json", ROLES)
    keys = {
        MOLECULES_KEY: ("agent", ["molecule-agent"]),
        TOOLLESS_KEY: ("parser", ["parser"]),
        LIMITED_KEY: ("slow-agent", ["slow"]),
    }
    settings = {**auth_settings(tmp, keys), "roles_file": str(tmp / "roles.json")}
    running = RunningServer({f"QULAB_{k.upper()}": v for k, v in settings.items()})
    yield running
    assert running.stop() == 0


def test_call_tool_checks_the_targets_roles(secured: RunningServer) -> None:
    key = (("x-api-key", MOLECULES_KEY),)
    with grpc.insecure_channel(secured.address) as channel:
        stub = tools_pb2_grpc.ToolServiceStub(channel)
        listed = stub.ListTools(tools_pb2.ListToolsRequest(), metadata=key, timeout=30)
        assert {t.name for t in listed.tools} == {
            "parse_molecule",
            "parse_molecules",
            "encode_molecule",
        }
        result = call(stub, "parse_molecule", {"smiles": "CCO"}, metadata=key)
        assert result["provenance"]["principal"] == "agent"
        batch = call(stub, "parse_molecules", {"items": [{"smiles": "C"}]}, metadata=key)
        assert batch["items"][0]["provenance"]["principal"] == "agent"
        # Not allowed ParseStructure: CallTool does not reach it.
        failure = refused(stub, "parse_structure", {"content": _nacl_cif()}, metadata=key)
        assert failure.code == grpc.StatusCode.PERMISSION_DENIED
        assert "qulab.v1.StructureService/ParseStructure" in failure.message
        # Allowed ParseStructure but not the tool service: refused at CallTool itself.
        toolless = (("x-api-key", TOOLLESS_KEY),)
        failure = refused(stub, "parse_structure", {"content": _nacl_cif()}, metadata=toolless)
        assert failure.code == grpc.StatusCode.PERMISSION_DENIED
        assert "qulab.v1.ToolService/CallTool" in failure.message
        failure = refused(stub, "parse_molecule", {"smiles": "C"})
        assert failure.code == grpc.StatusCode.UNAUTHENTICATED
    assert not [line for line in secured.raw if MOLECULES_KEY in line]


def test_call_tool_takes_from_the_callers_rate_limit(secured: RunningServer) -> None:
    key = (("x-api-key", LIMITED_KEY),)
    arguments = {"values": [1], "fromUnit": "m", "toUnit": "cm"}
    with grpc.insecure_channel(secured.address, options=[("grpc.enable_retries", 0)]) as channel:
        stub = tools_pb2_grpc.ToolServiceStub(channel)
        assert call(stub, "convert_units", arguments, metadata=key)["values"] == [100.0]
        failure = refused(stub, "convert_units", arguments, metadata=key)
    assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.info is not None
    assert failure.info.reason == "RATE_LIMITED"


def test_the_python_client_calls_tools(secured: RunningServer) -> None:
    with Client(secured.address, credentials=api_key(MOLECULES_KEY)) as client:
        listed = client.list_tools(
            tools_pb2.ListToolsRequest(format=tools_pb2.TOOL_FORMAT_ANTHROPIC)
        )
        assert {t.name for t in listed.tools} >= {"parse_molecule"}
        request = tools_pb2.CallToolRequest(name="parse_molecule")
        request.arguments.update({"selfies": "[C][C][O]"})
        answer = client.call_tool(request)
    assert answer.result["molecule"]["canonicalSmiles"] == "CCO"
