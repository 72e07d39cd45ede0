"""`make bench` keeps working: a --quick run (a smoke run, not a measurement) completes
and writes every row, without errors. Its figures are not judged here: speed targets live
in bench/, not in timed tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.timeout(300)
def test_quick_bench_runs_and_reports_every_row(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--results", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=280,
    )
    report = json.loads((tmp_path / "molecules.json").read_text())
    rows = {row["name"]: row for row in report["rows"]}
    for needed in (
        "full parse, in-process",
        "parse_molecule, in-process",
        "ParseMolecule unary, 64 callers",
        "ParseMolecules, 4 streams",
        "EncodeMolecule Morgan, batch 256",
        "ParseMolecule open loop 1,000/s: p99",
    ):
        assert needed in rows, sorted(rows)
    for row in report["rows"]:
        assert row["value"] > 0, row["name"]
        assert all(run["errors"] == 0 for run in row["runs"]), row["name"]
