"""grpc-health-probe, as a Kubernetes readiness probe runs it, against a server of its own
that is draining: SERVING (exit 0) with work in flight before SIGTERM, NOT_SERVING (exit 4,
the probe's "unhealthy") after it while that work is still being finished, and the server
then finishes it and exits 0 by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from qulab.client import Client
from qulab.v1 import molecule_pb2
from tests.conftest import RunningServer
from tests.integration._workers import worker_pids
from tests.interop.conftest import INSTALL_TIMEOUT_S, GoTools

pytestmark = [pytest.mark.interop, pytest.mark.timeout(INSTALL_TIMEOUT_S + 180)]

PROBE_UNHEALTHY = 4
"""grpc-health-probe's exit code when the server answers, with a status other than SERVING."""
NAMES = ["", "qulab.v1.MoleculeService"]
_SETTLE_S = 10.0
"""How long the drain may take to reach the health service after SIGTERM."""


def _probe(
    go_tools: GoTools, server: RunningServer, service: str
) -> subprocess.CompletedProcess[str]:
    return go_tools.health_probe(
        f"-addr={server.address}",
        f"-service={service}",
        "-connect-timeout=5s",
        "-rpc-timeout=5s",
    )


def _probe_until_unhealthy(
    go_tools: GoTools, server: RunningServer, service: str
) -> subprocess.CompletedProcess[str]:
    """The first probe that is not SERVING, or the last SERVING one after _SETTLE_S: the
    server logs "draining" just before it sets the health statuses."""
    end = time.monotonic() + _SETTLE_S
    while True:
        done = _probe(go_tools, server, service)
        if done.returncode != 0 or time.monotonic() > end:
            return done
        time.sleep(0.1)


def test_health_probe_reports_not_serving_during_drain(
    go_tools: GoTools, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(workers="1", drain_grace_s="60", log_level="DEBUG")
    (worker,) = worker_pids(server, 1)
    with Client(server.address, timeout=60) as client, ThreadPoolExecutor(1) as pool:
        os.kill(worker, signal.SIGSTOP)  # the call stays in flight until we say
        try:
            in_flight = pool.submit(
                client.parse_molecule, molecule_pb2.ParseMoleculeRequest(smiles="OCC(N)=O")
            )
            server.wait_for_log(message="queued")
            for name in NAMES:  # work in flight is no reason to be unready
                before = _probe(go_tools, server, name)
                assert before.returncode == 0, before.stdout + before.stderr
                assert "status: SERVING" in before.stdout + before.stderr

            server.process.send_signal(signal.SIGTERM)
            server.wait_for_log(message="draining")
            for name in NAMES:
                during = _probe_until_unhealthy(go_tools, server, name)
                output = during.stdout + during.stderr
                assert during.returncode == PROBE_UNHEALTHY, output
                assert '"NOT_SERVING"' in output
            # Still draining, not gone: the probe saw the drain, not a stopped server.
            assert server.process.poll() is None
            assert not server.log_entries(message="stopped")
        finally:
            os.kill(worker, signal.SIGCONT)
        answer = in_flight.result(60)
    assert answer.molecule.canonical_smiles == "NC(=O)CO"
    assert server.process.wait(60) == 0
    messages = [e.get("message") for e in server.logs]
    assert messages.index("draining") < messages.index("stopped")
