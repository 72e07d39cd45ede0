"""What every QuLab RPC passes through before its servicer runs, in this order (outermost
first; this is the one place the order is written):

    tracing    `telemetry.Tracing`: the server span, opened first and closed last
    observe    `services._rpc.Rpc`: request id, RPC metrics, drain refusal, the error
               boundary (every refusal below becomes a status with details), one JSON
               line per RPC (the audit record); it runs the rest of the chain
    auth       credentials -> principal and grant; RBAC by method        (`auth`, `roles`)
    ratelimit  the principal's token bucket; stream messages count one each  (`ratelimit`)
    deadline   refuse an expired call; default and cap the deadline          (`deadline`)

Health and reflection are grpc's own servicers and never enter the chain: they stay open.

These are not `grpc.aio.ServerInterceptor`s. That API runs before the handler without the
call's context, so it cannot read the deadline or the peer's certificate, and a refusal
there must return a substitute handler; each stage here is one method call on the `Call`,
inside the error boundary, with nothing allocated on the way through.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TypeVar

from qulab.server.call import Call, Context
from qulab.server.config import Settings
from qulab.server.interceptors.auth import Authenticator, AuthTables, not_allowed
from qulab.server.interceptors.deadline import Deadlines
from qulab.server.interceptors.ratelimit import RateLimiter
from qulab.server.interceptors.roles import RoleTable

__all__ = ["Interceptors"]

_log = logging.getLogger("qulab.auth")
T = TypeVar("T")


class Interceptors:
    """The chain after `observe`. `auth` is None when no credentials are configured (a
    loopback-only server, or QULAB_AUTH=none); `limiter` is None when no role has a rate."""

    def __init__(
        self, auth: Authenticator | None, limiter: RateLimiter | None, deadlines: Deadlines
    ) -> None:
        self.auth = auth
        self.limiter = limiter
        self.deadlines = deadlines

    @classmethod
    def build(cls, settings: Settings) -> Interceptors:
        """The chain `settings` ask for; RolesFileError (a SettingsError) when a
        credentials file is bad."""
        auth = None
        if settings.auth == "none":
            _log.warning("authentication is off (QULAB_AUTH=none): every caller is admin")
            roles = RoleTable.load(settings)
        elif not settings.credentials_configured:
            _log.warning(
                "no credentials are configured: accepting unauthenticated calls, as admin, "
                "because the server listens on loopback only",
                extra={"host": settings.host},
            )
            roles = RoleTable.load(settings)
        else:
            tables = AuthTables.load(settings)
            auth = Authenticator(settings, tables)
            roles = tables.roles
        # Callers auth did not name (no credentials configured) get the admin grant. With
        # auth, a reload may give a role a rate, so the limiter is always there.
        anonymous = roles.grant(["admin"])
        limited = settings.rate_limit_per_s > 0 or any(
            role.rate_per_s for role in roles.roles.values()
        )
        limiter = RateLimiter(anonymous) if limited or auth is not None else None
        return cls(auth, limiter, Deadlines(settings))

    async def admit(self, call: Call, context: Context) -> None:
        if self.auth is not None:
            await self.auth.admit(call, context)
        if self.limiter is not None:
            self.limiter.admit(call)
        self.deadlines.admit(call, context)

    def allows(self, call: Call, method: str) -> bool:
        """Whether the admitted `call`'s caller may call `method` too (all may, without
        authentication)."""
        return self.auth is None or (call.grant is not None and call.grant.allows(method))

    def authorize(self, call: Call, method: str) -> None:
        """RBAC for `method` on behalf of the admitted `call` (a tool call reaching the RPC
        it names): PermissionDenied unless the caller's roles allow it."""
        if not self.allows(call, method):
            raise not_allowed(method)

    def messages(self, call: Call, requests: AsyncIterator[T]) -> AsyncIterator[T]:
        """A stream's requests as its servicer should read them (paced by the limiter)."""
        return requests if self.limiter is None else self.limiter.paced(call, requests)
