"""Typed Python clients for the QuLab gRPC service.

from qulab.client import Client, from_tensor
from qulab.v1 import molecule_pb2

with Client("localhost:50051") as qulab:
    mol = qulab.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles="CCO")).molecule

Retries, default deadlines, a circuit breaker and typed exceptions (`qulab.client.errors`)
come with every client; credentials are built with `api_key`, `bearer_token` and `tls`.
"""

from qulab.client._async import AsyncClient
from qulab.client._options import DEFAULT_TIMEOUT_S, service_config
from qulab.client._sync import Client
from qulab.client._version import __version__
from qulab.client.breaker import CircuitBreaker
from qulab.client.credentials import Credentials, api_key, bearer_token, tls
from qulab.client.errors import QulabError
from qulab.tensors import from_tensor, to_tensor

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "AsyncClient",
    "CircuitBreaker",
    "Client",
    "Credentials",
    "QulabError",
    "__version__",
    "api_key",
    "bearer_token",
    "from_tensor",
    "service_config",
    "tls",
    "to_tensor",
]
