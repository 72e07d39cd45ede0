"""The contract as generated code: every qulab.v1 module with services, for tests that go
over every service or method."""

from __future__ import annotations

from google.protobuf import descriptor

from qulab.v1 import molecule_pb2, server_pb2, spectrum_pb2, structure_pb2, tools_pb2, units_pb2

MODULES = (molecule_pb2, structure_pb2, spectrum_pb2, units_pb2, server_pb2, tools_pb2)


def services() -> list[descriptor.ServiceDescriptor]:
    return [s for module in MODULES for s in module.DESCRIPTOR.services_by_name.values()]


def methods() -> list[descriptor.MethodDescriptor]:
    return [method for service in services() for method in service.methods]


def path_of(method: descriptor.MethodDescriptor) -> str:
    """The method as gRPC names it: "/qulab.v1.MoleculeService/ParseMolecule"."""
    return f"/{method.containing_service.full_name}/{method.name}"
