"""Test PKI: a CA, server and client certificates, written as PEM files.

EC P-256 keys keep generation fast; certificates are valid from an hour ago for a day.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ORG = "QuLab Tests"


@dataclass(frozen=True)
class Issued:
    """A private key and its certificate, and the PEM files that hold them."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    key_file: Path
    cert_file: Path

    @property
    def key_pem(self) -> bytes:
        return self.key_file.read_bytes()

    @property
    def cert_pem(self) -> bytes:
        return self.cert_file.read_bytes()


def subject(common_name: str, org: str = ORG) -> x509.Name:
    """O first, then CN: the usual order, which RFC 2253 prints reversed (CN first)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(directory: Path, name: str) -> Issued:
    """A self-signed CA certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(subject(f"{name} CA"), key.public_key())
        .issuer_name(subject(f"{name} CA"))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
    )
    return _write(directory, name, key, builder.sign(key, hashes.SHA256()))


def make_server(ca: Issued, directory: Path, name: str = "server") -> Issued:
    """A server certificate for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    builder = (
        _leaf(ca, subject("localhost"), key)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    return _write(directory, name, key, builder.sign(ca.key, hashes.SHA256()))


def make_client(ca: Issued, directory: Path, name: x509.Name, file_name: str) -> Issued:
    """A client certificate with subject `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _leaf(ca, name, key).add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    )
    return _write(directory, file_name, key, builder.sign(ca.key, hashes.SHA256()))


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` over `path` the way a secret rotation does: a new file renamed into
    place, so the inode changes; the mtime is pushed forward too, so that a change is
    visible to a watcher even on a coarse-grained file system."""
    before = path.stat()
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    after = path.stat()
    if after.st_mtime_ns <= before.st_mtime_ns:
        os.utime(path, ns=(after.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert path.stat().st_ino != before.st_ino


def _builder(name: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf(ca: Issued, name: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    ca_key_id = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        _builder(name, key.public_key())
        .issuer_name(ca.cert.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id),
            critical=False,
        )
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _write(
    directory: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> Issued:
    key_file, cert_file = directory / f"{name}.key", directory / f"{name}.crt"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(key, cert, key_file, cert_file)
