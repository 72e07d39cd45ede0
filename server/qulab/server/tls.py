"""TLS and mTLS server credentials, re-read when their files change.

gRPC asks the fetcher below before each new handshake; it answers with a new
configuration only when the certificate, key or client-CA file changed (cert-manager and
Kubernetes secret updates rotate them in place), so rotation needs no restart and costs
one `stat` per file per new connection. A file that does not load keeps the previous
configuration, and the log says why.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from qulab.server.config import Settings, SettingsError, read_file
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
        """Read and check the files (gRPC would only say "failed to bind", or keep the
        old ones silently); OSError or ValueError naming the setting."""
        cert = read_file(self._cert, "QULAB_TLS_CERT_FILE")
        key = read_file(self._key, "QULAB_TLS_KEY_FILE")
        ca = read_file(self._ca, "QULAB_TLS_CLIENT_CA_FILE") if self._ca else None
        chain = _certificates(cert, "QULAB_TLS_CERT_FILE")
        if ca is not None:
            _certificates(ca, "QULAB_TLS_CLIENT_CA_FILE")
        try:
            private = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # TypeError: encrypted
            raise ValueError(f"QULAB_TLS_KEY_FILE: not an unencrypted PEM key ({exc})") from None
        if _spki(private.public_key()) != _spki(chain[0].public_key()):
            raise ValueError(
                "QULAB_TLS_KEY_FILE: the key does not belong to the certificate in "
                "QULAB_TLS_CERT_FILE"
            )
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        now = fingerprint(self._paths)
        if now == self._seen:
            return None
        self._seen = now
        try:
            config = self.configuration()
        except Exception as exc:  # called by gRPC core: nothing may escape
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
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return grpc.dynamic_ssl_server_credentials(
        initial,
        files.fetch,  # type: ignore[arg-type]  # gRPC documents None as "unchanged"
        require_client_authentication=bool(settings.tls_client_ca_file),
    )


def _certificates(data: bytes, setting: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ValueError(f"{setting}: not PEM certificates ({exc})") from None


def _spki(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
