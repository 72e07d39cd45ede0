"""Bearer tokens: real keys (RSA 2048, EC P-256, an HS256 secret) and real tokens made with
PyJWT, checked by the verifier the server uses: every refusal reason, wrong keys,
algorithm confusion, key selection by kid, the roles claim, leeway and the cache."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from qulab.server.config import Settings
from qulab.server.errors import Unauthenticated
from qulab.server.interceptors import _tokens
from qulab.server.interceptors._tokens import TokenVerifier
from qulab.server.interceptors.roles import Grant, RolesFileError, RoleTable

AUDIENCE = "qulab-unit"
ISSUER = "https://issuer.test"
SECRET = b"unit-test-hs256-secret-0123456789abcdef"
PARSE = "/qulab.v1.MoleculeService/ParseMolecule"
ADMIN_ONLY = "/qulab.v1.AdminService/Reload"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def rsa_a() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_b() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_a() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ec_b() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _public_pem(key: PrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _certificate_pem(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token issuer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _jwk(key: PrivateKey, kid: str | None) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, **({"kid": kid} if kid else {})}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**claims: Any) -> dict[str, Any]:
    """Valid claims for the verifier; a claim given as None is left out."""
    base: dict[str, Any] = {
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": int(time.time()) + 300,
        "roles": ["user"],
    }
    base.update(claims)
    return {k: v for k, v in base.items() if v is not None}


def _token(key: Any, algorithm: str = "RS256", *, kid: str | None = None, **claims: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(_claims(**claims), key, algorithm=algorithm, headers=headers)


def _hand_made(
    header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes] | None
) -> str:
    """A token PyJWT would not make (alg none, HMAC with a PEM key, odd headers)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = sign(signing_input.encode()) if sign is not None else b""
    return f"{signing_input}.{_b64(signature)}"


def _hmac(key: bytes, digest: Any = hashlib.sha256) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(key, data, digest).digest()


def _rs256(key: rsa.RSAPrivateKey) -> Callable[[bytes], bytes]:
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _settings(**settings: Any) -> Settings:
    settings.setdefault("jwt_audience", AUDIENCE)
    return Settings(**settings)


def _verifier(**settings: Any) -> TokenVerifier:
    built = _settings(**settings)
    verifier = TokenVerifier.load(built, RoleTable.load(built))
    assert verifier is not None
    return verifier


def _write(tmp_path: Path, name: str, content: bytes | str) -> str:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return str(path)


def _refused(verifier: TokenVerifier, token: str, reason: str) -> str:
    with pytest.raises(Unauthenticated) as raised:
        verifier.verify(token)
    assert raised.value.reason == reason, raised.value.message
    if len(token) >= 8:
        assert token not in raised.value.message
    return raised.value.message


@pytest.fixture
def hs256(tmp_path: Path) -> TokenVerifier:
    return _verifier(jwt_secret_file=_write(tmp_path, "secret", SECRET + b"\n"))


@pytest.fixture
def rs256(tmp_path: Path, rsa_a: rsa.RSAPrivateKey) -> TokenVerifier:
    return _verifier(jwt_public_keys=_write(tmp_path, "keys.pem", _public_pem(rsa_a)))


# -- accepted tokens ---------------------------------------------------------------------


def test_hs256_token(hs256: TokenVerifier) -> None:
    principal, grant = hs256.verify(_token(SECRET, "HS256"))
    assert principal == "alice"
    assert grant.roles == frozenset({"user"})
    assert grant.allows(PARSE)
    assert not grant.allows(ADMIN_ONLY)


def test_rs256_token_from_a_pem_public_key(rs256: TokenVerifier, rsa_a: rsa.RSAPrivateKey) -> None:
    principal, grant = rs256.verify(_token(rsa_a, sub="svc-pipeline", roles=["admin"]))
    assert principal == "svc-pipeline"
    assert grant.allows(ADMIN_ONLY)


def test_es256_token_from_a_pem_public_key(
    tmp_path: Path, ec_a: ec.EllipticCurvePrivateKey
) -> None:
    verifier = _verifier(jwt_public_keys=_write(tmp_path, "ec.pem", _public_pem(ec_a)))
    assert verifier.verify(_token(ec_a, "ES256"))[0] == "alice"


def test_several_pem_blocks_and_certificates(
    tmp_path: Path,
    rsa_a: rsa.RSAPrivateKey,
    rsa_b: rsa.RSAPrivateKey,
    ec_a: ec.EllipticCurvePrivateKey,
) -> None:
    pem = (
        b"issuer certificate\n"
        + _certificate_pem(rsa_a)
        + b"\nthe EC key\n"
        + _public_pem(ec_a)
        + _public_pem(ed25519.Ed25519PrivateKey.generate())  # neither RSA nor EC: unused
        + _public_pem(rsa_b)
    )
    verifier = _verifier(jwt_public_keys=_write(tmp_path, "keys.pem", pem))
    assert verifier.verify(_token(rsa_a, sub="a"))[0] == "a"
    assert verifier.verify(_token(rsa_b, sub="b"))[0] == "b"
    assert verifier.verify(_token(ec_a, "ES256", sub="e"))[0] == "e"
    # A PEM file has no kids: a kid in the token does not narrow the keys.
    assert verifier.verify(_token(rsa_b, kid="whatever", sub="k"))[0] == "k"


def test_secret_and_public_keys_together(
    tmp_path: Path, rsa_a: rsa.RSAPrivateKey, rsa_b: rsa.RSAPrivateKey
) -> None:
    verifier = _verifier(
        jwt_secret_file=_write(tmp_path, "secret", SECRET),
        jwt_public_keys=_write(tmp_path, "keys.pem", _public_pem(rsa_a)),
    )
    assert verifier.verify(_token(SECRET, "HS256", sub="h"))[0] == "h"
    assert verifier.verify(_token(rsa_a, sub="r"))[0] == "r"
    _refused(verifier, _token(rsa_b), "TOKEN_INVALID")


def test_issuer_when_set(tmp_path: Path) -> None:
    verifier = _verifier(jwt_secret_file=_write(tmp_path, "s", SECRET), jwt_issuer=ISSUER)
    assert verifier.verify(_token(SECRET, "HS256", iss=ISSUER))[0] == "alice"
    _refused(verifier, _token(SECRET, "HS256", iss="https://evil.test"), "TOKEN_WRONG_ISSUER")
    message = _refused(verifier, _token(SECRET, "HS256"), "TOKEN_INVALID")
    assert "'iss'" in message


def test_any_issuer_when_unset(hs256: TokenVerifier) -> None:
    assert hs256.verify(_token(SECRET, "HS256", iss="https://anyone.test"))[0] == "alice"


def test_audience_list(hs256: TokenVerifier) -> None:
    assert hs256.verify(_token(SECRET, "HS256", aud=["other", AUDIENCE]))[0] == "alice"
    _refused(hs256, _token(SECRET, "HS256", aud=["other", "more"]), "TOKEN_WRONG_AUDIENCE")


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "reason", "says"),
    [
        ({"exp": int(time.time()) - 3600}, "TOKEN_EXPIRED", "expired"),
        ({"nbf": int(time.time()) + 3600}, "TOKEN_NOT_YET_VALID", "not valid yet"),
        ({"iat": int(time.time()) + 3600}, "TOKEN_NOT_YET_VALID", "not valid yet"),
        ({"aud": "another-service"}, "TOKEN_WRONG_AUDIENCE", "another audience"),
        ({"aud": None}, "TOKEN_INVALID", "'aud'"),
        ({"exp": None}, "TOKEN_INVALID", "'exp'"),
        ({"sub": None}, "TOKEN_INVALID", "'sub'"),
        ({"sub": ""}, "TOKEN_INVALID", "sub is not a name"),
        ({"sub": 42}, "TOKEN_INVALID", "not valid"),
        ({"exp": "soon"}, "TOKEN_INVALID", "not valid"),
    ],
)
def test_refusal_reasons(
    hs256: TokenVerifier, claims: dict[str, Any], reason: str, says: str
) -> None:
    assert says in _refused(hs256, _token(SECRET, "HS256", **claims), reason)


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b.c", "Bearer x.y.z", "eyJhbGciOiJIUzI1NiJ9", "..", "é.é.é"]
)
def test_malformed_tokens(hs256: TokenVerifier, token: str) -> None:
    _refused(hs256, token, "TOKEN_INVALID")


def test_a_too_long_token_is_refused_before_decoding(hs256: TokenVerifier) -> None:
    long = _token(SECRET, "HS256", padding="x" * 16_384)
    assert jwt.decode(long, SECRET, algorithms=["HS256"], audience=AUDIENCE)["sub"] == "alice"
    assert "too long" in _refused(hs256, long, "TOKEN_INVALID")
    fits = _token(SECRET, "HS256", padding="x" * 11_000)
    assert len(fits) <= 16 * 1024
    assert hs256.verify(fits)[0] == "alice"


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "ES256"])
def test_wrong_key_signatures(
    tmp_path: Path,
    algorithm: str,
    rsa_a: rsa.RSAPrivateKey,
    rsa_b: rsa.RSAPrivateKey,
    ec_a: ec.EllipticCurvePrivateKey,
    ec_b: ec.EllipticCurvePrivateKey,
) -> None:
    verifier = _verifier(
        jwt_secret_file=_write(tmp_path, "secret", SECRET),
        jwt_public_keys=_write(tmp_path, "keys.pem", _public_pem(rsa_a) + _public_pem(ec_a)),
    )
    right: Any = {"HS256": SECRET, "RS256": rsa_a, "ES256": ec_a}[algorithm]
    wrong: Any = {"HS256": SECRET[::-1], "RS256": rsa_b, "ES256": ec_b}[algorithm]
    assert verifier.verify(_token(right, algorithm))[0] == "alice"
    message = _refused(verifier, _token(wrong, algorithm), "TOKEN_INVALID")
    assert "signature" in message


def test_a_tampered_payload_is_refused(rs256: TokenVerifier, rsa_a: rsa.RSAPrivateKey) -> None:
    header, _, signature = _token(rsa_a).split(".")
    forged = _b64(json.dumps(_claims(sub="root", roles=["admin"])).encode())
    _refused(rs256, f"{header}.{forged}.{signature}", "TOKEN_INVALID")


def test_expired_token_signed_by_the_second_key_says_expired(
    tmp_path: Path, rsa_a: rsa.RSAPrivateKey, rsa_b: rsa.RSAPrivateKey
) -> None:
    """The first key's bad signature must not hide why the second key's token fails."""
    keys = _public_pem(rsa_a) + _public_pem(rsa_b)
    verifier = _verifier(jwt_public_keys=_write(tmp_path, "keys.pem", keys))
    _refused(verifier, _token(rsa_b, exp=int(time.time()) - 3600), "TOKEN_EXPIRED")
    _refused(verifier, _token(rsa_b, aud="elsewhere"), "TOKEN_WRONG_AUDIENCE")


# -- algorithm confusion -----------------------------------------------------------------


def test_hs256_signed_with_the_public_pem_is_refused(
    tmp_path: Path, rsa_a: rsa.RSAPrivateKey
) -> None:
    pem = _public_pem(rsa_a)
    path = _write(tmp_path, "keys.pem", pem)
    forged = _hand_made({"alg": "HS256", "typ": "JWT"}, _claims(roles=["admin"]), _hmac(pem))
    # The forgery is well made: the PEM file's bytes as an HMAC secret verify it.
    assert hmac.compare_digest(
        base64.urlsafe_b64decode(forged.split(".")[2] + "="),
        _hmac(pem)(forged.rsplit(".", 1)[0].encode()),
    )
    only_public = _verifier(jwt_public_keys=path)
    assert "no configured key verifies HS256" in _refused(only_public, forged, "TOKEN_INVALID")
    with_secret = _verifier(jwt_public_keys=path, jwt_secret_file=_write(tmp_path, "s", SECRET))
    _refused(with_secret, forged, "TOKEN_INVALID")


def test_hs256_signed_with_a_jwks_secret_is_refused(
    tmp_path: Path, rsa_a: rsa.RSAPrivateKey
) -> None:
    """A symmetric key in the JWKS is never an HMAC secret of the verifier."""
    oct_secret = b"an-hmac-key-that-sits-in-the-jwks-file!!"
    jwks = {"keys": [_jwk(rsa_a, "r"), {"kty": "oct", "kid": "h", "k": _b64(oct_secret)}]}
    verifier = _verifier(jwt_public_keys=_write(tmp_path, "jwks.json", json.dumps(jwks)))
    _refused(verifier, _token(oct_secret, "HS256", kid="h"), "TOKEN_INVALID")
    _refused(verifier, _token(oct_secret, "HS256"), "TOKEN_INVALID")
    assert verifier.verify(_token(rsa_a, kid="r"))[0] == "alice"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_unsigned_tokens_are_refused(hs256: TokenVerifier, rs256: TokenVerifier, alg: str) -> None:
    token = _hand_made({"alg": alg, "typ": "JWT"}, _claims(roles=["admin"]), None)
    _refused(hs256, token, "TOKEN_INVALID")
    _refused(rs256, token, "TOKEN_INVALID")
    no_alg = _hand_made({"typ": "JWT"}, _claims(), None)
    _refused(hs256, no_alg, "TOKEN_INVALID")


def test_rs256_token_when_only_a_secret_is_configured(
    hs256: TokenVerifier, rsa_a: rsa.RSAPrivateKey
) -> None:
    assert "no configured key verifies RS256" in _refused(hs256, _token(rsa_a), "TOKEN_INVALID")


def test_other_algorithms_are_refused(
    tmp_path: Path, rsa_a: rsa.RSAPrivateKey, ec_a: ec.EllipticCurvePrivateKey
) -> None:
    """Only HS256, RS256 and ES256, even when a configured key would verify the token."""
    verifier = _verifier(
        jwt_secret_file=_write(tmp_path, "secret", SECRET),
        jwt_public_keys=_write(tmp_path, "keys.pem", _public_pem(rsa_a) + _public_pem(ec_a)),
    )
    payload = _claims(roles=["admin"])
    tokens = [
        jwt.encode(payload, rsa_a, algorithm="RS512"),
        jwt.encode(payload, rsa_a, algorithm="PS256"),
        _hand_made({"alg": "HS512"}, payload, _hmac(SECRET, hashlib.sha512)),
        _hand_made({"alg": "HS384"}, payload, _hmac(SECRET, hashlib.sha384)),
        # RS256's signature under ES256's name, and the other way round.
        _hand_made({"alg": "ES256"}, payload, _rs256(rsa_a)),
        _hand_made(
            {"alg": "RS256"}, payload, lambda data: ec_a.sign(data, ec.ECDSA(hashes.SHA256()))
        ),
    ]
    for token in tokens:
        _refused(verifier, token, "TOKEN_INVALID")


def test_a_kid_that_is_not_a_string_is_malformed(
    rs256: TokenVerifier, rsa_a: rsa.RSAPrivateKey
) -> None:
    token = _hand_made({"alg": "RS256", "kid": 7}, _claims(), _rs256(rsa_a))
    assert "malformed" in _refused(rs256, token, "TOKEN_INVALID")
    good = _hand_made({"alg": "RS256"}, _claims(), _rs256(rsa_a))
    assert rs256.verify(good)[0] == "alice"


# -- JWKS and kid ------------------------------------------------------------------------


@pytest.fixture
def jwks(
    tmp_path: Path,
    rsa_a: rsa.RSAPrivateKey,
    rsa_b: rsa.RSAPrivateKey,
    ec_a: ec.EllipticCurvePrivateKey,
) -> TokenVerifier:
    keys = {"keys": [_jwk(rsa_a, "a"), _jwk(rsa_b, "b"), _jwk(ec_a, "e")]}
    return _verifier(jwt_public_keys=_write(tmp_path, "jwks.json", json.dumps(keys)))


def test_kid_picks_the_jwks_key(
    jwks: TokenVerifier,
    rsa_a: rsa.RSAPrivateKey,
    rsa_b: rsa.RSAPrivateKey,
    ec_a: ec.EllipticCurvePrivateKey,
) -> None:
    assert jwks.verify(_token(rsa_a, kid="a", sub="by-a"))[0] == "by-a"
    assert jwks.verify(_token(rsa_b, kid="b", sub="by-b"))[0] == "by-b"
    assert jwks.verify(_token(ec_a, "ES256", kid="e", sub="by-e"))[0] == "by-e"
    # The kid names a key; another key's signature under it fails even though that other
    # key is in the set.
    assert "signature" in _refused(jwks, _token(rsa_b, kid="a"), "TOKEN_INVALID")
    # A kid of another key type selects nothing for this algorithm.
    _refused(jwks, _token(rsa_a, kid="e"), "TOKEN_INVALID")


def test_unknown_kid_is_refused(jwks: TokenVerifier, rsa_a: rsa.RSAPrivateKey) -> None:
    message = _refused(jwks, _token(rsa_a, kid="rotated-away"), "TOKEN_INVALID")
    assert "'rotated-away'" in message


def test_no_kid_tries_every_key_of_the_type(
    jwks: TokenVerifier, rsa_b: rsa.RSAPrivateKey, ec_a: ec.EllipticCurvePrivateKey
) -> None:
    assert jwks.verify(_token(rsa_b, sub="b"))[0] == "b"
    assert jwks.verify(_token(ec_a, "ES256", sub="e"))[0] == "e"


def test_jwks_without_kids(tmp_path: Path, rsa_a: rsa.RSAPrivateKey) -> None:
    keys = {"keys": [_jwk(rsa_a, None)]}
    verifier = _verifier(jwt_public_keys=_write(tmp_path, "jwks.json", json.dumps(keys)))
    assert verifier.verify(_token(rsa_a, kid="anything"))[0] == "alice"
    assert verifier.verify(_token(rsa_a))[0] == "alice"


# -- roles claim -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (["user"], {"user"}),
        (["user", "admin"], {"user", "admin"}),
        ("user admin", {"user", "admin"}),
        ("  admin\tuser  ", {"user", "admin"}),
        ("admin", {"admin"}),
        ([1, None, "user", ["admin"]], {"user"}),
        (7, set()),
        ({"admin": True}, set()),
        ([], set()),
        ("", set()),
        (None, set()),
    ],
)
def test_roles_claim(hs256: TokenVerifier, roles: Any, expected: set[str]) -> None:
    principal, grant = hs256.verify(_token(SECRET, "HS256", roles=roles))
    assert principal == "alice"
    assert grant.roles == frozenset(expected)
    assert grant.allows(PARSE) == bool(expected)
    assert grant.allows(ADMIN_ONLY) == ("admin" in expected)


def test_unknown_roles_are_ignored(hs256: TokenVerifier) -> None:
    principal, grant = hs256.verify(_token(SECRET, "HS256", roles=["wizard", "billing"]))
    assert principal == "alice"
    assert grant.roles == frozenset()
    for method in (PARSE, ADMIN_ONLY, "/qulab.v1.ToolService/Anything"):
        assert not grant.allows(method)
    _, mixed = hs256.verify(_token(SECRET, "HS256", roles=["wizard", "user"]))
    assert mixed.roles == frozenset({"user"})


def test_roles_claim_by_dotted_path(tmp_path: Path) -> None:
    verifier = _verifier(
        jwt_secret_file=_write(tmp_path, "secret", SECRET), jwt_roles_claim="realm_access.roles"
    )

    def grant_of(**claims: Any) -> Grant:
        return verifier.verify(_token(SECRET, "HS256", **{"roles": None, **claims}))[1]

    assert grant_of(realm_access={"roles": ["admin"]}).roles == frozenset({"admin"})
    assert grant_of(realm_access={"roles": "user admin"}).roles == frozenset({"user", "admin"})
    assert grant_of(realm_access={"roles": ["admin"]}).allows(ADMIN_ONLY)
    # The top-level claim is not the configured one.
    assert grant_of(roles=["admin"], realm_access={}).roles == frozenset()
    assert grant_of(realm_access=["admin"]).roles == frozenset()
    assert grant_of(realm_access="admin").roles == frozenset()
    assert grant_of(other=1).roles == frozenset()


def test_roles_of_a_roles_file(tmp_path: Path) -> None:
    roles = {"roles": {"reader": {"methods": ["qulab.v1.MoleculeService/Parse*"]}}}
    verifier = _verifier(
        jwt_secret_file=_write(tmp_path, "secret", SECRET),
        roles_file=_write(tmp_path, "roles.json", json.dumps(roles)),
    )
    grant = verifier.verify(_token(SECRET, "HS256", roles=["reader"]))[1]
    assert grant.allows(PARSE)
    assert not grant.allows("/qulab.v1.MoleculeService/EncodeMolecule")


# -- leeway ------------------------------------------------------------------------------


def test_leeway_on_exp(tmp_path: Path) -> None:
    secret = _write(tmp_path, "secret", SECRET)
    token = _token(SECRET, "HS256", exp=int(time.time()) - 5)
    assert _verifier(jwt_secret_file=secret, jwt_leeway_s=30).verify(token)[0] == "alice"
    _refused(_verifier(jwt_secret_file=secret, jwt_leeway_s=0), token, "TOKEN_EXPIRED")
    long_ago = _token(SECRET, "HS256", exp=int(time.time()) - 60)
    _refused(_verifier(jwt_secret_file=secret, jwt_leeway_s=30), long_ago, "TOKEN_EXPIRED")


def test_leeway_on_nbf(tmp_path: Path) -> None:
    secret = _write(tmp_path, "secret", SECRET)
    token = _token(SECRET, "HS256", nbf=int(time.time()) + 5)
    assert _verifier(jwt_secret_file=secret, jwt_leeway_s=30).verify(token)[0] == "alice"
    _refused(_verifier(jwt_secret_file=secret, jwt_leeway_s=0), token, "TOKEN_NOT_YET_VALID")


# -- cache -------------------------------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token PyJWT really decodes (the real decode still runs)."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return seen


def test_cache_gives_the_same_answer_without_decoding(
    hs256: TokenVerifier, decodes: list[str]
) -> None:
    token = _token(SECRET, "HS256")
    first = hs256.verify(token)
    second = hs256.verify(token)
    assert decodes == [token]
    assert second[0] == first[0] == "alice"
    assert second[1] is first[1]
    other = _token(SECRET, "HS256", sub="bob")
    assert hs256.verify(other)[0] == "bob"
    assert decodes == [token, other]


def test_refusals_are_not_cached(hs256: TokenVerifier, decodes: list[str]) -> None:
    token = _token(SECRET, "HS256", aud="elsewhere")
    _refused(hs256, token, "TOKEN_WRONG_AUDIENCE")
    _refused(hs256, token, "TOKEN_WRONG_AUDIENCE")
    assert decodes == [token, token]


def test_cache_entry_lasts_until_exp_plus_leeway(
    tmp_path: Path, decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = _verifier(jwt_secret_file=_write(tmp_path, "secret", SECRET), jwt_leeway_s=30)
    exp = int(time.time()) + 300
    token = _token(SECRET, "HS256", exp=exp)
    clock = [time.time()]
    monkeypatch.setattr(_tokens, "time", SimpleNamespace(time=lambda: clock[0]))
    verifier.verify(token)
    clock[0] = exp + 29.5
    verifier.verify(token)
    assert len(decodes) == 1
    clock[0] = exp + 30
    verifier.verify(token)  # PyJWT's own clock still says valid: decoded again
    assert len(decodes) == 2


def test_a_reloaded_verifier_does_not_share_the_cache(
    tmp_path: Path, rsa_a: rsa.RSAPrivateKey, rsa_b: rsa.RSAPrivateKey
) -> None:
    keys = tmp_path / "keys.pem"
    keys.write_bytes(_public_pem(rsa_a))
    before = _verifier(jwt_public_keys=str(keys))
    token_a, token_b = _token(rsa_a, sub="a"), _token(rsa_b, sub="b")
    assert before.verify(token_a)[0] == "a"
    keys.write_bytes(_public_pem(rsa_b))  # key a is withdrawn
    after = _verifier(jwt_public_keys=str(keys))
    _refused(after, token_a, "TOKEN_INVALID")
    assert after.verify(token_b)[0] == "b"
    # The old verifier still has its cached answer and its old key, nothing of the new one.
    assert before.verify(token_a)[0] == "a"
    _refused(before, token_b, "TOKEN_INVALID")


# -- loading -----------------------------------------------------------------------------


def test_no_verifier_without_token_settings() -> None:
    assert TokenVerifier.load(Settings(), RoleTable.load(Settings())) is None


def test_secret_is_stripped(tmp_path: Path) -> None:
    verifier = _verifier(jwt_secret_file=_write(tmp_path, "secret", b"\n  " + SECRET + b" \n"))
    assert verifier.verify(_token(SECRET, "HS256"))[0] == "alice"


@pytest.mark.parametrize("content", [b"", b"x" * 31, b"  " + b"y" * 31 + b"\n\n"])
def test_short_secret_is_refused_without_showing_it(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(RolesFileError) as raised:
        _verifier(jwt_secret_file=_write(tmp_path, "secret", content))
    message = str(raised.value)
    assert message.startswith("QULAB_JWT_SECRET_FILE: "), message
    assert "32 bytes" in message
    if content.strip():
        assert content.strip().decode() not in message


def test_missing_secret_file(tmp_path: Path) -> None:
    with pytest.raises(RolesFileError, match=r"^QULAB_JWT_SECRET_FILE: cannot read"):
        _verifier(jwt_secret_file=str(tmp_path / "absent"))


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        (b"", "holds no RSA or EC public key"),
        (b"not a key at all", "holds no RSA or EC public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "does not load"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "does not load"),
        ("{", "is not a JWKS"),
        ('{"keys": []}', "is not a JWKS"),
        ('{"keys": "x"}', "is not a JWKS"),
        ('{"keys": [{"kty": "RSA"}]}', "is not a JWKS"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "holds no RSA or EC public key"),
    ],
)
def test_bad_public_keys_file_is_named(tmp_path: Path, content: bytes | str, fault: str) -> None:
    with pytest.raises(RolesFileError) as raised:
        _verifier(jwt_public_keys=_write(tmp_path, "keys", content))
    message = str(raised.value)
    assert message.startswith("QULAB_JWT_PUBLIC_KEYS: "), message
    assert fault in message


def test_keys_of_other_kinds_are_not_enough(tmp_path: Path, rsa_a: rsa.RSAPrivateKey) -> None:
    pkcs1 = rsa_a.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )
    others = _public_pem(ed25519.Ed25519PrivateKey.generate()) + pkcs1
    with pytest.raises(RolesFileError, match=r"^QULAB_JWT_PUBLIC_KEYS: .* no RSA or EC public"):
        _verifier(jwt_public_keys=_write(tmp_path, "keys.pem", others))


def test_missing_public_keys_file(tmp_path: Path) -> None:
    with pytest.raises(RolesFileError, match=r"^QULAB_JWT_PUBLIC_KEYS: cannot read"):
        _verifier(jwt_public_keys=str(tmp_path / "absent.pem"))


def test_es256_with_a_p384_key_in_the_set(tmp_path: Path, ec_a: ec.EllipticCurvePrivateKey) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    keys = _public_pem(p384) + _public_pem(ec_a)
    verifier = _verifier(jwt_public_keys=_write(tmp_path, "keys.pem", keys))
    assert verifier.verify(_token(ec_a, "ES256"))[0] == "alice"
