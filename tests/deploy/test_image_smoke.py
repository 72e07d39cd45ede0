"""The image without Docker: the Dockerfile's build stage run as written (its COPY and uv
steps, its environment going to /opt/qulab as in the image: `.tools/image/opt` mounted on
/opt in a mount namespace of its own), then the server started the way the runtime stage
starts it, as its unprivileged user, with the root filesystem read-only and only a fresh
/tmp writable (another mount namespace; `unshare` needs root). It must start, pass the HEALTHCHECK,
answer calls that load every scientific library, serve metrics, and drain on SIGTERM."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._gotools import Unavailable as GoToolsUnavailable
from bench._gotools import ensure_built
from qulab.client import Client
from qulab.v1 import molecule_pb2, spectrum_pb2, structure_pb2, units_pb2
from tests.conftest import ROOT, RunningServer
from tests.deploy import _tools
from tests.deploy._dockerfile import Stage, parse
from tests.deploy.conftest import unavailable

pytestmark = pytest.mark.timeout(_tools.SETUP_TIMEOUT_S + 300)

IMAGE_OPT = ROOT / ".tools" / "image" / "opt"
"""What the sandboxes here see as /opt: the image's environment is its `qulab`."""
IMAGE_ENV = IMAGE_OPT / "qulab"
_START_TIMEOUT_S = 120.0
NACL_CIF = b"""data_NaCl
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Na1 Na 0 0 0
Cl1 Cl 0.5 0.5 0.5
"""
JCAMP = b"""##TITLE=smoke
##JCAMP-DX=4.24
##DATA TYPE=INFRARED SPECTRUM
##XUNITS=1/CM
##YUNITS=TRANSMITTANCE
##XFACTOR=1
##YFACTOR=1
##FIRSTX=1000
##LASTX=1003
##NPOINTS=4
##FIRSTY=10
##XYDATA=(X++(Y..Y))
1000 10 20 30 40
##END=
"""


def _stages() -> tuple[Stage, Stage]:
    stages = parse(ROOT / "Dockerfile")
    build = next(s for s in stages if s.name == "build")
    return build, stages[-1]


def _world_usable(path: Path) -> bool:
    """Whether a user other than root can run `path` (every folder above it searchable)."""
    resolved = path.resolve()
    if not resolved.is_file() or not resolved.stat().st_mode & stat.S_IXOTH:
        return False
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in resolved.parents)


def _python() -> str:
    """A Python of this minor version that the unprivileged user can run (the image's is
    /usr/local/bin/python3.X, root-owned and world-readable)."""
    minor = f"python3.{sys.version_info.minor}"
    base = Path(getattr(sys, "_base_executable", sys.executable))
    for candidate in (Path("/usr/local/bin") / minor, Path("/usr/bin") / minor, base):
        if _world_usable(candidate):
            return str(candidate)
    unavailable(f"no {minor} here that an unprivileged user can run")


def _copy(sources: list[str], destination: str, workdir: Path) -> None:
    target = workdir / destination
    for source in sources:
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(
                origin,
                target,
                symlinks=True,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        else:
            target.mkdir(parents=True, exist_ok=True) if destination.endswith("/") else None
            shutil.copy2(origin, target / origin.name if destination.endswith("/") else target)


def _on_opt(argv: list[str], *mount_options: str) -> list[str]:
    """`argv` run in a mount namespace of its own where IMAGE_OPT is mounted on /opt."""
    options = ",".join(("remount", "bind", *mount_options))
    script = f'mount --bind "$0" /opt && mount -o {options} /opt && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script,
            str(IMAGE_OPT), *argv]  # fmt: skip


def _build(context: Path) -> None:
    """Run the build stage's COPY and uv steps in `context` (its WORKDIR), with the
    stage's ENV, the environment going to /opt/qulab, which is IMAGE_ENV here; so its
    scripts name /opt/qulab/bin/python, as in the image."""
    build, _ = _stages()
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv is not None
    env = build.env()
    assert env["UV_PROJECT_ENVIRONMENT"] == "/opt/qulab"
    shutil.rmtree(IMAGE_OPT, ignore_errors=True)
    IMAGE_OPT.mkdir(parents=True)
    steps = 0
    for instruction in build.instructions:
        if instruction.keyword == "COPY":
            *sources, destination = instruction.arguments.split()
            _copy(sources, destination, context)
        elif instruction.keyword == "RUN" and instruction.arguments.startswith("uv "):
            argv = _on_opt([uv, *shlex.split(instruction.arguments)[1:]])
            # This machine's environment (its proxy and certificate settings among it),
            # less the project's own virtual environment.
            here = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
            done = subprocess.run(
                argv,
                cwd=context,
                env={**here, **env, "UV_PYTHON": _python()},
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert done.returncode == 0, f"{instruction.arguments}:\n{done.stderr}"
            steps += 1
    assert steps == 2  # the dependencies, then the projects


def _sandboxed(env: dict[str, str], user: str) -> RunningServer:
    """The server as the runtime stage starts it, in a mount namespace where the image's
    /opt and / are read-only and /tmp a fresh tmpfs, as the image's user, with the
    image's environment only."""
    uid, _, gid = user.partition(":")
    env_words = [f"{k}={v}" for k, v in env.items()]
    script = (
        "mount -o remount,bind,ro / && mount -t tmpfs -o size=256m tmpfs /tmp && "
        f"exec setpriv --reuid {uid} --regid {gid} --clear-groups "
        f"env -i {shlex.join(env_words)} qulab-server"
    )
    argv = _on_opt(["/bin/sh", "-c", script], "ro")
    return RunningServer({}, argv=argv, cwd=Path("/"))


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    if os.geteuid() != 0:
        unavailable("the image smoke test needs root (a mount namespace, another user)")
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed")
    probe = shutil.which("unshare")
    check = subprocess.run(
        [str(probe), "--mount", "--propagation", "private", "true"],
        capture_output=True,
        check=False,
    )
    if check.returncode != 0:
        unavailable(f"no mount namespaces here: {check.stderr.decode(errors='replace')}")
    _build(tmp_path_factory.mktemp("context"))
    _, runtime = _stages()
    env = runtime.env()
    env["PATH"] = env["PATH"].replace("$PATH", "/usr/bin:/bin")
    env.update(
        {"QULAB_AUTH": "none", "QULAB_PORT": "0", "QULAB_METRICS_PORT": "0", "QULAB_WORKERS": "1"}
    )
    server = _sandboxed(env, runtime.one("USER").arguments)
    yield server
    server.stop(signal.SIGKILL)


def test_the_image_environment_holds_no_dev_tools(sandboxed: RunningServer) -> None:
    installed = {p.name.lower() for p in (IMAGE_ENV / "lib").glob("python3.*/site-packages/*")}
    assert any(name.startswith("qulab_server-") for name in installed)
    # Built where the image has it, so its scripts run there.
    shebang = (IMAGE_ENV / "bin" / "qulab-server").read_text().splitlines()[0]
    assert shebang == "#!/opt/qulab/bin/python"
    for dev in ("pytest", "mypy", "ruff", "checkov", "kubernetes_validate", "grpc_tools"):
        assert not any(name.startswith(dev) for name in installed), dev


def test_the_server_runs_read_only_as_the_image_user(sandboxed: RunningServer) -> None:
    address = f"127.0.0.1:{sandboxed.port}"
    with Client(address, timeout=60) as client:
        molecule = client.parse_molecule(molecule_pb2.ParseMoleculeRequest(smiles="OCC"))
        assert molecule.molecule.canonical_smiles == "CCO"
        crystal = client.parse_structure(structure_pb2.ParseStructureRequest(content=NACL_CIF))
        assert crystal.structures[0].formula
        spectrum = client.parse_spectrum(spectrum_pb2.ParseSpectrumRequest(content=JCAMP))
        assert spectrum.blocks[0].title == "smoke"
        units = client.convert_units(
            units_pb2.ConvertUnitsRequest(
                values=[500], from_unit="nm", to_unit="1/cm", context="spectroscopy"
            )
        )
        assert abs(units.values[0] - 20000) < 1e-6
    with urllib.request.urlopen(f"http://127.0.0.1:{sandboxed.metrics_port}/metrics") as page:
        assert b"qulab_build_info" in page.read()
    # The process really is the image's user, in a namespace whose / is read-only.
    status = Path(f"/proc/{sandboxed.process.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1] == "10001"
    mounts = Path(f"/proc/{sandboxed.process.pid}/mounts").read_text().splitlines()
    root = next(line.split() for line in mounts if line.split()[1] == "/")
    assert "ro" in root[3].split(",")


def test_the_healthcheck_passes_in_the_image(sandboxed: RunningServer) -> None:
    try:
        probe_bin = ensure_built()
    except GoToolsUnavailable as why:
        unavailable(str(why))
    _, runtime = _stages()
    script = runtime.one("HEALTHCHECK").exec_form()[2]
    end = time.monotonic() + 30
    while True:
        done = subprocess.run(
            ["/bin/sh", "-c", script],
            env={"PATH": f"{probe_bin}:/usr/bin:/bin", "QULAB_PORT": str(sandboxed.port)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode == 0 or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert done.returncode == 0, done.stdout + done.stderr


def test_sigterm_drains_and_nothing_wanted_to_write(sandboxed: RunningServer) -> None:
    sandboxed.process.send_signal(signal.SIGTERM)
    assert sandboxed.process.wait(60) == 0
    assert any(e.get("message") == "stopped" for e in sandboxed.logs)
    text = "\n".join(sandboxed.raw)
    for trouble in ("Read-only file system", "Permission denied", "Traceback"):
        assert trouble not in text
