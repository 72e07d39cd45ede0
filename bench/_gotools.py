"""The Go tools QuLab is checked and measured with: grpcurl, grpc-health-probe and ghz.

Their versions are pinned in one place, `tests/interop/tools/go.mod` (its `tool` and
`require` lines; `go.sum` beside it holds their checksums), and they are built from it by
`scripts.toolchains` (once per checkout, serialised, bounded, logged to
`.tools/interop-tools.log`), for the interop tests (`tests/interop/conftest.py`) and the
ghz benchmark (`bench.ghz`) alike. `ensure_built` raises `Unavailable`, with the reason,
when Go is missing or the build fails; what to do then is the caller's choice.
"""

from __future__ import annotations

from pathlib import Path

from bench._corpus import ROOT
from scripts import toolchains
from scripts.toolchains import INSTALL_TIMEOUT_S, install_go_tools
from scripts.toolchains import ToolchainUnavailable as Unavailable

__all__ = [
    "INSTALL_TIMEOUT_S",
    "TOOLS",
    "TOOLS_MODULE",
    "Unavailable",
    "ensure_built",
    "pinned_version",
]

TOOLS_MODULE = ROOT / "tests" / "interop" / "tools"
TOOLS = ("grpcurl", "grpc-health-probe", "ghz")
"""The executables `go install tool` builds: the last element of each tool path."""


def pinned_version(module: str) -> str:
    """The version go.mod pins `module` (a module path, such as github.com/bojand/ghz) at."""
    return toolchains.pinned_version(TOOLS_MODULE, module)


def ensure_built() -> Path:
    """The folder holding every tool of TOOLS built from the current pins (built now if
    not)."""
    return install_go_tools(TOOLS_MODULE, TOOLS, "interop-tools")
