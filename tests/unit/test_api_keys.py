"""API keys: the file holds only SHA-256 digests; a presented key is found by its digest,
and a malformed file is refused with a message that never repeats a key or a digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from qulab.server.config import Settings
from qulab.server.interceptors._keys import ApiKeys
from qulab.server.interceptors.roles import RolesFileError, RoleTable

ALICE_KEY = "qk_alice_3f9a0c1e7b2d4a6f8e0b1c2d3e4f5a6b"
BOB_KEY = "qk_bob_0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _load(tmp_path: Path, data: Any, roles: RoleTable | None = None) -> ApiKeys:
    path = tmp_path / "keys.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return ApiKeys.load(str(path), roles or RoleTable.load(Settings()))


def _entry(key: str, principal: str = "alice", roles: Any = ("user",)) -> dict[str, Any]:
    return {"principal": principal, "sha256": _sha(key), "roles": list(roles)}


def test_the_right_key_is_found(tmp_path: Path) -> None:
    keys = _load(
        tmp_path,
        {
            "keys": [
                _entry(ALICE_KEY, "alice", ["user"]),
                # Upper-case hex is the same digest.
                {"principal": "bob", "sha256": _sha(BOB_KEY).upper(), "roles": ["admin"]},
                {"principal": "carol", "sha256": _sha("carol-key")},
            ]
        },
    )
    assert len(keys) == 3
    alice, bob, carol = keys.find(ALICE_KEY), keys.find(BOB_KEY), keys.find("carol-key")
    assert alice is not None
    assert bob is not None
    assert carol is not None
    assert (alice.principal, alice.grant.roles) == ("alice", frozenset({"user"}))
    assert (bob.principal, bob.grant.roles) == ("bob", frozenset({"admin"}))
    assert (carol.principal, carol.grant.roles) == ("carol", frozenset())
    assert alice.digest == hashlib.sha256(ALICE_KEY.encode()).digest()


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "wrong",
        ALICE_KEY + "x",
        ALICE_KEY[:-1],
        ALICE_KEY.upper(),
        " " + ALICE_KEY,
        _sha(ALICE_KEY),  # the digest is not the key
    ],
)
def test_a_wrong_key_is_not_found(tmp_path: Path, presented: str) -> None:
    keys = _load(tmp_path, {"keys": [_entry(ALICE_KEY)]})
    assert keys.find(presented) is None


def test_a_too_long_key_is_not_found_even_when_listed(tmp_path: Path) -> None:
    longest, too_long = "k" * 1024, "k" * 1025
    keys = _load(tmp_path, {"keys": [_entry(longest, "a"), _entry(too_long, "b")]})
    found = keys.find(longest)
    assert found is not None
    assert found.principal == "a"
    assert keys.find(too_long) is None


def test_no_keys(tmp_path: Path) -> None:
    keys = _load(tmp_path, {"keys": []})
    assert len(keys) == 0
    assert keys.find(ALICE_KEY) is None


def test_a_key_may_have_a_role_of_the_roles_file(tmp_path: Path) -> None:
    roles_file = tmp_path / "roles.json"
    roles_file.write_text(json.dumps({"roles": {"reader": {"methods": ["a.B/*"]}}}))
    roles = RoleTable.load(Settings(roles_file=str(roles_file)))
    keys = _load(tmp_path, {"keys": [_entry(ALICE_KEY, roles=["reader", "user"])]}, roles)
    found = keys.find(ALICE_KEY)
    assert found is not None
    assert found.grant.roles == frozenset({"reader", "user"})


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ("{", "is not JSON"),
        ("[]", "must hold a JSON object"),
        ({}, 'needs "keys", a list'),
        ({"keys": {"alice": _sha(ALICE_KEY)}}, 'needs "keys", a list'),
        ({"keys": [_sha(ALICE_KEY)]}, "keys[0]: must be an object"),
        ({"keys": [{"sha256": _sha(ALICE_KEY), "roles": ["user"]}]}, 'keys[0]: needs "principal"'),
        ({"keys": [{**_entry(ALICE_KEY), "principal": ""}]}, 'keys[0]: needs "principal"'),
        ({"keys": [{**_entry(ALICE_KEY), "principal": 7}]}, 'keys[0]: needs "principal"'),
        ({"keys": [{"principal": "alice", "roles": []}]}, 'keys[0]: "sha256" must be'),
        ({"keys": [{**_entry(ALICE_KEY), "sha256": "zz" * 32}]}, 'keys[0]: "sha256" must be'),
        ({"keys": [{**_entry(ALICE_KEY), "sha256": _sha(ALICE_KEY)[:-2]}]}, '"sha256" must be'),
        ({"keys": [{**_entry(ALICE_KEY), "sha256": _sha(ALICE_KEY) + "00"}]}, '"sha256" must'),
        ({"keys": [{**_entry(ALICE_KEY), "sha256": ALICE_KEY}]}, 'keys[0]: "sha256" must be'),
        ({"keys": [{**_entry(ALICE_KEY), "roles": "user"}]}, 'keys[0]: "roles" must be a list'),
        ({"keys": [{**_entry(ALICE_KEY), "roles": [None]}]}, 'keys[0]: "roles" must be a list'),
        ({"keys": [_entry(ALICE_KEY, roles=["user", "wizard"])]}, "keys[0]: unknown role(s)"),
        (
            {"keys": [_entry(BOB_KEY, "bob"), _entry(ALICE_KEY), _entry(ALICE_KEY, "eve")]},
            "keys[2]: the same key is listed twice",
        ),
        (
            {
                "keys": [
                    _entry(ALICE_KEY),
                    {"principal": "eve", "sha256": _sha(ALICE_KEY).upper()},
                ]
            },
            "keys[1]: the same key is listed twice",
        ),
    ],
)
def test_bad_keys_file_is_named_without_key_material(
    tmp_path: Path, content: Any, fault: str
) -> None:
    with pytest.raises(RolesFileError) as raised:
        _load(tmp_path, content)
    message = str(raised.value)
    assert message.startswith("QULAB_API_KEYS_FILE: "), message
    assert fault in message
    for secret in (ALICE_KEY, BOB_KEY, _sha(ALICE_KEY), _sha(BOB_KEY), "zz" * 32):
        assert secret not in message
        assert secret.upper() not in message
    assert _sha(ALICE_KEY)[:16] not in message


def test_missing_keys_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RolesFileError, match=r"^QULAB_API_KEYS_FILE: cannot read .*none\.json"):
        ApiKeys.load(str(tmp_path / "none.json"), RoleTable.load(Settings()))
