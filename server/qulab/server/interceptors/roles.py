"""Roles: which methods a principal may call (RBAC), and at what rate.

A role is a list of method patterns (`fnmatch` globs over the full method name, e.g.
`qulab.v1.MoleculeService/*` or `*/Parse*`) and an optional rate limit. Two roles are
built in; a roles file (`QULAB_ROLES_FILE`) adds more, may redefine the built-in ones, and
gives client-certificate subjects their roles:

    {"roles": {"reader": {"methods": ["qulab.v1.MoleculeService/Parse*"],
                          "rate_per_s": 20, "burst": 40}},
     "principals": {"CN=pipeline,O=Lab": ["user"]}}

Default deny: a method no role of the caller matches is refused. A caller with several
roles gets the union of their methods and the most generous of their rates.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from qulab.server.config import Settings, SettingsError, read_file

__all__ = ["BUILT_IN", "Grant", "Role", "RoleTable", "RolesFileError"]

# The `user` role: every parse, encode, write, convert and tool method.
_USER_METHODS = ("*/Parse*", "*/Encode*", "*/Write*", "*/Convert*", "qulab.v1.ToolService/*")
_MAX_GRANT_CACHE = 4096


class RolesFileError(SettingsError):
    """A credentials or roles file is malformed; the message says where, never a secret."""


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    methods: tuple[str, ...]
    rate_per_s: float | None = None  # None: the settings' default; 0: no limit
    burst: int | None = None


BUILT_IN = (Role("admin", ("*",)), Role("user", _USER_METHODS))


class Grant:
    """What one set of roles allows. Shared by every principal with those roles, so the
    method decisions are cached across calls and principals."""

    __slots__ = ("_allowed", "_pattern", "burst", "rate_per_s", "roles")

    def __init__(self, roles: frozenset[str], patterns: Iterable[str], rate: float, burst: int):
        self.roles = roles
        self.rate_per_s = rate  # 0: no limit
        self.burst = burst
        globs = [fnmatch.translate(p) for p in patterns]
        self._pattern = re.compile("|".join(globs)) if globs else None
        self._allowed: dict[str, bool] = {}

    def allows(self, method: str) -> bool:
        """`method` as gRPC names it: "/package.Service/Method"."""
        allowed = self._allowed.get(method)
        if allowed is None:
            allowed = self._pattern is not None and bool(self._pattern.match(method[1:]))
            if len(self._allowed) < _MAX_GRANT_CACHE:
                self._allowed[method] = allowed
        return allowed


class RoleTable:
    """The roles in force, and the subjects' roles; immutable once built."""

    def __init__(
        self,
        roles: Iterable[Role],
        principals: Mapping[str, tuple[str, ...]],
        default_rate: float,
        default_burst: int,
    ) -> None:
        self.roles = {role.name: role for role in roles}
        self.principals = dict(principals)
        self._default_rate = default_rate
        self._default_burst = default_burst
        self._grants: dict[frozenset[str], Grant] = {}

    @classmethod
    def load(cls, settings: Settings) -> RoleTable:
        roles = {role.name: role for role in BUILT_IN}
        principals: dict[str, tuple[str, ...]] = {}
        if settings.roles_file:
            data = read_json(settings.roles_file, "QULAB_ROLES_FILE")
            roles.update(_parse_roles(data.get("roles", {})))
            principals = _parse_principals(data.get("principals", {}), roles)
            unknown = set(data) - {"roles", "principals"}
            if unknown:
                raise RolesFileError(f"QULAB_ROLES_FILE: unknown keys {sorted(unknown)}")
        return cls(roles.values(), principals, settings.rate_limit_per_s, settings.rate_limit_burst)

    def check_known(self, names: Iterable[str], where: str) -> tuple[str, ...]:
        names = tuple(names)
        unknown = [n for n in names if n not in self.roles]
        if unknown:
            raise RolesFileError(f"{where}: unknown role(s) {unknown}")
        return names

    def grant(self, names: Iterable[str]) -> Grant:
        """The grant of these roles; names that are not roles here are ignored (a token
        may carry roles meant for other services)."""
        key = frozenset(n for n in names if n in self.roles)
        grant = self._grants.get(key)
        if grant is None:
            grant = self._build(key)
            if len(self._grants) < _MAX_GRANT_CACHE:
                self._grants[key] = grant
        return grant

    def _build(self, names: frozenset[str]) -> Grant:
        roles = [self.roles[n] for n in sorted(names)]
        patterns = [p for role in roles for p in role.methods]
        rates = [self._default_rate if r.rate_per_s is None else r.rate_per_s for r in roles]
        rate = 0.0 if not rates or 0 in rates else max(rates)
        bursts = [
            (self._default_burst if r.burst is None else r.burst) or max(1, round(limit))
            for r, limit in zip(roles, rates, strict=True)
        ]
        return Grant(names, patterns, rate, max(bursts, default=1))


def read_json(path: str, setting: str) -> dict[str, Any]:
    raw = read_file(path, setting, RolesFileError)
    try:
        data = json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:  # its message names line and column, not content
        raise RolesFileError(f"{setting}: {path} is not JSON: {exc}") from None
    except UnicodeDecodeError:
        raise RolesFileError(f"{setting}: {path} is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise RolesFileError(f"{setting}: {path} must hold a JSON object")
    return data


def _parse_roles(entries: Any) -> dict[str, Role]:
    if not isinstance(entries, dict):
        raise RolesFileError('QULAB_ROLES_FILE: "roles" must be an object of roles by name')
    roles = {}
    for name, entry in entries.items():
        where = f"QULAB_ROLES_FILE: role {name!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("methods"), list):
            raise RolesFileError(f'{where}: needs "methods", a list of method patterns')
        methods = entry["methods"]
        if not all(isinstance(m, str) and "/" in m for m in methods):
            raise RolesFileError(f'{where}: each method pattern looks like "pkg.Service/Method"')
        rate, burst = entry.get("rate_per_s"), entry.get("burst")
        if rate is not None and (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not math.isfinite(rate)
            or rate < 0
        ):
            raise RolesFileError(f'{where}: "rate_per_s" must be a finite number >= 0')
        if burst is not None and (
            isinstance(burst, bool) or not isinstance(burst, int) or burst < 1
        ):
            raise RolesFileError(f'{where}: "burst" must be an integer >= 1')
        unknown = set(entry) - {"methods", "rate_per_s", "burst"}
        if unknown:
            raise RolesFileError(f"{where}: unknown keys {sorted(unknown)}")
        roles[name] = Role(name, tuple(methods), None if rate is None else float(rate), burst)
    return roles


def _parse_principals(entries: Any, roles: Mapping[str, Role]) -> dict[str, tuple[str, ...]]:
    if not isinstance(entries, dict):
        raise RolesFileError('QULAB_ROLES_FILE: "principals" must map subjects to role lists')
    principals = {}
    for subject, names in entries.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RolesFileError(f"QULAB_ROLES_FILE: principal {subject!r}: a list of roles")
        unknown = [n for n in names if n not in roles]
        if unknown:
            raise RolesFileError(
                f"QULAB_ROLES_FILE: principal {subject!r}: unknown role(s) {unknown}"
            )
        principals[subject] = tuple(names)
    return principals
