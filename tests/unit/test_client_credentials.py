"""Client credentials: the metadata they add, TLS credentials from files, the environment,
and the refusal to send a secret in clear text off this machine."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from qulab.client import Credentials, api_key, bearer_token, tls
from qulab.client.credentials import is_loopback

KEY = "qk_unit_test_key_0001"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def test_each_helper_adds_its_own_header() -> None:
    assert api_key(KEY).metadata == (("x-api-key", KEY),)
    assert bearer_token(TOKEN).metadata == (("authorization", f"Bearer {TOKEN}"),)
    assert Credentials().metadata == ()


def test_helpers_combine(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(b"CA PEM")
    both = tls(ca_file=tmp_path / "ca.pem", server_name="qulab.test") | api_key(KEY)
    assert both.use_tls
    assert both.root_certificates == b"CA PEM"
    assert both.metadata == (("x-api-key", KEY),)
    assert both.channel_options() == (("grpc.ssl_target_name_override", "qulab.test"),)
    assert isinstance(both.channel_credentials(), grpc.ChannelCredentials)
    assert api_key(KEY).channel_credentials() is None


def test_mtls_reads_the_client_pair(tmp_path: Path) -> None:
    (tmp_path / "me.pem").write_bytes(b"CERT")
    (tmp_path / "me.key").write_bytes(b"KEY")
    creds = tls(cert_file=tmp_path / "me.pem", key_file=tmp_path / "me.key")
    assert (creds.certificate_chain, creds.private_key) == (b"CERT", b"KEY")
    with pytest.raises(ValueError, match="both"):
        tls(cert_file=tmp_path / "me.pem")


def test_repr_never_shows_a_secret(tmp_path: Path) -> None:
    (tmp_path / "me.pem").write_bytes(b"CERT")
    (tmp_path / "me.key").write_bytes(b"PRIVATE KEY MATERIAL")
    creds = (
        api_key(KEY)
        | bearer_token(TOKEN)
        | tls(cert_file=tmp_path / "me.pem", key_file=tmp_path / "me.key")
    )
    shown = repr(creds) + str(creds)
    for secret in (KEY, TOKEN, "PRIVATE KEY MATERIAL"):
        assert secret not in shown
    assert "api_key=<set>" in shown


@pytest.mark.parametrize("bad", ["", "key\r\nx-evil: 1", "line\n"])
def test_a_header_value_must_be_one_line(bad: str) -> None:
    with pytest.raises(ValueError, match="single line"):
        api_key(bad)


@pytest.mark.parametrize(
    ("target", "local"),
    [
        ("localhost:50051", True),
        ("LOCALHOST:1", True),
        ("127.0.0.1:50051", True),
        ("127.8.9.10:50051", True),
        ("[::1]:50051", True),
        ("::1", True),
        ("dns:///localhost:50051", True),
        ("ipv4:127.0.0.1:50051", True),
        ("unix:/run/qulab.sock", True),
        ("qulab.example:443", False),
        ("10.0.0.5:50051", False),
        ("[2001:db8::1]:50051", False),
        ("dns:///qulab.default.svc:50051", False),
    ],
)
def test_loopback_targets(target: str, local: bool) -> None:
    assert is_loopback(target) is local


def test_a_secret_goes_in_clear_text_only_to_loopback() -> None:
    api_key(KEY).check_target("localhost:50051")
    with pytest.raises(ValueError, match=r"clear text to qulab\.example:443"):
        api_key(KEY).check_target("qulab.example:443")
    with pytest.raises(ValueError, match="clear text"):
        bearer_token(TOKEN).check_target("10.0.0.5:50051")
    (api_key(KEY) | tls()).check_target("qulab.example:443")
    (api_key(KEY) | Credentials(allow_plaintext=True)).check_target("qulab.example:443")
    Credentials().check_target("qulab.example:443")  # nothing secret to send


def test_from_environment(tmp_path: Path) -> None:
    assert Credentials.from_environment({}) == Credentials()
    (tmp_path / "ca.pem").write_bytes(b"CA")
    (tmp_path / "c.pem").write_bytes(b"C")
    (tmp_path / "c.key").write_bytes(b"K")
    creds = Credentials.from_environment(
        {
            "QULAB_API_KEY": KEY,
            "QULAB_BEARER_TOKEN": TOKEN,
            "QULAB_CA_FILE": str(tmp_path / "ca.pem"),
            "QULAB_CLIENT_CERT_FILE": str(tmp_path / "c.pem"),
            "QULAB_CLIENT_KEY_FILE": str(tmp_path / "c.key"),
            "QULAB_TLS_SERVER_NAME": "qulab.test",
        }
    )
    assert creds.api_key == KEY
    assert creds.bearer_token == TOKEN
    assert creds.use_tls
    assert creds.server_name == "qulab.test"
    assert (creds.root_certificates, creds.certificate_chain, creds.private_key) == (
        b"CA",
        b"C",
        b"K",
    )
    system_roots = Credentials.from_environment({"QULAB_TLS": "true"})
    assert system_roots.use_tls
    assert system_roots.root_certificates is None
    assert not Credentials.from_environment({"QULAB_TLS": "0"}).use_tls
