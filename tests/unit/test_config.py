"""Settings: parsed from QULAB_* variables, bad values stop the start naming the variable,
and the README's table says what the code does."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qulab.server.config import Settings, SettingsError, settings_table
from tests.conftest import ROOT


def test_defaults_and_overrides() -> None:
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env(
        {
            "QULAB_PORT": "0",
            "QULAB_WORKERS": "3",
            "QULAB_REFLECTION": "off",
            "QULAB_LOG_LEVEL": "debug",
            "QULAB_DEFAULT_TIMEOUT_S": "2.5",
            "QULAB_HOST": "::",
            "QULAB_AUTH": "none",
        }
    )
    assert (settings.port, settings.workers, settings.reflection) == (0, 3, False)
    assert (settings.log_level, settings.default_timeout_s) == ("DEBUG", 2.5)
    assert settings.address == "[::]:0"
    assert Settings.from_env({"OTHER": "x", "PATH": "/bin"}) == Settings()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"QULAB_PORT": "http"}, "QULAB_PORT"),
        ({"QULAB_PORT": "70000"}, "QULAB_PORT"),
        ({"QULAB_WORKERS": "-1"}, "QULAB_WORKERS"),
        ({"QULAB_DEFAULT_TIMEOUT_S": "nan"}, "QULAB_DEFAULT_TIMEOUT_S"),
        ({"QULAB_REFLECTION": "maybe"}, "QULAB_REFLECTION"),
        ({"QULAB_LOG_LEVEL": "LOUD"}, "QULAB_LOG_LEVEL"),
        ({"QULAB_MAX_ATOMS": "0"}, "QULAB_MAX_ATOMS"),
        ({"QULAB_HOST": "not an address"}, "QULAB_HOST"),
        ({"QULAB_PROT": "50051"}, "QULAB_PROT"),
    ],
)
def test_bad_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_bad_setting_stops_the_server_with_its_name() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qulab.server"],
        env={"QULAB_QUEUE_SIZE": "lots", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "QULAB_QUEUE_SIZE" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_every_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qulab.server", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for line in settings_table().splitlines()[2:]:
        assert line.split("|")[1].strip().strip("`") in result.stdout


def test_readme_settings_table_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- settings-table")
    table = readme[readme.index("\n", start) + 1 : readme.index("<!-- end settings-table")]
    assert table.strip() == settings_table().strip(), "regenerate the README settings table"


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "[::]", "10.0.0.5", "192.168.1.20", "2001:db8::1", "qulab.internal"]
)
def test_non_loopback_host_without_credentials_is_refused(host: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"QULAB_HOST": host})
    message = str(raised.value)
    assert "QULAB_HOST" in message
    assert host in message
    assert "QULAB_AUTH=none" in message
    for setting in (
        "QULAB_API_KEYS_FILE",
        "QULAB_JWT_SECRET_FILE",
        "QULAB_JWT_PUBLIC_KEYS",
        "QULAB_TLS_CLIENT_CA_FILE",
    ):
        assert setting in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_host_needs_no_credentials(host: str) -> None:
    settings = Settings.from_env({"QULAB_HOST": host})
    assert settings.loopback_only
    assert not settings.credentials_configured
    assert settings.auth == "auto"


@pytest.mark.parametrize("auth", ["none", "NONE", " None "])
def test_auth_none_allows_any_host(auth: str) -> None:
    settings = Settings.from_env({"QULAB_HOST": "0.0.0.0", "QULAB_AUTH": auth})
    assert settings.auth == "none"
    assert not settings.loopback_only


@pytest.mark.parametrize("auth", ["off", "false", ""])
def test_bad_auth_value_is_named(auth: str) -> None:
    with pytest.raises(SettingsError, match="QULAB_AUTH"):
        Settings.from_env({"QULAB_AUTH": auth})


@pytest.mark.parametrize(
    "credentials",
    [
        {"QULAB_API_KEYS_FILE": "/run/secrets/keys.json"},
        {"QULAB_JWT_SECRET_FILE": "/run/secrets/jwt", "QULAB_JWT_AUDIENCE": "qulab"},
        {"QULAB_JWT_PUBLIC_KEYS": "/run/secrets/jwks.json", "QULAB_JWT_AUDIENCE": "qulab"},
        {
            "QULAB_TLS_CLIENT_CA_FILE": "/run/secrets/ca.pem",
            "QULAB_TLS_CERT_FILE": "/run/secrets/tls.crt",
            "QULAB_TLS_KEY_FILE": "/run/secrets/tls.key",
        },
    ],
)
def test_any_credentials_allow_a_non_loopback_host(credentials: dict[str, str]) -> None:
    settings = Settings.from_env({"QULAB_HOST": "0.0.0.0", **credentials})
    assert settings.credentials_configured
    assert settings.accepts_tokens == any("JWT" in name for name in credentials)


def test_server_tls_alone_is_not_a_credential() -> None:
    tls = {"QULAB_TLS_CERT_FILE": "/tls.crt", "QULAB_TLS_KEY_FILE": "/tls.key"}
    assert not Settings.from_env(tls).credentials_configured
    with pytest.raises(SettingsError, match="QULAB_HOST"):
        Settings.from_env({"QULAB_HOST": "0.0.0.0", **tls})


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
@pytest.mark.parametrize("tokens", ["QULAB_JWT_SECRET_FILE", "QULAB_JWT_PUBLIC_KEYS"])
def test_tokens_need_an_audience(host: str, tokens: str) -> None:
    env = {"QULAB_HOST": host, tokens: "/run/secrets/x", "QULAB_API_KEYS_FILE": "/k.json"}
    with pytest.raises(SettingsError, match="QULAB_JWT_AUDIENCE"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "QULAB_JWT_AUDIENCE": "qulab"}).accepts_tokens


def test_audience_alone_is_not_a_credential() -> None:
    settings = Settings.from_env({"QULAB_JWT_AUDIENCE": "qulab", "QULAB_JWT_ISSUER": "x"})
    assert not settings.accepts_tokens
    assert not settings.credentials_configured


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"QULAB_TLS_KEY_FILE": "/tls.key"}, "QULAB_TLS_CERT_FILE and QULAB_TLS_KEY_FILE"),
        ({"QULAB_TLS_CERT_FILE": "/tls.crt"}, "QULAB_TLS_CERT_FILE and QULAB_TLS_KEY_FILE"),
        ({"QULAB_TLS_CLIENT_CA_FILE": "/ca.pem"}, "QULAB_TLS_CLIENT_CA_FILE needs"),
        (
            {"QULAB_TLS_CLIENT_CA_FILE": "/ca.pem", "QULAB_TLS_KEY_FILE": "/tls.key"},
            "QULAB_TLS_CERT_FILE and QULAB_TLS_KEY_FILE",
        ),
    ],
)
def test_incomplete_tls_is_refused(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_tls_settings_are_checked_even_without_authentication() -> None:
    with pytest.raises(SettingsError, match="QULAB_TLS_CERT_FILE"):
        Settings.from_env({"QULAB_AUTH": "none", "QULAB_TLS_KEY_FILE": "/tls.key"})


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"QULAB_JWT_LEEWAY_S": "-1"}, "QULAB_JWT_LEEWAY_S"),
        ({"QULAB_JWT_LEEWAY_S": "601"}, "QULAB_JWT_LEEWAY_S"),
        ({"QULAB_RATE_LIMIT_PER_S": "-0.5"}, "QULAB_RATE_LIMIT_PER_S"),
        ({"QULAB_RATE_LIMIT_BURST": "1.5"}, "QULAB_RATE_LIMIT_BURST"),
        ({"QULAB_AUTH_RELOAD_S": "-1"}, "QULAB_AUTH_RELOAD_S"),
    ],
)
def test_bad_auth_numbers_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_auth_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "QULAB_JWT_SECRET_FILE": "/s",
            "QULAB_JWT_AUDIENCE": "qulab",
            "QULAB_JWT_ISSUER": "https://issuer.test",
            "QULAB_JWT_ROLES_CLAIM": "realm_access.roles",
            "QULAB_JWT_LEEWAY_S": "5",
            "QULAB_RATE_LIMIT_PER_S": "2.5",
            "QULAB_RATE_LIMIT_BURST": "10",
        }
    )
    assert settings.jwt_roles_claim == "realm_access.roles"
    assert (settings.jwt_leeway_s, settings.rate_limit_per_s, settings.rate_limit_burst) == (
        5.0,
        2.5,
        10,
    )


def test_localhost_is_loopback_in_any_case() -> None:
    assert Settings.from_env({"QULAB_HOST": "LocalHost"}).loopback_only


def test_connection_age_is_off_by_default_and_in_milliseconds_for_grpc() -> None:
    from qulab.server.app import _connection_age_options

    assert _connection_age_options(Settings()) == []
    settings = Settings.from_env(
        {"QULAB_MAX_CONNECTION_AGE_S": "300", "QULAB_MAX_CONNECTION_AGE_GRACE_S": "2.5"}
    )
    assert (settings.max_connection_age_s, settings.max_connection_age_grace_s) == (300, 2.5)
    assert _connection_age_options(settings) == [
        ("grpc.max_connection_age_ms", 300_000),
        ("grpc.max_connection_age_grace_ms", 2_500),
    ]
    # A grace of 0 is "as long as the calls need": gRPC's default, so no option at all.
    only_age = Settings.from_env({"QULAB_MAX_CONNECTION_AGE_S": "0.0001"})
    assert _connection_age_options(only_age) == [("grpc.max_connection_age_ms", 1)]


@pytest.mark.parametrize(
    "env",
    [
        {"QULAB_MAX_CONNECTION_AGE_S": "-1"},
        {"QULAB_MAX_CONNECTION_AGE_S": "5m"},
        {"QULAB_MAX_CONNECTION_AGE_S": "86401"},
        {"QULAB_MAX_CONNECTION_AGE_GRACE_S": "-0.1"},
        {"QULAB_MAX_CONNECTION_AGE_GRACE_S": "nan"},
    ],
)
def test_bad_connection_age_is_named(env: dict[str, str]) -> None:
    (named,) = env
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)
