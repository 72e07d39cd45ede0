"""Typed Python clients for the QuLab gRPC service.

from qulab.client import Client, from_tensor
from qulab.v1 import molecule_pb2

with Client("localhost:50051") as qulab:
    mol = qulab.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles="CCO")).molecule
"""

from qulab.client._async import AsyncClient
from qulab.client._options import DEFAULT_TIMEOUT_S
from qulab.client._sync import Client
from qulab.client._version import __version__
from qulab.tensors import from_tensor, to_tensor

__all__ = ["DEFAULT_TIMEOUT_S", "AsyncClient", "Client", "__version__", "from_tensor", "to_tensor"]
