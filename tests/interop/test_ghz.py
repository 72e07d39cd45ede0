"""ghz, a load generator written in Go, against the shared real server: short bounded runs
of ParseMolecule, their JSON reports read back. Every call of a valid run is OK, every call
of an invalid one INVALID_ARGUMENT, and the server's log shows that it computed each call
from a molecule of its own (ghz templates the request per call), not from its result cache.

ghz takes the schema from a protoset written from the generated descriptors
(`bench.ghz.write_protoset`, which also carries buf/validate/validate.proto), because
through reflection it cannot find the method: see the expected failure at the end."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from bench.ghz import PARSE_MOLECULE
from tests.conftest import RunningServer
from tests.interop.conftest import INSTALL_TIMEOUT_S, GoTools

pytestmark = [pytest.mark.interop, pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)]

# A Go template per call, over ghz's call data (.RequestNumber counts the calls) and the
# sprig functions it offers; backquotes are template strings that need no JSON escaping.
_CHAIN = "{{repeat (int .RequestNumber) `C`}}"
VALID = f"N#CC{_CHAIN}C(=O)O"
"""A cyano acid with one more carbon per call: every request a different molecule."""
INVALID = f"C1CC{_CHAIN}"
"""A ring opened and never closed, which RDKit refuses, whatever the chain."""


def _ghz(
    go_tools: GoTools,
    server: RunningServer,
    smiles: str,
    total: int,
    request_id: str,
) -> dict[str, Any]:
    """One bounded ghz run of `total` calls; its JSON report."""
    done = go_tools.ghz(
        "--insecure",
        f"--call={PARSE_MOLECULE}",
        f"--data={json.dumps({'smiles': smiles})}",
        f"--metadata={json.dumps({'x-request-id': request_id + '-{{.RequestNumber}}'})}",
        f"--total={total}",
        "--concurrency=8",
        "--connections=2",
        "--timeout=10s",  # per call; the whole run is bounded by RUN_TIMEOUT_S
        "--connect-timeout=5s",
        "--format=json",
        server.address,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _logged(server: RunningServer, request_id: str, count: int) -> list[dict[str, Any]]:
    """The server's log lines of the calls whose request id starts with `request_id`, once
    there are `count` of them (its log is read by a thread, a little behind)."""
    end = time.monotonic() + 10
    while True:
        lines = [e for e in server.logs if str(e.get("request_id", "")).startswith(request_id)]
        if len(lines) >= count or time.monotonic() > end:
            return lines
        time.sleep(0.05)


def test_ghz_run_of_valid_molecules_is_all_ok(go_tools: GoTools, server: RunningServer) -> None:
    total = 200
    request_id = f"ghz-valid-{uuid.uuid4().hex[:8]}"
    report = _ghz(go_tools, server, VALID, total, request_id)
    assert report["endReason"] == "normal", report["endReason"]
    assert report["count"] == total
    assert report["statusCodeDistribution"] == {"OK": total}, report["errorDistribution"]
    assert not report["errorDistribution"]
    assert len(report["details"]) == total
    assert report["rps"] > 0
    assert {p["percentage"] for p in report["latencyDistribution"]} >= {50, 90, 99}

    lines = _logged(server, request_id, total)
    assert len(lines) == total
    assert {e["code"] for e in lines} == {"OK"}
    assert {e["method"] for e in lines} == {f"/{PARSE_MOLECULE}"}
    assert len({e["input_sha256"] for e in lines}) == total  # a molecule per call
    assert not any(e["cache_hit"] for e in lines)


def test_ghz_run_of_invalid_smiles_is_all_invalid_argument(
    go_tools: GoTools, server: RunningServer
) -> None:
    total = 100
    request_id = f"ghz-invalid-{uuid.uuid4().hex[:8]}"
    report = _ghz(go_tools, server, INVALID, total, request_id)
    assert report["endReason"] == "normal", report["endReason"]
    assert report["count"] == total
    assert report["statusCodeDistribution"] == {"InvalidArgument": total}
    assert sum(report["errorDistribution"].values()) == total
    assert all("code = InvalidArgument" in error for error in report["errorDistribution"])

    lines = _logged(server, request_id, total)
    assert len(lines) == total
    assert {e["code"] for e in lines} == {"INVALID_ARGUMENT"}
    assert len({e["input_sha256"] for e in lines}) == total
