"""Credential files for tests of a server with authentication: API keys and roles files
written the way an operator (or a Kubernetes secret update) would, HS256 tokens."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt

AUDIENCE = "qulab-tests"
ISSUER = "https://issuer.test"
HS256_SECRET = "a-test-secret-that-is-long-enough-for-hs256!"


def replace_file(path: Path, text: str) -> None:
    """Swap in new contents atomically (a new inode, as a secret update does)."""
    scratch = path.with_name(path.name + ".new")
    scratch.write_text(text)
    os.replace(scratch, path)


def write_keys(path: Path, keys: Mapping[str, tuple[str, Sequence[str]]]) -> None:
    """`keys`: the plain key -> (principal, roles); the file holds only their SHA-256."""
    entries = [
        {
            "principal": principal,
            "sha256": hashlib.sha256(key.encode()).hexdigest(),
            "roles": list(roles),
        }
        for key, (principal, roles) in keys.items()
    ]
    replace_file(path, json.dumps({"keys": entries}))


def write_roles(path: Path, roles: Mapping[str, Mapping[str, Any]]) -> None:
    replace_file(path, json.dumps({"roles": roles}))


def token(
    subject: str = "carol",
    roles: Sequence[str] = ("user",),
    *,
    audience: str = AUDIENCE,
    issuer: str = ISSUER,
    expires_in: float = 600,
    secret: str = HS256_SECRET,
) -> str:
    now = time.time()
    claims = {
        "sub": subject,
        "aud": audience,
        "iss": issuer,
        "iat": int(now),
        "exp": int(now + expires_in),
        "roles": list(roles),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def auth_settings(tmp: Path, keys: Mapping[str, tuple[str, Sequence[str]]]) -> dict[str, str]:
    """Server settings (for `start_server`) accepting these API keys and HS256 tokens."""
    write_keys(tmp / "keys.json", keys)
    (tmp / "jwt.secret").write_text(HS256_SECRET)
    return {
        "api_keys_file": str(tmp / "keys.json"),
        "jwt_secret_file": str(tmp / "jwt.secret"),
        "jwt_audience": AUDIENCE,
        "jwt_issuer": ISSUER,
    }
