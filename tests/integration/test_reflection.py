"""Server reflection answers for every kind of symbol a tool may ask about, methods
included (grpcio-reflection alone does not find methods over the upb descriptor pool)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import RunningServer


def _file_containing(server: RunningServer, symbol: str) -> reflection_pb2.ServerReflectionResponse:
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    return answer


@pytest.mark.parametrize(
    ("symbol", "file"),
    [
        ("qulab.v1.MoleculeService", "qulab/v1/molecule.proto"),
        ("qulab.v1.MoleculeService.ParseMolecule", "qulab/v1/molecule.proto"),
        ("qulab.v1.StructureService.EncodeStructure", "qulab/v1/structure.proto"),
        ("qulab.v1.ParseMoleculeRequest", "qulab/v1/molecule.proto"),
    ],
)
def test_symbols_resolve_to_their_file(server: RunningServer, symbol: str, file: str) -> None:
    answer = _file_containing(server, symbol)
    assert answer.WhichOneof("message_response") == "file_descriptor_response", answer
    names = [
        descriptor_pb2.FileDescriptorProto.FromString(raw).name
        for raw in answer.file_descriptor_response.file_descriptor_proto
    ]
    assert names[0] == file, names  # the file itself first, then what it imports


@pytest.mark.parametrize(
    "symbol", ["qulab.v1.MoleculeService.NoSuchMethod", "qulab.v1.Nothing", "nope"]
)
def test_unknown_symbols_are_not_found(server: RunningServer, symbol: str) -> None:
    answer = _file_containing(server, symbol)
    assert answer.WhichOneof("message_response") == "error_response"
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
