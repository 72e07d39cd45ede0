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
