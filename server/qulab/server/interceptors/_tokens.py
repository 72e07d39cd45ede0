"""Bearer tokens (JWT, by PyJWT): HS256 with a shared secret, RS256/ES256 with public keys
from a PEM file or a JWKS file.

The algorithm a token names picks the key set (the HS256 secret is never tried on an RS256
token nor a public key as an HMAC secret: no algorithm confusion), `kid` picks the key
when the token has one. `exp` and `sub` are required; `aud` must match the setting, `iss`
too when set; `exp`/`nbf` allow a small leeway. The principal is `sub`, the roles come
from a configurable claim.

Verified tokens are cached until they expire (a service sends the same token on every
call, and an RS256 check costs ~30 µs); a reload builds a new verifier, so a removed key
stops working at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from qulab.server.config import Settings, read_file
from qulab.server.errors import Unauthenticated
from qulab.server.interceptors.roles import Grant, RolesFileError, RoleTable

__all__ = ["TokenVerifier"]

_PEM_BLOCK = re.compile(rb"-----BEGIN (PUBLIC KEY|CERTIFICATE)-----.+?-----END \1-----", re.DOTALL)
_MAX_TOKEN_LENGTH = 16 * 1024
_MAX_CACHED = 10_000
_KEY_TYPES: dict[str, type] = {"RS256": rsa.RSAPublicKey, "ES256": ec.EllipticCurvePublicKey}


class _PublicKey:
    __slots__ = ("key", "kid")

    def __init__(self, key: Any, kid: str | None) -> None:
        self.key = key
        self.kid = kid


class TokenVerifier:
    def __init__(
        self,
        settings: Settings,
        roles: RoleTable,
        secret: bytes | None,
        public_keys: Sequence[_PublicKey],
    ) -> None:
        self._roles = roles
        self._secret = secret
        self._public = public_keys
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer or None
        self._leeway = settings.jwt_leeway_s
        self._claim_path = settings.jwt_roles_claim.split(".")
        self._require = ["exp", "sub", "aud", *(["iss"] if self._issuer else [])]
        self._cache: dict[str, tuple[float, str, Grant]] = {}

    @classmethod
    def load(cls, settings: Settings, roles: RoleTable) -> TokenVerifier | None:
        if not settings.accepts_tokens:
            return None
        secret = None
        if settings.jwt_secret_file:
            secret = read_file(
                settings.jwt_secret_file, "QULAB_JWT_SECRET_FILE", RolesFileError
            ).strip()
            if len(secret) < 32:
                raise RolesFileError(
                    "QULAB_JWT_SECRET_FILE: an HS256 secret needs at least 32 bytes"
                )
        public: list[_PublicKey] = []
        if settings.jwt_public_keys:
            public = _load_public_keys(settings.jwt_public_keys)
        return cls(settings, roles, secret, public)

    def verify(self, token: str) -> tuple[str, Grant]:
        """The principal and grant of a valid token; Unauthenticated otherwise."""
        cached = self._cache.get(token)
        if cached is not None and time.time() < cached[0]:
            return cached[1], cached[2]
        if len(token) > _MAX_TOKEN_LENGTH:
            raise Unauthenticated("the bearer token is too long", reason="TOKEN_INVALID")
        claims = self._decode(token)
        principal = claims["sub"]
        if not isinstance(principal, str) or not principal:
            raise Unauthenticated("the bearer token's sub is not a name", reason="TOKEN_INVALID")
        grant = self._roles.grant(self._role_names(claims))
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[token] = (float(claims["exp"]) + self._leeway, principal, grant)
        return principal, grant

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is malformed", reason="TOKEN_INVALID") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        candidates = self._keys_for(algorithm, kid)
        if not candidates:
            raise Unauthenticated(
                f"no configured key verifies {algorithm!s} tokens"
                + (f" with kid {kid!r}" if isinstance(kid, str) else ""),
                reason="TOKEN_INVALID",
            )
        for index, key in enumerate(candidates):
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=[str(algorithm)],
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=self._leeway,
                    options={"require": self._require},
                )
            except jwt.InvalidSignatureError:
                if index == len(candidates) - 1:
                    raise Unauthenticated(
                        "the bearer token's signature is not valid", reason="TOKEN_INVALID"
                    ) from None
            except jwt.PyJWTError as exc:
                raise _refusal(exc) from None
        raise AssertionError("unreachable")

    def _keys_for(self, algorithm: object, kid: object) -> list[Any]:
        if algorithm == "HS256":
            return [self._secret] if self._secret is not None else []
        wanted = _KEY_TYPES.get(algorithm) if isinstance(algorithm, str) else None
        if wanted is None:
            return []
        keys = [k for k in self._public if isinstance(k.key, wanted)]
        if algorithm == "ES256":  # P-256 only: another curve could never verify one
            keys = [k for k in keys if isinstance(k.key.curve, ec.SECP256R1)]
        if isinstance(kid, str) and any(k.kid is not None for k in keys):
            keys = [k for k in keys if k.kid == kid]
        return [k.key for k in keys]

    def _role_names(self, claims: dict[str, Any]) -> list[str]:
        value: Any = claims
        for part in self._claim_path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list):
            return [v for v in value if isinstance(v, str)]
        return []


def _refusal(exc: jwt.PyJWTError) -> Unauthenticated:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return Unauthenticated("the bearer token has expired", reason="TOKEN_EXPIRED")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return Unauthenticated("the bearer token is not valid yet", reason="TOKEN_NOT_YET_VALID")
    if isinstance(exc, jwt.InvalidAudienceError):
        return Unauthenticated(
            "the bearer token was issued for another audience", reason="TOKEN_WRONG_AUDIENCE"
        )
    if isinstance(exc, jwt.InvalidIssuerError):
        return Unauthenticated(
            "the bearer token comes from another issuer", reason="TOKEN_WRONG_ISSUER"
        )
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return Unauthenticated(
            f"the bearer token has no {exc.claim!r} claim", reason="TOKEN_INVALID"
        )
    return Unauthenticated("the bearer token is not valid", reason="TOKEN_INVALID")


def _load_public_keys(path: str) -> list[_PublicKey]:
    raw = read_file(path, "QULAB_JWT_PUBLIC_KEYS", RolesFileError)
    keys: list[_PublicKey] = []
    if raw.lstrip().startswith(b"{"):
        try:
            jwks = jwt.PyJWKSet.from_json(raw.decode())
        except (jwt.PyJWTError, ValueError) as exc:
            raise RolesFileError(f"QULAB_JWT_PUBLIC_KEYS: {path} is not a JWKS: {exc}") from None
        keys = [_PublicKey(k.key, k.key_id) for k in jwks.keys]
    else:
        for match in _PEM_BLOCK.finditer(raw):
            try:
                if match.group(1) == b"CERTIFICATE":
                    key: Any = x509.load_pem_x509_certificate(match.group(0)).public_key()
                else:
                    key = load_pem_public_key(match.group(0))
            except ValueError as exc:
                raise RolesFileError(
                    f"QULAB_JWT_PUBLIC_KEYS: a PEM block of {path} does not load: {exc}"
                ) from None
            keys.append(_PublicKey(key, None))
    usable = [k for k in keys if isinstance(k.key, tuple(_KEY_TYPES.values()))]
    if not usable:
        raise RolesFileError(f"QULAB_JWT_PUBLIC_KEYS: {path} holds no RSA or EC public key")
    return usable
