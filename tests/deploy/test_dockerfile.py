"""The Dockerfile: hadolint-clean; its runtime stage slim, unprivileged, without compilers,
exposing the server's ports, stopping with SIGTERM; its HEALTHCHECK command run as written
against real servers (plaintext, TLS, mTLS, draining, gone).

There is no Docker engine here to build the image; `test_image_smoke.py` runs the build
stage's install steps and the runtime as the image would."""

from __future__ import annotations

import datetime
import fnmatch
import ipaddress
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from bench._gotools import Unavailable as GoToolsUnavailable
from bench._gotools import ensure_built, pinned_version
from qulab.client import Client
from qulab.server.config import Settings
from qulab.v1 import molecule_pb2
from tests.conftest import ROOT, RunningServer
from tests.deploy import _tools
from tests.deploy._dockerfile import Stage, parse
from tests.deploy.conftest import Manifest, find, run, unavailable
from tests.integration._certs import Issued, make_ca, make_client, subject
from tests.integration._workers import worker_pids

pytestmark = pytest.mark.timeout(_tools.SETUP_TIMEOUT_S + 180)

DOCKERFILE = ROOT / "Dockerfile"
STAGES = parse(DOCKERFILE)
RUNTIME = STAGES[-1]
_SETTLE_S = 30.0


def _stage(name: str) -> Stage:
    return next(s for s in STAGES if s.name == name)


def test_hadolint_is_clean(hadolint: Path) -> None:
    done = run([str(hadolint), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_hadolint_can_fail(hadolint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install grpcio\nCMD python -m qulab.server\n")
    done = run([str(hadolint), "--no-color", str(bad)])
    assert done.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3025"):
        assert rule in done.stdout


def test_stages_build_the_probe_the_environment_and_a_slim_runtime() -> None:
    assert [s.name for s in STAGES] == ["probe", "build", None]
    for stage in STAGES:
        image, _, tag = stage.base.partition(":")
        assert tag, f"{image} is not pinned to a tag"
        assert tag != "latest"
    # The virtual environment's python is a link to the base image's: the same image.
    assert RUNTIME.base == _stage("build").base
    assert re.fullmatch(r"python:3\.\d+-slim-\w+", RUNTIME.base)
    copied = [i.arguments for i in RUNTIME.all("COPY")]
    assert copied == [
        "--from=build /opt/qulab /opt/qulab",
        "--from=probe /out/grpc-health-probe /usr/local/bin/grpc-health-probe",
    ]


def test_runtime_is_unprivileged_and_has_no_compilers() -> None:
    user = RUNTIME.one("USER").arguments
    uid, _, gid = user.partition(":")
    assert int(uid) >= 10000
    assert int(gid) >= 10000
    (run_step,) = RUNTIME.all("RUN")  # creating the user, nothing installed
    assert run_step.arguments.startswith("groupadd")
    text = " ".join(i.arguments for i in RUNTIME.instructions)
    for tool in ("apt-get", "apk", "gcc", "g++", "build-essential", "make ", "pip install"):
        assert tool not in text
    # The build stage needs no compiler either: every dependency is a wheel.
    build = " ".join(i.arguments for i in _stage("build").all("RUN"))
    assert "apt-get" not in build


def test_runtime_needs_nothing_writable_but_tmp() -> None:
    env = RUNTIME.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp"
    assert _stage("build").env()["UV_COMPILE_BYTECODE"] == "1"  # compiled at build time
    assert not RUNTIME.all("VOLUME")


def test_runtime_serves_the_ports_and_stops_on_sigterm() -> None:
    defaults = Settings()
    exposed = RUNTIME.one("EXPOSE").arguments.split()
    assert exposed == [str(defaults.port), str(defaults.metrics_port)]
    assert RUNTIME.one("STOPSIGNAL").arguments == "SIGTERM"
    assert RUNTIME.one("ENTRYPOINT").exec_form() == ["qulab-server"]
    # Reachable from outside the container, hence the secure default applies.
    assert RUNTIME.env()["QULAB_HOST"] == "0.0.0.0"


def test_pins_agree_with_the_rest_of_the_project() -> None:
    makefile = (ROOT / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert uv_version is not None
    (install_uv,) = _stage("build").all("RUN")[:1]
    assert install_uv.arguments == f"pip install --no-cache-dir uv=={uv_version.group(1)}"
    probe = _stage("probe")
    assert probe.all("COPY")[0].arguments.startswith("tests/interop/tools/go.mod")
    assert "github.com/grpc-ecosystem/grpc-health-probe" in probe.all("RUN")[0].arguments
    assert pinned_version("github.com/grpc-ecosystem/grpc-health-probe")
    for stage in STAGES:
        for step in stage.all("RUN"):
            if "uv sync" in step.arguments:
                assert "--locked" in step.arguments
                assert "--no-dev" in step.arguments


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore's patterns leave `path` out (the last matching pattern wins;
    a pattern matches a path or any folder above it)."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        bare = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatchcase(p, bare) for p in prefixes):
            ignored = not negated
    return ignored


def test_dockerignore_sends_what_the_copies_need_and_nothing_else() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    sources = [
        word
        for stage in STAGES
        for copy in stage.all("COPY")
        if not copy.arguments.startswith("--from")
        for word in copy.arguments.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source.rstrip("/"), patterns), f"{source} is left out"
    for unwanted in (".venv/bin/python", ".tools/bin/helm", "tests/data/cif", "bench/ghz.py"):
        assert _ignored(unwanted, patterns), f"{unwanted} is sent to the build"


def _healthcheck_script() -> str:
    instruction = RUNTIME.one("HEALTHCHECK")
    options = instruction.arguments.split(" CMD ")[0].split()
    assert "--start-period=120s" in options  # the workers' start
    shell, flag, script = instruction.exec_form()
    assert (shell, flag) == ("/bin/sh", "-c")
    return script


@pytest.fixture(scope="module")
def probe_bin() -> Path:
    """grpc-health-probe, built from the pins the image's probe stage builds it from."""
    try:
        return ensure_built()
    except GoToolsUnavailable as why:
        unavailable(str(why))


def _healthcheck(probe_bin: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """The HEALTHCHECK command, run as Docker runs it: `sh -c` in the container's
    environment."""
    return run(
        ["/bin/sh", "-c", _healthcheck_script()],
        env={"PATH": f"{probe_bin}:/usr/bin:/bin", **env},
    )


def _healthy_within(probe_bin: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    end = time.monotonic() + _SETTLE_S
    while True:
        done = _healthcheck(probe_bin, env)
        if done.returncode == 0 or time.monotonic() > end:
            return done
        time.sleep(0.2)


def _dual_use_certificate(ca: Issued, directory: Path) -> tuple[Path, Path]:
    """A server certificate (and key) that may also authenticate as a client, with both
    extended key usages: what the HEALTHCHECK presents under mTLS."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject("qulab.qulab.svc"))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    cert_file, key_file = directory / "dual.crt", directory / "dual.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_healthcheck_passes_on_a_serving_server(
    probe_bin: Path, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(workers="1")
    done = _healthy_within(probe_bin, {"QULAB_PORT": str(server.port)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SERVING" in done.stdout + done.stderr


def test_healthcheck_speaks_tls_and_mtls_as_the_server_does(
    probe_bin: Path, start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    ca = make_ca(tmp_path, "ca")
    cert_file, key_file = _dual_use_certificate(ca, tmp_path)
    tls = {"QULAB_TLS_CERT_FILE": str(cert_file), "QULAB_TLS_KEY_FILE": str(key_file)}
    mtls = {**tls, "QULAB_TLS_CLIENT_CA_FILE": str(ca.cert_file)}
    for env in (tls, mtls):
        settings = {k.removeprefix("QULAB_").lower(): v for k, v in env.items()}
        server = start_server(workers="1", **settings)
        done = _healthy_within(probe_bin, {"QULAB_PORT": str(server.port), **env})
        assert done.returncode == 0, done.stdout + done.stderr
        # Without the TLS settings the probe would speak plaintext, and fail.
        plain = _healthcheck(probe_bin, {"QULAB_PORT": str(server.port)})
        assert plain.returncode != 0


def test_healthcheck_fails_while_draining_and_once_stopped(
    probe_bin: Path, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(workers="1", drain_grace_s="30", log_level="DEBUG")
    env = {"QULAB_PORT": str(server.port)}
    assert _healthy_within(probe_bin, env).returncode == 0
    (worker,) = worker_pids(server, 1)
    with Client(server.address, timeout=60) as client, ThreadPoolExecutor(1) as pool:
        os.kill(worker, signal.SIGSTOP)  # a call in flight keeps the drain going
        try:
            call = pool.submit(client.parse_molecule, molecule_pb2.ParseMoleculeRequest(smiles="C"))
            server.wait_for_log(message="queued")
            server.process.send_signal(signal.SIGTERM)
            server.wait_for_log(message="draining")
            end = time.monotonic() + _SETTLE_S
            while (draining := _healthcheck(probe_bin, env)).returncode == 0:
                assert time.monotonic() < end, "healthy all through the drain"
                time.sleep(0.1)
            assert "NOT_SERVING" in draining.stdout + draining.stderr
        finally:
            os.kill(worker, signal.SIGCONT)
        call.result(60)
    assert server.process.wait(60) == 0
    assert _healthcheck(probe_bin, env).returncode != 0


def test_chart_exec_probes_pass_against_an_mtls_server(
    probe_bin: Path,
    start_server: Callable[..., RunningServer],
    all_features_render: list[Manifest],
    tmp_path: Path,
) -> None:
    """The chart's TLS probes (grpc-health-probe in the container, as rendered with mTLS
    and a probe certificate), run against a real mTLS server: readiness and liveness."""
    ca = make_ca(tmp_path, "ca")
    cert_file, key_file = _dual_use_certificate(ca, tmp_path)
    probe_cert = make_client(ca, tmp_path, subject("kubelet-probe"), "probe")
    server = start_server(
        workers="1",
        tls_cert_file=str(cert_file),
        tls_key_file=str(key_file),
        tls_client_ca_file=str(ca.cert_file),
    )
    container = find(all_features_render, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = [
            word.replace("/etc/qulab/probe-tls/tls.crt", str(probe_cert.cert_file))
            .replace("/etc/qulab/probe-tls/tls.key", str(probe_cert.key_file))
            .replace("[::1]:50051", server.address)
            for word in container[kind]["exec"]["command"]
        ]
        assert command[0] == "grpc-health-probe"
        end = time.monotonic() + _SETTLE_S
        while (done := run([str(probe_bin / command[0]), *command[1:]])).returncode != 0:
            assert time.monotonic() < end, f"{kind}: {done.stdout}{done.stderr}"
            time.sleep(0.2)
