"""Authentication and RBAC: credentials -> principal and grant; the grant must allow the
method.

Credentials, in the order they are looked for:
  `x-api-key: <key>`             the API keys file (`_keys`)
  `authorization: Bearer <jwt>`  HS256 / RS256 / ES256 (`_tokens`)
  the client certificate         with mTLS (QULAB_TLS_CLIENT_CA_FILE): its subject

The key file, JWT keys and roles file form one `AuthTables` snapshot. A reload (SIGHUP, or
a change seen by the file watcher) builds a new snapshot off the event loop, and swaps it
in under the write side of an aiorwlock; each call reads the snapshot under the read
side, so readers never wait for each other and never see half a reload. A file that does
not load keeps the previous snapshot in force, and the log says why (never the contents).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiorwlock

from qulab.server.call import Call, Context
from qulab.server.config import Settings, SettingsError
from qulab.server.errors import PermissionDenied, Unauthenticated
from qulab.server.interceptors._keys import ApiKeys
from qulab.server.interceptors._tokens import TokenVerifier
from qulab.server.interceptors.roles import Grant, RolesFileError, RoleTable
from qulab.server.watch import fingerprint

__all__ = ["AuthTables", "Authenticator", "RolesFileError", "not_allowed"]

_log = logging.getLogger("qulab.auth")
_API_KEY = "x-api-key"
_AUTHORIZATION = "authorization"
_BEARER = "bearer "
_SUBJECT = "x509_subject"
_CERT_DEFAULT_ROLES = ("user",)


@dataclass(frozen=True, slots=True)
class AuthTables:
    """Everything the credential and role files say, loaded together."""

    roles: RoleTable
    keys: ApiKeys | None
    tokens: TokenVerifier | None

    @classmethod
    def load(cls, settings: Settings) -> AuthTables:
        """Read every file; RolesFileError names the file and what is wrong in it."""
        roles = RoleTable.load(settings)
        keys = ApiKeys.load(settings.api_keys_file, roles) if settings.api_keys_file else None
        return cls(roles, keys, TokenVerifier.load(settings, roles))


def not_allowed(method: str) -> PermissionDenied:
    """The refusal of a caller whose roles do not allow `method`."""
    return PermissionDenied(
        f"the caller may not call {method[1:]}",
        reason="METHOD_NOT_ALLOWED",
        metadata={"method": method[1:]},
    )


def watched_files(settings: Settings) -> tuple[str, ...]:
    names = (
        settings.api_keys_file,
        settings.jwt_secret_file,
        settings.jwt_public_keys,
        settings.roles_file,
    )
    return tuple(name for name in names if name)


class Authenticator:
    """The auth interceptor. Built only when credentials are configured."""

    def __init__(self, settings: Settings, tables: AuthTables) -> None:
        self._settings = settings
        self._tables = tables
        self._client_certs = bool(settings.tls_client_ca_file)
        self._lock = aiorwlock.RWLock(fast=True)
        self._reloading = asyncio.Lock()
        self.reloads_ok = 0
        self.reloads_failed = 0

    @property
    def tables(self) -> AuthTables:
        return self._tables

    async def admit(self, call: Call, context: Context) -> None:
        """Name the caller (`call.principal`, `call.grant`) and check that its grant allows
        the method."""
        async with self._lock.reader_lock:
            principal, grant = self._identify(call, context, self._tables)
        call.principal = principal
        call.grant = grant
        if not grant.allows(call.method):
            raise not_allowed(call.method)

    def _identify(self, call: Call, context: Context, tables: AuthTables) -> tuple[str, Grant]:
        api_key = authorization = None
        for key, value in call.metadata:
            if key == _API_KEY:
                api_key = value
            elif key == _AUTHORIZATION:
                authorization = value
        if isinstance(api_key, str):
            if tables.keys is None:
                raise Unauthenticated(
                    "this server does not accept API keys", reason="API_KEY_INVALID"
                )
            found = tables.keys.find(api_key)
            if found is None:
                raise Unauthenticated("the API key is not valid", reason="API_KEY_INVALID")
            return found.principal, found.grant
        if isinstance(authorization, str):
            if authorization[: len(_BEARER)].lower() != _BEARER:
                raise Unauthenticated(
                    "the authorization header must be 'Bearer <token>'", reason="TOKEN_INVALID"
                )
            if tables.tokens is None:
                raise Unauthenticated(
                    "this server does not accept bearer tokens", reason="TOKEN_INVALID"
                )
            return tables.tokens.verify(authorization[len(_BEARER) :].strip())
        if self._client_certs:
            subject_bytes = next(iter(context.auth_context().get(_SUBJECT, ())), None)
            if subject_bytes:
                subject = subject_bytes.decode("utf-8", "replace")
                names = tables.roles.principals.get(subject, _CERT_DEFAULT_ROLES)
                return subject, tables.roles.grant(names)
        raise Unauthenticated(
            "no credentials: send an API key as 'x-api-key' or a token as "
            "'authorization: Bearer <token>'",
            reason="CREDENTIALS_MISSING",
        )

    # -- reloading ---------------------------------------------------------------------

    async def reload(self, trigger: str) -> bool:
        """Load the files again and swap the tables in; False (and the old tables stay)
        when a file does not load."""
        async with self._reloading:
            loop = asyncio.get_running_loop()
            try:
                tables = await loop.run_in_executor(None, AuthTables.load, self._settings)
            except Exception as exc:
                # A bad file (the SettingsError says what is wrong in it) or a bug: either
                # way the previous tables stay, and the watcher lives on to try again.
                self.reloads_failed += 1
                reason = str(exc) if isinstance(exc, SettingsError) else type(exc).__name__
                _log.error(
                    "credentials not reloaded; the previous ones stay in force",
                    extra={"trigger": trigger, "reason": reason},
                )
                return False
            async with self._lock.writer_lock:
                self._tables = tables
            self.reloads_ok += 1
        _log.info(
            "credentials reloaded",
            extra={
                "trigger": trigger,
                "api_keys": len(tables.keys) if tables.keys is not None else 0,
                "roles": sorted(tables.roles.roles),
            },
        )
        return True

    async def watch(self) -> None:
        """Reload whenever a watched file changes (mtime, size or inode: a Kubernetes
        secret update swaps a symlink). Runs until cancelled."""
        period = self._settings.auth_reload_s
        files = watched_files(self._settings)
        if period <= 0 or not files:
            return
        seen = fingerprint(files)
        while True:
            await asyncio.sleep(period)
            now = fingerprint(files)
            if now != seen:
                seen = now
                await self.reload("file change")
