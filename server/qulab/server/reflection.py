"""gRPC server reflection that also answers for method names.

grpcio-reflection looks a symbol up with `DescriptorPool.FindFileContainingSymbol`, which
on protobuf's upb backend finds services, messages, fields and enums but not methods
("qulab.v1.MoleculeService.ParseMolecule"). Tools that ask by method name, ghz among
them, then get NOT_FOUND. The pool below answers a method name with its service's file,
which is what the reflection protocol asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pool
from grpc_reflection.v1alpha import reflection

__all__ = ["enable"]


class _MethodAwarePool:
    """The default pool, with method names found through their service."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, symbol: str) -> descriptor.FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                raise KeyError(symbol) from None
            if method not in service.methods_by_name:
                raise
            return service.file

    def __getattr__(self, name: str) -> Any:  # every other lookup as the pool does it
        return getattr(self._pool, name)


def enable(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    reflection.enable_server_reflection(
        service_names,
        server,
        pool=_MethodAwarePool(descriptor_pool.Default()),  # type: ignore[arg-type]
    )
