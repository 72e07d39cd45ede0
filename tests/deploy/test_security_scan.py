"""checkov over the chart rendered both ways and over the Dockerfile: no failed check. A
check that does not apply is skipped in the chart itself (a `checkov.io/skipN` annotation
on the resource, reason included), and every skip must carry its reason. Without a
Prisma Cloud key checkov reports no severities, so every failed check counts, whatever its
severity would be."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy import _tools
from tests.deploy.conftest import Manifest, find, run

pytestmark = pytest.mark.timeout(_tools.SETUP_TIMEOUT_S + 240)

EXPLAINED = {"CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_43"}
"""The checks the chart skips, each with its reason in deployment.yaml's annotations."""


def _scan(checkov: Path, folder: Path) -> list[dict[str, Any]]:
    done = run(
        [
            str(checkov),
            "--directory",
            str(folder),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--output",
            "json",
            "--compact",
            "--skip-download",  # offline: no policy metadata from the vendor
        ],
        env={"PATH": "/usr/bin:/bin", "LOG_LEVEL": "WARNING", "HOME": str(folder)},
    )
    assert done.returncode in (0, 1), done.stderr  # 1: some check failed
    reports = json.loads(done.stdout)
    return reports if isinstance(reports, list) else [reports]


def _write(folder: Path, name: str, manifests: list[Manifest]) -> None:
    (folder / name).write_text(yaml.safe_dump_all(manifests))


def _checks(reports: list[dict[str, Any]], outcome: str) -> list[dict[str, Any]]:
    return [c for r in reports for c in r["results"].get(f"{outcome}_checks", [])]


def test_no_check_fails_and_every_skip_says_why(
    checkov: Path,
    default_render: list[Manifest],
    all_features_render: list[Manifest],
    tmp_path: Path,
) -> None:
    _write(tmp_path, "defaults.yaml", default_render)
    _write(tmp_path, "all-features.yaml", all_features_render)
    shutil.copyfile(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    reports = _scan(checkov, tmp_path)
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}

    failed = [(c["check_id"], c["check_name"], c["resource"]) for c in _checks(reports, "failed")]
    assert failed == []
    assert len(_checks(reports, "passed")) > 150  # it did scan both renders and the image
    skipped = _checks(reports, "skipped")
    assert {c["check_id"] for c in skipped} == EXPLAINED
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 40, f"{check['check_id']} is skipped without a reason"


def test_the_scan_fails_an_insecure_pod(
    checkov: Path, default_render: list[Manifest], tmp_path: Path
) -> None:
    """The scan can fail: the same chart with a writable root filesystem, privilege
    escalation and no NetworkPolicy."""
    insecure = [m for m in default_render if m["kind"] != "NetworkPolicy"]
    container = find(insecure, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["securityContext"]["allowPrivilegeEscalation"] = True
    _write(tmp_path, "insecure.yaml", insecure)
    failed = {c["check_id"] for c in _checks(_scan(checkov, tmp_path), "failed")}
    assert {"CKV_K8S_20", "CKV_K8S_22", "CKV2_K8S_6"} <= failed


def test_the_pinned_checkov_is_the_one_run(checkov: Path) -> None:
    done = run([str(checkov), "--version"], env={"PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == _tools.CHECKOV_VERSION
    pins = (_tools.TOOLS_MODULE / "checkov.in").read_text().split()
    assert pins == [f"checkov=={_tools.CHECKOV_VERSION}"]
