"""API keys: `QULAB_API_KEYS_FILE`, `{"keys": [{"principal", "sha256", "roles"}]}`.

Only the SHA-256 of each key is stored. A presented key is hashed and compared with every
stored digest by `hmac.compare_digest`, with no early exit, so the time taken says nothing
about which digest (or how much of one) matched. That costs about 0.1 µs per configured
key; deployments with thousands of principals should use bearer tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from qulab.server.interceptors.roles import Grant, RolesFileError, RoleTable, read_json

__all__ = ["ApiKey", "ApiKeys"]

_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_KEY_LENGTH = 1024


class ApiKey:
    __slots__ = ("digest", "grant", "principal")

    def __init__(self, principal: str, digest: bytes, grant: Grant) -> None:
        self.principal = principal
        self.digest = digest
        self.grant = grant  # resolved once, at load


class ApiKeys:
    def __init__(self, keys: list[ApiKey]) -> None:
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def load(cls, path: str, roles: RoleTable) -> ApiKeys:
        data = read_json(path, "QULAB_API_KEYS_FILE")
        entries = data.get("keys")
        if not isinstance(entries, list):
            raise RolesFileError('QULAB_API_KEYS_FILE: needs "keys", a list')
        keys: list[ApiKey] = []
        seen: set[bytes] = set()
        for index, entry in enumerate(entries):
            where = f"QULAB_API_KEYS_FILE: keys[{index}]"
            if not isinstance(entry, dict):
                raise RolesFileError(f"{where}: must be an object")
            principal, digest = entry.get("principal"), entry.get("sha256")
            if not isinstance(principal, str) or not principal:
                raise RolesFileError(f'{where}: needs "principal", a non-empty string')
            if not isinstance(digest, str) or not _HEX_SHA256.fullmatch(digest.lower()):
                raise RolesFileError(
                    f'{where}: "sha256" must be the 64 hex digits of the key\'s SHA-256'
                )
            names = entry.get("roles", [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise RolesFileError(f'{where}: "roles" must be a list of role names')
            raw = bytes.fromhex(digest)
            if raw in seen:
                raise RolesFileError(f"{where}: the same key is listed twice")
            seen.add(raw)
            keys.append(ApiKey(principal, raw, roles.grant(roles.check_known(names, where))))
        return cls(keys)

    def find(self, presented: str) -> ApiKey | None:
        if len(presented) > _MAX_KEY_LENGTH:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in self._keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found
