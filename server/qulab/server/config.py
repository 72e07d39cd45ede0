"""Server settings: one typed, frozen object built once at start-up.

Every setting is a field of `Settings` and is read from the environment variable
`QULAB_<FIELD NAME IN UPPER CASE>`. A value that does not parse or is out of range stops
the start with a `SettingsError` naming the variable. Nothing else in the server reads
`os.environ`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ENV_PREFIX", "Settings", "SettingsError", "settings_table"]

ENV_PREFIX = "QULAB_"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """A setting is missing, malformed or out of range; the message names the variable."""


def _setting(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
) -> Any:
    return field(
        default=default, metadata={"help": help, "low": low, "high": high, "choices": choices}
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server can be told at start-up (see `settings_table()` for help)."""

    host: str = _setting("127.0.0.1", "Address to listen on (`0.0.0.0` or `::` for all).")
    port: int = _setting(
        50051, "gRPC port; 0 picks a free port (logged at start).", low=0, high=65535
    )
    workers: int = _setting(
        0, "Worker processes for chemistry; 0 means one per CPU core.", low=0, high=256
    )
    queue_size: int = _setting(
        2048,
        "Requests (or batch items) that may wait for a worker; "
        "past it calls get RESOURCE_EXHAUSTED.",
        low=1,
        high=1_000_000,
    )
    batch_max_items: int = _setting(
        64,
        "Most queued items one worker task takes at once (queued unary calls are batched).",
        low=1,
        high=4096,
    )
    max_concurrent_rpcs: int = _setting(
        4096,
        "Calls the server holds at once; past it a call gets RESOURCE_EXHAUSTED from gRPC "
        "before any work.",
        low=16,
        high=1_000_000,
    )
    stream_window: int = _setting(64, "Items of one stream in flight at once.", low=1, high=4096)
    default_timeout_s: float = _setting(
        30.0, "Deadline for calls that set none, in seconds.", low=0.01, high=3600
    )
    worker_memory_mb: int = _setting(
        2048,
        "Address-space cap of each worker process (MiB); 0 disables it.",
        low=0,
        high=1_048_576,
    )
    drain_grace_s: float = _setting(
        20.0, "On SIGTERM, how long in-flight calls may finish.", low=0, high=3600
    )
    max_message_bytes: int = _setting(
        16 * 1024 * 1024, "Largest request or response message.", low=1024, high=1 << 30
    )
    max_batch_items: int = _setting(
        10_000, "Most molecules in one EncodeMolecule call.", low=1, high=1_000_000
    )
    max_smiles_length: int = _setting(
        20_000, "Longest SMILES, in characters.", low=1, high=10_000_000
    )
    max_atoms: int = _setting(2_000, "Most atoms in one molecule.", low=1, high=1_000_000)
    max_branch_depth: int = _setting(
        256, "Deepest nesting of SMILES branches.", low=1, high=100_000
    )
    max_selfies_tokens: int = _setting(5_000, "Most SELFIES tokens.", low=1, high=10_000_000)
    max_inchi_length: int = _setting(
        20_000, "Longest InChI, in characters.", low=1, high=10_000_000
    )
    max_molfile_bytes: int = _setting(1 << 20, "Largest Molfile, in bytes.", low=1, high=1 << 30)
    max_structure_bytes: int = _setting(
        4 << 20, "Largest CIF or POSCAR file, in bytes.", low=1, high=1 << 30
    )
    max_spectrum_bytes: int = _setting(
        16 << 20, "Largest JCAMP-DX file, in bytes.", low=1, high=1 << 30
    )
    max_spectrum_points: int = _setting(
        1_000_000,
        "Most points in one JCAMP-DX data table (x and y travel as float64: 16 bytes a point, "
        "so keep it under QULAB_MAX_MESSAGE_BYTES / 16).",
        low=1,
        high=100_000_000,
    )
    max_spectrum_blocks: int = _setting(
        1000, "Most blocks in one JCAMP-DX file.", low=1, high=1_000_000
    )
    max_structure_sites: int = _setting(
        20_000,
        "Most sites in one crystal structure after symmetry expansion.",
        low=1,
        high=10_000_000,
    )
    cache_mb: int = _setting(
        64, "Result cache size per server (MiB); 0 disables it.", low=0, high=1 << 20
    )
    reflection: bool = _setting(True, "Serve gRPC server reflection.")
    log_level: str = _setting("INFO", "Log level.", choices=_LOG_LEVELS)
    event_loop: str = _setting(
        "uvloop", "Event loop: `uvloop` (faster) or `asyncio`.", choices=("uvloop", "asyncio")
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from `QULAB_*` variables; unknown `QULAB_*` names are errors too,
        so a typo cannot silently fall back to a default."""
        known = {f"{ENV_PREFIX}{f.name.upper()}": f for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)
        if unknown:
            raise SettingsError(f"unknown setting {', '.join(unknown)}")
        values = {f.name: _parse(var, env[var], f) for var, f in known.items() if var in env}
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        for f in dataclasses.fields(self):
            _check_range(f"{ENV_PREFIX}{f.name.upper()}", getattr(self, f.name), f)
        try:
            ipaddress.ip_address(self.host.strip("[]"))
        except ValueError:
            if not self.host or any(c in self.host for c in " /:"):
                raise SettingsError(f"QULAB_HOST: {self.host!r} is not an address") from None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"


def _parse(var: str, raw: str, f: dataclasses.Field[Any]) -> Any:
    kind: type[Any] = type(f.default)
    text = raw.strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if kind is int:
            return int(text.replace("_", ""))
        if kind is float:
            value = float(text)
            if value != value:
                raise ValueError("NaN is not a value")
            return value
        for choice in f.metadata["choices"]:
            if text.lower() == choice.lower():
                return choice
        return text
    except ValueError as exc:
        raise SettingsError(f"{var}={raw!r}: {exc}") from None


def _check_range(var: str, value: Any, f: dataclasses.Field[Any]) -> None:
    low, high, choices = f.metadata["low"], f.metadata["high"], f.metadata["choices"]
    if (low is not None and value < low) or (high is not None and value > high):
        raise SettingsError(f"{var}={value!r}: must be between {low} and {high}")
    if choices and value not in choices:
        raise SettingsError(f"{var}={value!r}: must be one of {', '.join(choices)}")


def settings_table() -> str:
    """The settings as a Markdown table (used by `--help` and kept in the README)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
        rows.append(f"| `{ENV_PREFIX}{f.name.upper()}` | `{default}` | {f.metadata['help']} |")
    return "\n".join(rows)
