"""MoleculeService through a real server: answers equal RDKit's, provenance is complete,
errors carry their details, streams keep order, encodings equal RDKit's generators."""

from __future__ import annotations

import hashlib
import importlib.metadata
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from google.rpc import code_pb2
from rdkit import Chem
from rdkit.Chem import Descriptors, rdFingerprintGenerator, rdMolDescriptors

from qulab.client import Client, from_tensor
from qulab.v1 import molecule_pb2
from tests.conftest import RunningServer
from tests.integration._status import failure_of, unpack_status

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.address, timeout=30) as qulab:
        yield qulab


def test_parse_molecule_matches_rdkit(client: Client) -> None:
    smiles = "C[C@H](N)C(=O)O"
    answer = client.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles=smiles, id="ala"))
    reference = Chem.MolFromSmiles(smiles)
    mol = answer.molecule
    assert answer.id == "ala"
    assert mol.canonical_smiles == Chem.MolToSmiles(reference)
    assert mol.inchikey == Chem.MolToInchiKey(reference)
    assert mol.formula == rdMolDescriptors.CalcMolFormula(reference)
    assert mol.average_mass == pytest.approx(Descriptors.MolWt(reference), abs=1e-9)
    assert mol.monoisotopic_mass == pytest.approx(Descriptors.ExactMolWt(reference), abs=1e-9)
    assert [a.symbol for a in mol.atoms] == [a.GetSymbol() for a in reference.GetAtoms()]
    assert len(mol.bonds) == reference.GetNumBonds()
    assert mol.num_stereocenters == 1


def test_provenance_is_complete_and_logged(client: Client, server: RunningServer) -> None:
    request = molecule_pb2.ParseMoleculeRequest(smiles="OCC(O)CO")
    before_ns = time.time_ns()
    answer = client.parse_molecule(request, metadata=[("x-request-id", "trace-me-1")])
    after_ns = time.time_ns()
    p = answer.provenance
    payload = request.SerializeToString(deterministic=True)
    assert p.request_id == "trace-me-1"
    assert p.method == "/qulab.v1.MoleculeService/ParseMolecule"
    assert p.principal == "anonymous"
    assert p.input_sha256 == hashlib.sha256(payload).hexdigest()
    assert p.input_size_bytes == len(payload)
    without = molecule_pb2.ParseMoleculeResponse()
    without.CopyFrom(answer)
    without.ClearField("provenance")
    assert p.output_size_bytes == without.ByteSize()
    stamps = [
        p.received_time.ToNanoseconds(),
        p.started_time.ToNanoseconds(),
        p.finished_time.ToNanoseconds(),
    ]
    assert before_ns <= stamps[0] <= stamps[1] <= stamps[2] <= after_ns
    assert p.compute_duration.ToNanoseconds() > 0
    assert p.library_versions["rdkit"] == importlib.metadata.version("rdkit")
    assert p.library_versions["selfies"] == importlib.metadata.version("selfies")
    assert p.server_version
    assert dict(p.parameters) == {
        "sanitize": "true",
        "remove_hydrogens": "true",
        "strict": "false",
        "kekulize": "false",
        "isomeric": "true",
    }
    assert p.worker_pid > 0
    assert not p.cache_hit
    line = server.wait_for_log(message="rpc", request_id="trace-me-1")
    assert line["input_sha256"] == p.input_sha256
    assert line["code"] == "OK"
    assert line["worker_pid"] == p.worker_pid


def test_repeated_request_is_a_cache_hit(client: Client) -> None:
    request = molecule_pb2.ParseMoleculeRequest(smiles="CCCCOC(=O)C")
    first = client.parse_molecule(request)
    second = client.parse_molecule(request)
    assert not first.provenance.cache_hit
    assert second.provenance.cache_hit
    assert second.provenance.worker_pid == 0
    assert second.molecule == first.molecule
    assert second.provenance.request_id != first.provenance.request_id


def test_bad_smiles_is_invalid_argument_with_field_and_position(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles="CC(C"))
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in failure.violations] == ["smiles"]
    assert failure.info is not None
    assert "position" in failure.info.metadata
    assert "Traceback" not in failure.message
    assert failure.trailers["x-request-id"]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (molecule_pb2.ParseMoleculeRequest(), "input"),
        (molecule_pb2.ParseMoleculeRequest(inchi="1S/CH4/h1H4"), "inchi"),
        (molecule_pb2.ParseMoleculeRequest(smiles="C", id="x" * 300), "id"),
    ],
)
def test_contract_rules_are_enforced(
    client: Client, request_: molecule_pb2.ParseMoleculeRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.parse_molecule(request_)
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in failure.violations] == [field]


def test_stream_keeps_order_and_reports_errors_per_item(client: Client) -> None:
    inputs = ["CCO", "C1CC", "c1ccccc1", "", "[Xx]", "N#N", "CC(=O)O"] * 20
    requests = [
        molecule_pb2.ParseMoleculeRequest(smiles=s, id=str(i))
        if s
        else molecule_pb2.ParseMoleculeRequest(id=str(i))
        for i, s in enumerate(inputs)
    ]
    answers = list(client.parse_molecules(requests, timeout=60))
    assert [a.id for a in answers] == [str(i) for i in range(len(inputs))]
    for text, answer in zip(inputs, answers, strict=True):
        reference = Chem.MolFromSmiles(text) if text else None
        if reference is None:
            assert answer.error.code == code_pb2.INVALID_ARGUMENT, text
            assert unpack_status(answer.error).violations, text
            assert not answer.HasField("molecule")
        else:
            assert answer.error.code == code_pb2.OK
            assert answer.molecule.canonical_smiles == Chem.MolToSmiles(reference)
            assert answer.provenance.method.endswith("/ParseMolecules")


def test_stream_larger_than_its_window(client: Client) -> None:
    count = 1500  # well over the default window of 64 items in flight
    requests = (
        molecule_pb2.ParseMoleculeRequest(smiles="C" * (1 + i % 40), id=str(i))
        for i in range(count)
    )
    ids = [a.id for a in client.parse_molecules(requests, timeout=120)]
    assert ids == [str(i) for i in range(count)]


def _morgan_reference(smiles: list[str], n_bits: int) -> np.ndarray:
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=n_bits)
    return np.array([generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles])


def test_encode_equals_rdkit_and_keeps_order_past_chunks(client: Client) -> None:
    smiles = [("C" * (1 + i % 17)) + "O" + ("c1ccccc1" if i % 3 else "N") for i in range(700)]
    smiles[5] = "C1CC"  # one bad molecule in the first chunk
    request = molecule_pb2.EncodeMoleculeRequest(
        molecules=[molecule_pb2.MoleculeInput(smiles=s) for s in smiles],
        encoding=molecule_pb2.MOLECULE_ENCODING_MORGAN,
        fingerprint=molecule_pb2.FingerprintOptions(n_bits=1024),
    )
    answer = client.encode_molecule(request)
    matrix = from_tensor(answer.features)
    assert matrix.shape == (700, 1024)
    assert matrix.dtype == np.uint8
    codes = [s.code for s in answer.item_status]
    assert codes[5] == code_pb2.INVALID_ARGUMENT
    assert [v.field for v in unpack_status(answer.item_status[5]).violations] == [
        "molecules[5].smiles"
    ]
    assert codes.count(code_pb2.OK) == 699
    assert not matrix[5].any()
    good = [i for i in range(700) if i != 5]
    assert np.array_equal(matrix[good], _morgan_reference([smiles[i] for i in good], 1024))
    assert (
        answer.provenance.input_sha256
        == hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
    )
    assert answer.provenance.parameters["encoding"] == "MOLECULE_ENCODING_MORGAN"
    assert answer.provenance.parameters["n_bits"] == "1024"


def test_encode_descriptors_are_named(client: Client) -> None:
    answer = client.encode_molecule(
        molecule_pb2.EncodeMoleculeRequest(
            molecules=[molecule_pb2.MoleculeInput(smiles="CCO")],
            encoding=molecule_pb2.MOLECULE_ENCODING_RDKIT_DESCRIPTORS,
        )
    )
    matrix = from_tensor(answer.features)
    names = list(answer.feature_names)
    assert matrix.shape == (1, len(names))
    assert matrix.dtype == np.float64
    reference = Descriptors.CalcMolDescriptors(Chem.MolFromSmiles("CCO"))
    assert names == list(reference)
    assert matrix[0, names.index("MolWt")] == pytest.approx(reference["MolWt"])


def test_encode_without_an_encoding_is_refused(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.encode_molecule(
            molecule_pb2.EncodeMoleculeRequest(molecules=[molecule_pb2.MoleculeInput(smiles="C")])
        )
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in failure.violations] == ["encoding"]
