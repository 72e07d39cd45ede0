"""How a client proves who it is: an API key, a bearer token (JWT), TLS and mTLS.

    from qulab.client import Client, api_key, bearer_token, tls

    Client("qulab.example:443", credentials=tls() | api_key(os.environ["QULAB_API_KEY"]))
    Client("qulab.example:443", credentials=tls(ca_file="ca.pem", cert_file="me.pem",
                                                key_file="me.key"))   # mTLS
    Client("localhost:50051", credentials=Credentials.from_environment())

Helpers combine with `|`. A key or token goes in every call's metadata (`x-api-key`,
`authorization: Bearer ...`); it is never sent in clear text to a host other than
loopback unless `allow_plaintext=True` says the transport is protected some other way
(a service mesh's mTLS, say).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = ["Credentials", "api_key", "bearer_token", "tls"]

API_KEY_HEADER = "x-api-key"
AUTHORIZATION_HEADER = "authorization"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Everything a channel needs to authenticate; see the module's helpers."""

    api_key: str | None = None
    bearer_token: str | None = None
    use_tls: bool = False
    root_certificates: bytes | None = None  # PEM; None = the system's roots
    certificate_chain: bytes | None = None  # PEM client certificate, for mTLS
    private_key: bytes | None = dataclasses.field(default=None, repr=False)
    server_name: str | None = None  # the name to check the server certificate against
    allow_plaintext: bool = False

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("mTLS needs both a client certificate and its private key")
        for name in ("api_key", "bearer_token"):
            value = getattr(self, name)
            if value is not None and (not value or any(c in value for c in "\r\n")):
                raise ValueError(f"{name} must be a non-empty single line")

    def __repr__(self) -> str:  # never the key or token themselves
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)]
        for secret in ("api_key", "bearer_token", "private_key"):
            if getattr(self, secret) is not None:
                shown = [s if not s.startswith(f"{secret}=") else f"{secret}=<set>" for s in shown]
        return f"Credentials({', '.join(shown)})"

    def __or__(self, other: Credentials) -> Credentials:
        """Both: each field from `other` where it is set there, else from `self`."""
        merged = {
            f.name: getattr(other, f.name) or getattr(self, f.name)
            for f in dataclasses.fields(self)
        }
        return Credentials(**merged)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata these credentials add."""
        pairs: list[tuple[str, str]] = []
        if self.api_key is not None:
            pairs.append((API_KEY_HEADER, self.api_key))
        if self.bearer_token is not None:
            pairs.append((AUTHORIZATION_HEADER, f"Bearer {self.bearer_token}"))
        return tuple(pairs)

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS channel credentials, or None for a plaintext channel."""
        if not self.use_tls:
            return None
        return grpc.ssl_channel_credentials(
            self.root_certificates, self.private_key, self.certificate_chain
        )

    def channel_options(self) -> tuple[tuple[str, str], ...]:
        if self.use_tls and self.server_name:
            return (("grpc.ssl_target_name_override", self.server_name),)
        return ()

    def check_target(self, target: str) -> None:
        """Refuse to send a secret in clear text anywhere but this machine."""
        plaintext_secret = self.metadata and not self.use_tls and not self.allow_plaintext
        if plaintext_secret and not is_loopback(target):
            raise ValueError(
                f"refusing to send credentials in clear text to {target}: use tls(), or "
                "allow_plaintext=True if the network is protected another way"
            )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Credentials from `QULAB_API_KEY`, `QULAB_BEARER_TOKEN`, `QULAB_TLS` (1 = TLS with
        the system's roots), `QULAB_CA_FILE`, `QULAB_CLIENT_CERT_FILE`,
        `QULAB_CLIENT_KEY_FILE` and `QULAB_TLS_SERVER_NAME`; any CA or client file turns
        TLS on."""
        env = os.environ if environ is None else environ
        found = Credentials(
            api_key=env.get("QULAB_API_KEY") or None,
            bearer_token=env.get("QULAB_BEARER_TOKEN") or None,
        )
        files = {
            "ca_file": env.get("QULAB_CA_FILE"),
            "cert_file": env.get("QULAB_CLIENT_CERT_FILE"),
            "key_file": env.get("QULAB_CLIENT_KEY_FILE"),
        }
        wants_tls = env.get("QULAB_TLS", "").strip().lower() in {"1", "true", "yes", "on"}
        if wants_tls or any(files.values()):
            found = found | tls(
                **{k: v for k, v in files.items() if v},
                server_name=env.get("QULAB_TLS_SERVER_NAME") or None,
            )
        return found


def api_key(key: str) -> Credentials:
    """Authenticate each call with an API key (`x-api-key`)."""
    return Credentials(api_key=key)


def bearer_token(token: str) -> Credentials:
    """Authenticate each call with a bearer token, such as a JWT (`authorization`)."""
    return Credentials(bearer_token=token)


def tls(
    *,
    ca_file: str | os.PathLike[str] | None = None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    server_name: str | None = None,
) -> Credentials:
    """A TLS channel: the server checked against `ca_file` (PEM; default the system's
    roots), and with `cert_file` and `key_file` the client's own certificate (mTLS)."""

    def read(path: str | os.PathLike[str] | None) -> bytes | None:
        return Path(path).read_bytes() if path is not None else None

    return Credentials(
        use_tls=True,
        root_certificates=read(ca_file),
        certificate_chain=read(cert_file),
        private_key=read(key_file),
        server_name=server_name,
    )


def is_loopback(target: str) -> bool:
    """Whether a gRPC target names this machine: localhost, a loopback address, a unix
    socket."""
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    for scheme in ("dns:///", "ipv4:", "ipv6:", "dns:"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
            break
    host = target.rsplit(":", 1)[0] if target.count(":") == 1 or "]" in target else target
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
