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
from pathlib import Path
from typing import Any

__all__ = ["ENV_PREFIX", "Settings", "SettingsError", "read_file", "settings_table"]

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
        30.0,
        "Deadline for calls that set none (and for each item of a stream), in seconds.",
        low=0.01,
        high=3600,
    )
    max_timeout_s: float = _setting(
        300.0,
        "Longest a call may run whatever deadline its client sets, in seconds.",
        low=0.01,
        high=86_400,
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
    max_connection_age_s: float = _setting(
        0.0,
        "How long a client connection may live before the server asks the client to "
        "reconnect (an HTTP/2 GOAWAY; gRPC adds ±10% jitter), so that long-lived "
        "connections spread over new replicas; 0 means for ever.",
        low=0,
        high=86_400,
    )
    max_connection_age_grace_s: float = _setting(
        0.0,
        "After that GOAWAY, how long the calls still running on the connection may "
        "take before it is closed under them; 0 means as long as they need.",
        low=0,
        high=86_400,
    )
    max_message_bytes: int = _setting(
        16 * 1024 * 1024, "Largest request or response message.", low=1024, high=1 << 30
    )
    max_batch_items: int = _setting(
        10_000,
        "Most items in one Encode* call (molecules, structures, spectra), and in one call "
        "of a batch tool (`parse_molecules`).",
        low=1,
        high=1_000_000,
    )
    max_tool_arguments_bytes: int = _setting(
        8 << 20,
        "Largest arguments of one ToolService.CallTool (the serialized Struct), in bytes.",
        low=2,
        high=1 << 30,
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
    auth: str = _setting(
        "auto",
        "`auto`: require credentials whenever any are configured, and refuse to start "
        "without them on a non-loopback address; `none`: no authentication at all.",
        choices=("auto", "none"),
    )
    api_keys_file: str = _setting(
        "",
        'JSON file `{"keys": [{"principal", "sha256", "roles"}]}`: API keys (sent as '
        "`x-api-key`), stored as the hex SHA-256 of the key. Reloaded on change and SIGHUP.",
    )
    jwt_secret_file: str = _setting(
        "", "File holding the HS256 secret for bearer tokens. Reloaded on change and SIGHUP."
    )
    jwt_public_keys: str = _setting(
        "",
        "PEM file of public keys, or a JWKS file, for RS256/ES256 bearer tokens. Reloaded "
        "on change and SIGHUP.",
    )
    jwt_issuer: str = _setting("", "Required `iss` of bearer tokens (unchecked when empty).")
    jwt_audience: str = _setting(
        "", "Required `aud` of bearer tokens; must be set when tokens are accepted."
    )
    jwt_roles_claim: str = _setting(
        "roles",
        "Claim holding a token's roles (a list or a space-separated string; "
        "dots reach into objects, e.g. `realm_access.roles`).",
    )
    jwt_leeway_s: float = _setting(
        30.0, "Clock skew allowed on `exp` and `nbf`, in seconds.", low=0, high=600
    )
    roles_file: str = _setting(
        "",
        'JSON file of extra roles `{"roles": {"name": {"methods": [...], "rate_per_s": r, '
        '"burst": b}}, "principals": {"<client cert subject>": ["role"]}}`. Built in: '
        "`admin` (every method), `user` (every Parse, Encode, Write, Convert and tool "
        "method). Reloaded on change and SIGHUP.",
    )
    auth_reload_s: float = _setting(
        2.0,
        "How often credential and role files are checked for changes, in seconds; "
        "0 reloads on SIGHUP only.",
        low=0,
        high=3600,
    )
    rate_limit_per_s: float = _setting(
        0.0,
        "Calls (or stream messages) per second per principal, for roles that set no rate "
        "of their own; 0 means no limit.",
        low=0,
        high=1e9,
    )
    rate_limit_burst: int = _setting(
        0,
        "Calls a principal may make at once beyond the rate; 0 means one second's worth.",
        low=0,
        high=1_000_000_000,
    )
    tls_cert_file: str = _setting(
        "", "PEM certificate chain; with `QULAB_TLS_KEY_FILE`, the server speaks TLS only."
    )
    tls_key_file: str = _setting("", "PEM private key of `QULAB_TLS_CERT_FILE`.")
    tls_client_ca_file: str = _setting(
        "",
        "PEM CA bundle: clients must present a certificate it signed (mTLS), and the "
        "certificate's subject becomes the principal (role `user` unless the roles file "
        "says otherwise). Certificates are re-read when their files change.",
    )
    cache_mb: int = _setting(
        64, "Result cache size per server (MiB); 0 disables it.", low=0, high=1 << 20
    )
    reflection: bool = _setting(True, "Serve gRPC server reflection.")
    metrics: bool = _setting(True, "Serve Prometheus metrics on `QULAB_METRICS_PORT`.")
    metrics_port: int = _setting(
        9464,
        "Port of the Prometheus endpoint (`/metrics`, on `QULAB_HOST`); 0 picks a free port "
        "(logged at start).",
        low=0,
        high=65535,
    )
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
        self._check_security()

    def _check_security(self) -> None:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingsError("QULAB_TLS_CERT_FILE and QULAB_TLS_KEY_FILE go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise SettingsError("QULAB_TLS_CLIENT_CA_FILE needs QULAB_TLS_CERT_FILE")
        if self.accepts_tokens and not self.jwt_audience:
            raise SettingsError(
                "QULAB_JWT_AUDIENCE must be set when bearer tokens are accepted, so that a "
                "token issued for another service is refused"
            )
        if self.auth == "auto" and not self.credentials_configured and not self.loopback_only:
            raise SettingsError(
                f"QULAB_HOST={self.host} is not a loopback address and no credentials are "
                "configured: set QULAB_API_KEYS_FILE, QULAB_JWT_SECRET_FILE, "
                "QULAB_JWT_PUBLIC_KEYS or QULAB_TLS_CLIENT_CA_FILE, or QULAB_AUTH=none to "
                "serve without authentication"
            )

    @property
    def accepts_tokens(self) -> bool:
        return bool(self.jwt_secret_file or self.jwt_public_keys)

    @property
    def credentials_configured(self) -> bool:
        return bool(self.api_keys_file or self.accepts_tokens or self.tls_client_ca_file)

    @property
    def loopback_only(self) -> bool:
        host = self.host.strip("[]")
        if host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

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


def read_file(path: str, setting: str, error: type[SettingsError] = SettingsError) -> bytes:
    """The bytes of a file a setting names (credentials, keys, certificates); `error`
    (a SettingsError) naming the setting when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise error(f"{setting}: cannot read {path}: {exc.strerror}") from None


def settings_table() -> str:
    """The settings as a Markdown table (used by `--help` and kept in the README)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
        rows.append(f"| `{ENV_PREFIX}{f.name.upper()}` | `{default}` | {f.metadata['help']} |")
    return "\n".join(rows)
