"""TLS and mTLS server credentials, re-read when their files change.

gRPC asks the fetcher below before each new handshake; it answers with a new
configuration only when the certificate, key or client-CA file changed (cert-manager and
Kubernetes secret updates rotate them in place), so rotation needs no restart and costs
one `stat` per file per new connection. A file that does not load keeps the previous
configuration, and the log says why.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from qulab.server.config import Settings, SettingsError
from qulab.server.watch import fingerprint

__all__ = ["server_credentials"]

_log = logging.getLogger("qulab.tls")


class _Files:
    def __init__(self, settings: Settings) -> None:
        self._cert = settings.tls_cert_file
        self._key = settings.tls_key_file
        self._ca = settings.tls_client_ca_file
        self._paths = [p for p in (self._cert, self._key, self._ca) if p]
        self._seen = fingerprint(self._paths)

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        """Read the files; OSError or ValueError when one is missing or not PEM."""
        cert, key = Path(self._cert).read_bytes(), Path(self._key).read_bytes()
        ca = Path(self._ca).read_bytes() if self._ca else None
        for name, data in (("certificate", cert), ("key", key), ("client CA", ca)):
            if data is not None and b"-----BEGIN " not in data:
                raise ValueError(f"the {name} file is not PEM")
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        now = fingerprint(self._paths)
        if now == self._seen:
            return None
        self._seen = now
        try:
            config = self.configuration()
        except (OSError, ValueError) as exc:
            _log.error(
                "TLS files not reloaded; the previous ones stay in force",
                extra={"reason": str(exc)},
            )
            return None
        _log.info("TLS files reloaded")
        return config


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Credentials for the listening port; None when TLS is not configured."""
    if not settings.tls_cert_file:
        return None
    files = _Files(settings)
    try:
        initial = files.configuration()
    except (OSError, ValueError) as exc:
        raise SettingsError(f"QULAB_TLS_*: {exc}") from None
    return grpc.dynamic_ssl_server_credentials(
        initial,
        files.fetch,  # type: ignore[arg-type]  # gRPC documents None as "unchanged"
        require_client_authentication=bool(settings.tls_client_ca_file),
    )
