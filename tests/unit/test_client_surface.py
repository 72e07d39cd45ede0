"""The public surface of the client package is deliberate: a change here is an API change."""

from __future__ import annotations

import subprocess
import sys

import qulab.client


def test_public_names() -> None:
    assert sorted(qulab.client.__all__) == [
        "AsyncClient",
        "Client",
        "DEFAULT_TIMEOUT_S",
        "__version__",
        "from_tensor",
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
        "health",
        "parse_molecule",
        "parse_molecules",
        "parse_spectrum",
        "parse_structure",
        "write_structure",
    }
    for cls in (qulab.client.Client, qulab.client.AsyncClient):
        public = {n for n in vars(cls) if not n.startswith("_")}
        assert public == expected, cls


def test_client_imports_without_rdkit() -> None:
    code = (
        "import sys; import qulab.client, qulab.v1.molecule_pb2; "
        "assert 'rdkit' not in sys.modules and 'qulab.server' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
