"""Roles: method patterns are globs over "pkg.Service/Method", grants are the union of
their roles' methods at the most generous rate, and a bad roles file stops the load with
QULAB_ROLES_FILE and the fault named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qulab.server.config import Settings
from qulab.server.interceptors.roles import BUILT_IN, Grant, RolesFileError, RoleTable

PARSE = "/qulab.v1.MoleculeService/ParseMolecule"
ENCODE = "/qulab.v1.MoleculeService/EncodeMolecule"
WRITE = "/qulab.v1.StructureService/WriteStructure"
CONVERT = "/qulab.v1.SpectrumService/ConvertSpectrum"
TOOL = "/qulab.v1.ToolService/Anything"
OTHER = "/qulab.v1.AdminService/ReloadCredentials"


def _table(tmp_path: Path, data: Any = None, **settings: Any) -> RoleTable:
    if data is not None:
        path = tmp_path / "roles.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        settings["roles_file"] = str(path)
    return RoleTable.load(Settings(**settings))


def test_built_in_roles() -> None:
    assert {role.name for role in BUILT_IN} == {"admin", "user"}
    table = RoleTable.load(Settings())
    assert table.principals == {}
    admin, user = table.grant(["admin"]), table.grant(["user"])
    for method in (PARSE, ENCODE, WRITE, CONVERT, TOOL, OTHER, "/grpc.other.Svc/Do"):
        assert admin.allows(method), method
    for method in (PARSE, ENCODE, WRITE, CONVERT, TOOL, "/x.Y/ParseAnything"):
        assert user.allows(method), method
    for method in (
        OTHER,
        "/qulab.v1.MoleculeService/GetInfo",
        "/qulab.v1.MoleculeService/parseMolecule",  # method names are case-sensitive
        "/qulab.v1.ToolServiceX/Anything",
    ):
        assert not user.allows(method), method


@pytest.mark.parametrize(
    ("pattern", "allowed", "refused"),
    [
        (
            "qulab.v1.MoleculeService/*",
            ["/qulab.v1.MoleculeService/ParseMolecule", "/qulab.v1.MoleculeService/X"],
            ["/qulab.v1.MoleculeServices/X", "/qulabXv1.MoleculeService/X", "/a/qulab.v1."],
        ),
        (
            "qulab.v1.MoleculeService/Parse",
            ["/qulab.v1.MoleculeService/Parse"],
            ["/qulab.v1.MoleculeService/ParseMore", "/qulab.v1.MoleculeService/Pars"],
        ),
        (
            "*/Get?",
            ["/a.B/GetX", "/a.B/Get1"],
            ["/a.B/Get", "/a.B/GetXY"],
        ),
        (
            "pkg.[AB]Service/*",
            ["/pkg.AService/M", "/pkg.BService/M"],
            ["/pkg.CService/M"],
        ),
    ],
)
def test_patterns_are_whole_name_globs(
    tmp_path: Path, pattern: str, allowed: list[str], refused: list[str]
) -> None:
    table = _table(tmp_path, {"roles": {"r": {"methods": [pattern]}}})
    grant = table.grant(["r"])
    for method in allowed:
        assert grant.allows(method), method
        assert grant.allows(method), method  # the cached answer is the same
    for method in refused:
        assert not grant.allows(method), method
        assert not grant.allows(method), method


def test_grant_is_the_union_of_its_roles(tmp_path: Path) -> None:
    table = _table(
        tmp_path,
        {
            "roles": {
                "reader": {"methods": ["qulab.v1.MoleculeService/Parse*"]},
                "writer": {"methods": ["qulab.v1.StructureService/Write*"]},
            }
        },
    )
    reader, writer = table.grant(["reader"]), table.grant(["writer"])
    both = table.grant(["writer", "reader"])
    assert (reader.allows(PARSE), reader.allows(WRITE)) == (True, False)
    assert (writer.allows(PARSE), writer.allows(WRITE)) == (False, True)
    assert (both.allows(PARSE), both.allows(WRITE), both.allows(ENCODE)) == (True, True, False)
    assert both.roles == frozenset({"reader", "writer"})
    # One grant per set of roles, whatever the order or repetition of the names.
    assert table.grant(["reader", "writer", "reader"]) is both


def test_unknown_role_names_are_ignored(tmp_path: Path) -> None:
    table = _table(tmp_path)
    nothing = table.grant(["wizard", "root"])
    assert nothing.roles == frozenset()
    assert nothing is table.grant([])
    for method in (PARSE, TOOL, OTHER):
        assert not nothing.allows(method)
    mixed = table.grant(["wizard", "user"])
    assert mixed.roles == frozenset({"user"})
    assert mixed is table.grant(["user"])
    assert mixed.allows(PARSE)
    assert not mixed.allows(OTHER)


def test_empty_grant() -> None:
    grant = Grant(frozenset(), [], 0.0, 1)
    assert not grant.allows(PARSE)
    assert not grant.allows("/")


def test_a_roles_file_may_redefine_a_built_in_role(tmp_path: Path) -> None:
    table = _table(tmp_path, {"roles": {"user": {"methods": ["x.Y/*"]}}})
    user = table.grant(["user"])
    assert user.allows("/x.Y/Z")
    assert not user.allows(PARSE)
    assert table.grant(["admin"]).allows(PARSE)


def test_principals(tmp_path: Path) -> None:
    table = _table(
        tmp_path,
        {
            "roles": {"reader": {"methods": ["qulab.v1.MoleculeService/Parse*"]}},
            "principals": {"CN=pipeline,O=Lab": ["user", "reader"], "CN=ops,O=Lab": ["admin"]},
        },
    )
    assert table.principals == {
        "CN=pipeline,O=Lab": ("user", "reader"),
        "CN=ops,O=Lab": ("admin",),
    }
    assert table.check_known(["user", "reader"], "here") == ("user", "reader")
    with pytest.raises(RolesFileError, match=r"^here: unknown role\(s\) \['nobody'\]$"):
        table.check_known(["user", "nobody"], "here")


def test_rates_default_to_the_settings(tmp_path: Path) -> None:
    unlimited = _table(tmp_path)
    assert unlimited.grant(["admin"]).rate_per_s == 0.0
    table = RoleTable.load(Settings(rate_limit_per_s=5.0))
    user = table.grant(["user"])
    assert (user.rate_per_s, user.burst) == (5.0, 5)  # burst: one second's worth
    table = RoleTable.load(Settings(rate_limit_per_s=5.0, rate_limit_burst=50))
    user = table.grant(["user"])
    assert (user.rate_per_s, user.burst) == (5.0, 50)
    slow = RoleTable.load(Settings(rate_limit_per_s=0.25)).grant(["user"])
    assert (slow.rate_per_s, slow.burst) == (0.25, 1)  # never a burst of 0


def test_rates_take_the_most_generous(tmp_path: Path) -> None:
    table = _table(
        tmp_path,
        {
            "roles": {
                "fast": {"methods": ["a.B/*"], "rate_per_s": 10},
                "slow": {"methods": ["a.B/*"], "rate_per_s": 2, "burst": 7},
                "bursty": {"methods": ["a.B/*"], "rate_per_s": 1, "burst": 40},
                "free": {"methods": ["a.B/*"], "rate_per_s": 0},
                "plain": {"methods": ["a.B/*"]},
            }
        },
        rate_limit_per_s=3.0,
    )

    def rate(*names: str) -> tuple[float, int]:
        grant = table.grant(names)
        return grant.rate_per_s, grant.burst

    assert rate("fast") == (10.0, 10)
    assert rate("slow") == (2.0, 7)
    assert rate("plain") == (3.0, 3)
    assert rate("free")[0] == 0.0
    assert rate("fast", "slow") == (10.0, 10)
    assert rate("slow", "plain") == (3.0, 7)
    assert rate("fast", "bursty") == (10.0, 40)
    assert rate("fast", "free", "slow")[0] == 0.0  # no limit wins
    assert rate("user", "slow") == (3.0, 7)  # a built-in role has the settings' rate
    assert isinstance(table.roles["fast"].rate_per_s, float)


def test_no_roles_file_and_empty_file(tmp_path: Path) -> None:
    assert set(_table(tmp_path).roles) == {"admin", "user"}
    table = _table(tmp_path, {})
    assert set(table.roles) == {"admin", "user"}
    assert table.principals == {}


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ("{", "is not JSON"),
        ("", "is not JSON"),
        ("[]", "must hold a JSON object"),
        ('"roles"', "must hold a JSON object"),
        ({"roles": []}, '"roles" must be an object'),
        ({"roles": {"r": ["a.B/*"]}}, "role 'r': needs \"methods\""),
        ({"roles": {"r": {}}}, "role 'r': needs \"methods\""),
        ({"roles": {"r": {"methods": "a.B/*"}}}, "role 'r': needs \"methods\""),
        ({"roles": {"r": {"methods": ["ParseMolecule"]}}}, "role 'r': each method pattern"),
        ({"roles": {"r": {"methods": [5]}}}, "role 'r': each method pattern"),
        ({"roles": {"r": {"methods": ["a.B/*"], "rate_per_s": -1}}}, '"rate_per_s" must be'),
        ({"roles": {"r": {"methods": ["a.B/*"], "rate_per_s": "10"}}}, '"rate_per_s" must be'),
        ({"roles": {"r": {"methods": ["a.B/*"], "burst": 0}}}, '"burst" must be'),
        ({"roles": {"r": {"methods": ["a.B/*"], "burst": 2.5}}}, '"burst" must be'),
        ({"roles": {"r": {"methods": ["a.B/*"], "rate": 1}}}, "role 'r': unknown keys ['rate']"),
        ({"role": {}}, "unknown keys ['role']"),
        ({"principals": []}, '"principals" must map subjects'),
        ({"principals": {"CN=x": "user"}}, "principal 'CN=x': a list of roles"),
        ({"principals": {"CN=x": [1]}}, "principal 'CN=x': a list of roles"),
        ({"principals": {"CN=x": ["user", "wizard"]}}, "principal 'CN=x': unknown role(s)"),
    ],
)
def test_bad_roles_file_is_named(tmp_path: Path, content: Any, fault: str) -> None:
    with pytest.raises(RolesFileError) as raised:
        _table(tmp_path, content)
    message = str(raised.value)
    assert message.startswith("QULAB_ROLES_FILE: "), message
    assert fault in message


def test_principal_may_use_a_role_of_the_file(tmp_path: Path) -> None:
    table = _table(
        tmp_path,
        {"roles": {"reader": {"methods": ["a.B/*"]}}, "principals": {"CN=x": ["reader"]}},
    )
    assert table.principals == {"CN=x": ("reader",)}


def test_missing_roles_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(RolesFileError, match=r"^QULAB_ROLES_FILE: cannot read .*nowhere\.json"):
        RoleTable.load(Settings(roles_file=str(missing)))


@pytest.mark.parametrize("rate", ["NaN", "Infinity", "true"])
def test_non_finite_or_boolean_rate_is_refused(tmp_path: Path, rate: str) -> None:
    text = '{"roles": {"r": {"methods": ["a.B/*"], "rate_per_s": %s}}}' % rate  # noqa: UP031
    with pytest.raises(RolesFileError, match="QULAB_ROLES_FILE"):
        _table(tmp_path, text)


def test_a_binary_roles_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "roles.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RolesFileError, match=r"^QULAB_ROLES_FILE: .* is not UTF-8 text"):
        RoleTable.load(Settings(roles_file=str(path)))
