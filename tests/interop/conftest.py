"""The Go tools the interop tests drive: grpcurl, grpc-health-probe and ghz.

They are pinned in `tests/interop/tools/go.mod` and built from it into `.tools/bin` by
`bench._gotools` (one build, shared with `bench.ghz`; see there how and why). When Go is
missing or the build fails, the tests are skipped with the reason, except under CI (the
`CI` variable set), where they fail with it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench._gotools import INSTALL_TIMEOUT_S, Unavailable, ensure_built
from tests.interop._toolchains import unavailable

__all__ = ["INSTALL_TIMEOUT_S", "RUN_TIMEOUT_S", "GoTools"]

RUN_TIMEOUT_S = 30.0
"""Bound on one run of a tool (ghz's `--max-duration` cannot bound a run of `--total` calls:
in ghz 0.121 it turns the run into one of that duration, whatever the total)."""


@dataclass(frozen=True)
class GoTools:
    """The built tools; each call runs one and returns its exit code and output."""

    grpcurl_path: Path
    health_probe_path: Path
    ghz_path: Path

    def grpcurl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.grpcurl_path), *args])

    def health_probe(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.health_probe_path), *args])

    def ghz(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.ghz_path), *args])


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture(scope="session")
def go_tools() -> GoTools:
    try:
        bin_dir = ensure_built()
    except Unavailable as why:
        unavailable(str(why))
    return GoTools(bin_dir / "grpcurl", bin_dir / "grpc-health-probe", bin_dir / "ghz")
