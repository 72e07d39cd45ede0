"""The `qulab-client` distribution on its own: its wheel installs into a fresh virtual
environment without RDKit or the server, and talks to a real server from there."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunningServer

UV = Path(sys.executable).parent / "uv"
_CALL = """
import hashlib, importlib.util, sys
from qulab.client import Client, from_tensor, service_config
from qulab.v1 import molecule_pb2
for absent in ("rdkit", "qulab.server"):
    assert importlib.util.find_spec(absent) is None, absent
with Client(sys.argv[1]) as qulab:
    answer = qulab.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles="OCC"))
    print(answer.molecule.canonical_smiles)
    encoded = qulab.encode_molecule(molecule_pb2.EncodeMoleculeRequest(
        molecules=[molecule_pb2.MoleculeInput(smiles="CCO")],
        encoding=molecule_pb2.MOLECULE_ENCODING_MACCS))
    print(from_tensor(encoded.features).shape)
    print(qulab.health())
print(hashlib.sha256(service_config().encode()).hexdigest())
"""


@pytest.mark.timeout(300)
def test_client_wheel_works_without_rdkit(server: RunningServer, tmp_path: Path) -> None:
    def run(*argv: str | Path) -> str:
        done = subprocess.run(
            [str(a) for a in argv], capture_output=True, text=True, timeout=240, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run(UV, "build", "--wheel", ROOT / "clients" / "python", "--out-dir", tmp_path / "dist")
    (wheel,) = (tmp_path / "dist").glob("qulab_client-*.whl")
    run(UV, "venv", "--python", sys.executable, tmp_path / "venv")
    python = tmp_path / "venv" / "bin" / "python"
    run(UV, "pip", "install", "--python", python, wheel)
    out = run(python, "-c", _CALL, server.address).split("\n")
    assert out[:3] == ["CCO", "(1, 167)", "1"], out
    # The wheel carries the shared retry policy itself, not a link to it.
    shared = (ROOT / "clients" / "service_config.json").read_bytes()
    assert out[3] == hashlib.sha256(shared).hexdigest()
