"""The server as tools written in Go see it: grpcurl (reflection, JSON transcoding, error
statuses) and grpc-health-probe (the Kubernetes probe), against the shared real server."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from google.protobuf import descriptor, json_format
from rdkit import Chem

from qulab.v1 import molecule_pb2, spectrum_pb2, structure_pb2, units_pb2
from tests.conftest import RunningServer
from tests.interop.conftest import INSTALL_TIMEOUT_S, GoTools

# The first test may also build the tools.
pytestmark = [pytest.mark.interop, pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)]

MOLECULE_SERVICE = molecule_pb2.DESCRIPTOR.services_by_name["MoleculeService"]
PARSE_MOLECULE = f"{MOLECULE_SERVICE.full_name}/ParseMolecule"
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
STRUCTURE_SERVICE = structure_pb2.DESCRIPTOR.services_by_name["StructureService"]
SPECTRUM_SERVICE = spectrum_pb2.DESCRIPTOR.services_by_name["SpectrumService"]
UNIT_SERVICE = units_pb2.DESCRIPTOR.services_by_name["UnitService"]
SERVICES = [MOLECULE_SERVICE, STRUCTURE_SERVICE, SPECTRUM_SERVICE, UNIT_SERVICE]
PBTE = Path(__file__).parent.parent / "data" / "cif" / "diffpy" / "PbTe.cif"


def _grpcurl(
    go_tools: GoTools, server: RunningServer, *command: str, flags: tuple[str, ...] = ()
) -> tuple[int, str]:
    """`grpcurl [flags] address command...`: its exit code and its whole output."""
    done = go_tools.grpcurl("-plaintext", "-max-time", "20", *flags, server.address, *command)
    return done.returncode, done.stdout + done.stderr


def _rpc_line(method: descriptor.MethodDescriptor) -> str:
    """How grpcurl's `describe` prints one method."""

    def shape(streaming: bool, message: descriptor.Descriptor) -> str:
        return f"{'stream ' if streaming else ''}.{message.full_name}"

    request = shape(method.client_streaming, method.input_type)
    response = shape(method.server_streaming, method.output_type)
    return f"rpc {method.name} ( {request} ) returns ( {response} );"


def test_reflection_lists_the_services(go_tools: GoTools, server: RunningServer) -> None:
    code, output = _grpcurl(go_tools, server, "list")
    assert code == 0, output
    services = set(output.split())
    assert {s.full_name for s in SERVICES} | {"grpc.health.v1.Health"} <= services
    assert any(s.startswith("grpc.reflection.") for s in services), services


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_reflection_describes_each_service(
    go_tools: GoTools, server: RunningServer, service: descriptor.ServiceDescriptor
) -> None:
    code, output = _grpcurl(go_tools, server, "describe", service.full_name)
    assert code == 0, output
    assert f"service {service.name} {{" in output
    # Every method of the compiled proto, with its streaming shape, as grpcurl prints it.
    for method in service.methods:
        assert _rpc_line(method) in output, f"{_rpc_line(method)!r} not in:\n{output}"
    assert len(re.findall(r"^\s*rpc ", output, re.MULTILINE)) == len(service.methods)


def test_parse_structure_over_json(go_tools: GoTools, server: RunningServer) -> None:
    """A CIF as base64 `content` (proto3 JSON for bytes), the answer's tensors likewise."""
    request = json.dumps({"content": base64.b64encode(PBTE.read_bytes()).decode()})
    method = f"{STRUCTURE_SERVICE.full_name}/ParseStructure"
    code, output = _grpcurl(go_tools, server, method, flags=("-d", request))
    assert code == 0, output
    answer = json_format.Parse(output, structure_pb2.ParseStructureResponse())
    (structure,) = answer.structures
    assert structure.name == "LeadTelluride"  # the data block, as the file names it
    assert sorted(s.element for s in structure.sites) == ["Pb"] * 4 + ["Te"] * 4


def test_parse_molecule_over_json(go_tools: GoTools, server: RunningServer) -> None:
    request = json.dumps({"smiles": ASPIRIN})
    code, output = _grpcurl(go_tools, server, PARSE_MOLECULE, flags=("-d", request))
    assert code == 0, output
    # grpcurl writes the proto field names (canonical_smiles), which proto3 JSON allows
    # beside lowerCamelCase; json_format reads either, and refuses fields the contract lacks.
    answer = json_format.Parse(output, molecule_pb2.ParseMoleculeResponse())
    reference = Chem.MolFromSmiles(ASPIRIN)
    assert answer.molecule.canonical_smiles == Chem.MolToSmiles(reference)
    assert answer.molecule.inchikey == Chem.MolToInchiKey(reference)  # type: ignore[no-untyped-call]
    assert answer.provenance.request_id


def test_convert_units_over_json(go_tools: GoTools, server: RunningServer) -> None:
    request = json.dumps(
        {"values": [500], "from_unit": "nm", "to_unit": "1/cm", "context": "spectroscopy"}
    )
    method = f"{UNIT_SERVICE.full_name}/ConvertUnits"
    code, output = _grpcurl(go_tools, server, method, flags=("-d", request))
    assert code == 0, output
    answer = json_format.Parse(output, units_pb2.ConvertUnitsResponse())
    assert list(answer.values) == pytest.approx([1e7 / 500])


def test_request_id_header_reaches_the_provenance(go_tools: GoTools, server: RunningServer) -> None:
    flags = ("-H", "x-request-id: interop-42", "-d", '{"smiles": "CCO"}')
    code, output = _grpcurl(go_tools, server, PARSE_MOLECULE, flags=flags)
    assert code == 0, output
    answer = json_format.Parse(output, molecule_pb2.ParseMoleculeResponse())
    assert answer.provenance.request_id == "interop-42"


def test_invalid_smiles_is_invalid_argument(go_tools: GoTools, server: RunningServer) -> None:
    invalid = "C1CC"  # an unclosed ring
    assert Chem.MolFromSmiles(invalid) is None  # RDKit agrees it is not a molecule
    flags = ("-d", json.dumps({"smiles": invalid}))
    code, output = _grpcurl(go_tools, server, PARSE_MOLECULE, flags=flags)
    assert code != 0, output
    assert "InvalidArgument" in output


@pytest.mark.parametrize("service", ["", MOLECULE_SERVICE.full_name, STRUCTURE_SERVICE.full_name])
def test_health_probe_reports_serving(
    go_tools: GoTools, server: RunningServer, service: str
) -> None:
    done = go_tools.health_probe(f"-addr={server.address}", f"-service={service}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "status: SERVING" in done.stdout + done.stderr


def test_health_probe_fails_for_an_unknown_service(
    go_tools: GoTools, server: RunningServer
) -> None:
    done = go_tools.health_probe(f"-addr={server.address}", "-service=qulab.v1.NoSuchService")
    assert done.returncode != 0, done.stdout + done.stderr
    assert "status: SERVING" not in done.stdout
