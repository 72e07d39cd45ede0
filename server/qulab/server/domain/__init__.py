"""Pure domain functions: protobuf messages in, protobuf messages out; no gRPC.

Importing this package is cheap: the functions that need RDKit (`parse_molecule`,
`encode_molecules`) load their modules on first access, so the server's event-loop
process can use the limits and option helpers without loading RDKit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qulab.server.domain._molecule_limits import MoleculeLimits
from qulab.server.domain.options import encode_parameters, parse_parameters
from qulab.server.domain.structure_options import StructureLimits

if TYPE_CHECKING:
    from qulab.server.domain.molecule_features import encode_molecules
    from qulab.server.domain.molecules import parse_molecule

__all__ = [
    "MoleculeLimits",
    "StructureLimits",
    "encode_molecules",
    "encode_parameters",
    "parse_molecule",
    "parse_parameters",
]

_LAZY = {
    "encode_molecules": "qulab.server.domain.molecule_features",
    "parse_molecule": "qulab.server.domain.molecules",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
