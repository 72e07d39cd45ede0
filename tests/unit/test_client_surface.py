"""The public surface of the client package is deliberate: a change here is an API change."""

from __future__ import annotations

import inspect
import subprocess
import sys

import grpc

import qulab.client
import qulab.client.errors


def test_public_names() -> None:
    assert sorted(qulab.client.__all__) == [
        "AsyncClient",
        "CircuitBreaker",
        "Client",
        "Credentials",
        "DEFAULT_TIMEOUT_S",
        "QulabError",
        "__version__",
        "api_key",
        "bearer_token",
        "from_tensor",
        "service_config",
        "tls",
        "to_tensor",
    ]
    for name in qulab.client.__all__:
        assert hasattr(qulab.client, name)


def test_client_methods() -> None:
    expected = {
        "close",
        "convert_units",
        "encode_molecule",
        "encode_spectrum",
        "encode_structure",
        "call_tool",
        "health",
        "list_tools",
        "parse_molecule",
        "parse_molecules",
        "parse_spectrum",
        "parse_structure",
        "write_structure",
    }
    for cls in (qulab.client.Client, qulab.client.AsyncClient):
        public = {n for n in vars(cls) if not n.startswith("_")}
        assert public == expected, cls


def test_client_constructor_options() -> None:
    for cls in (qulab.client.Client, qulab.client.AsyncClient):
        parameters = inspect.signature(cls).parameters
        assert list(parameters) == [
            "target",
            "timeout",
            "credentials",
            "options",
            "retries",
            "breaker",
        ], cls


def test_one_exception_class_per_status_code() -> None:
    by_code = {
        cls.status_code: cls
        for cls in vars(qulab.client.errors).values()
        if isinstance(cls, type)
        and issubclass(cls, qulab.client.errors.QulabError)
        and cls.__bases__ == (qulab.client.errors.QulabError,)
    }
    assert set(by_code) == set(grpc.StatusCode) - {grpc.StatusCode.OK}
    for code, cls in by_code.items():
        assert cls.__name__.lower() == code.name.replace("_", "").lower()
        assert issubclass(cls, grpc.RpcError)


def test_client_imports_without_rdkit() -> None:
    code = (
        "import sys; import qulab.client, qulab.v1.molecule_pb2; "
        "assert 'rdkit' not in sys.modules and 'qulab.server' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
