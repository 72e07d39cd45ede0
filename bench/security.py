"""Security benchmark: what the interceptor chain costs a unary call, with all of it on
against all of it off, measured in the same run on the same molecules.

Three `python -m qulab.server`, each with the settings of the molecule benchmark (2
workers, the result cache off, so every call is computed), started side by side and
driven by one load generator in its own process (`python -m bench.security`, built on
`bench._rounds`): ParseMolecule over the molecule corpus, 64 concurrent callers on one
channel per server, closed loop, the same figure as the molecule benchmark's unary row.
- "security off": QULAB_AUTH=none and no rate limit; of the chain only the deadline check
  runs (it is part of every call, not of security). The baseline.
- "API key": an API keys file, a roles file and a per-principal rate limit (1e6 calls/s,
  so it never refuses); every call sends `x-api-key`. The server hashes the key and
  compares it with every stored digest, checks the role's methods, takes a token from the
  principal's bucket, then the deadline.
- "JWT RS256": a PEM public key file and an audience instead of the keys file, the same
  roles file and rate; every call sends `authorization: Bearer <token>`, one token for the
  whole run (signed here with a fresh RSA key). The server verifies a token once and then
  finds it in its cache until it expires, so this row measures the cached path, which is
  what a service sending the same token on every call sees; the RSA check itself is paid
  once per token.
Goal: each "on" row >= 0.85x "security off".

Fair on a noisy 2-core machine: the servers run at the same time (the idle ones cost
nothing) and take turns, one timed run each per round, the order rotated every round
(off, key, jwt; key, jwt, off; ...), so that a slow spell of the machine, or being first
after a switch, hits every row alike. Each server is warmed up before the first round.
A row is the median over rounds (min-max beside it); its ratio is of medians, and the
median of the per-round ratios (each "on" run against the "off" run of its round) is in
the JSON and the goal line. A refused call is an error, and a row with errors misses the
goal whatever its rate (a refusal is cheaper than an answer). Before warming up, the load
generator checks that each "on" server refuses a call without credentials, so that an
"on" row cannot silently measure an open server.

The credential files live in a temporary directory removed at the end.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench._load import CALL_TIMEOUT_S, run_job
from bench._report import Row
from bench._rounds import (
    LOAD_SETTINGS,
    MIN_ROUNDS,
    PARSE,
    Config,
    Result,
    Target,
    Variant,
    compare,
    drive_rounds,
    rows_of,
    serving,
    take_turns,
)
from bench.molecules import SERVER_SETTINGS

__all__ = [
    "GOAL",
    "JWT",
    "KEY",
    "LOAD_SETTINGS",
    "MIN_ROUNDS",
    "OFF",
    "ON",
    "SERVER_SETTINGS",
    "Config",
    "Result",
    "run",
]

GOAL = 0.85
"""The issue's goal: unary QPS with every interceptor on >= this x with them off."""
_PRINCIPAL = "bench"
_ROLE = "bench"
_METHOD = "qulab.v1.MoleculeService/ParseMolecule"
_AUDIENCE = "qulab-bench"
_RATE_PER_S = 1_000_000
"""Never reached: the limiter runs on every call but refuses none."""
_TOKEN_LIFETIME_S = 3600

OFF = f"{PARSE}, security off"
KEY = f"{PARSE}, API key + roles + rate limit"
JWT = f"{PARSE}, JWT RS256 + roles + rate limit"
ON = (KEY, JWT)


# -- credentials -------------------------------------------------------------------------


def _variants(folder: Path) -> list[Variant]:
    """The three servers' settings, their credential files written into `folder`."""
    roles = folder / "roles.json"
    roles.write_text(
        json.dumps(
            {"roles": {_ROLE: {"methods": [_METHOD], "rate_per_s": _RATE_PER_S}}},
        )
    )
    api_key = secrets.token_urlsafe(32)
    keys = folder / "api_keys.json"
    digest = hashlib.sha256(api_key.encode()).hexdigest()
    keys.write_text(
        json.dumps({"keys": [{"principal": _PRINCIPAL, "sha256": digest, "roles": [_ROLE]}]})
    )
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = folder / "jwt_public.pem"
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    now = int(time.time())
    claims = {
        "sub": _PRINCIPAL,
        "aud": _AUDIENCE,
        "iat": now,
        "exp": now + _TOKEN_LIFETIME_S,
        "roles": [_ROLE],
    }
    token = jwt.encode(claims, private, algorithm="RS256")
    secured = {"QULAB_AUTH": "auto", "QULAB_ROLES_FILE": str(roles)}
    return [
        Variant(OFF, {"QULAB_AUTH": "none"}),
        Variant(KEY, secured | {"QULAB_API_KEYS_FILE": str(keys)}, (("x-api-key", api_key),)),
        Variant(
            JWT,
            secured | {"QULAB_JWT_PUBLIC_KEYS": str(public), "QULAB_JWT_AUDIENCE": _AUDIENCE},
            (("authorization", f"Bearer {token}"),),
        ),
    ]


def _shown(settings: dict[str, str], folder: Path) -> dict[str, str]:
    """Settings as the JSON records them: the temporary folder's name left out."""
    return {k: v.replace(str(folder), "<tmp>") for k, v in settings.items()}


# -- the run -----------------------------------------------------------------------------


def _judge(rows: dict[str, Row], refusals: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Ratios and targets of the "on" rows: met when the ratio of medians reaches GOAL,
    no call failed, and the server refused a call without credentials."""
    goal = {}
    for name in ON:
        row = rows[name]
        found = compare(row, rows[OFF])
        refusal = refusals.get(name, "")
        met = found["x_off"] >= GOAL and found["errors"] == 0 and refusal == "UNAUTHENTICATED"
        row.target, row.met = f">= {GOAL:g}x off", met
        goal[name] = found | {"anonymous_call": refusal, "met": met}
    return goal


def run(config: Config) -> Result:
    """Start the three servers, drive them in turns, and judge the "on" rows."""
    with tempfile.TemporaryDirectory(prefix="qulab-bench-security-") as name:
        folder = Path(name)
        variants = _variants(folder)
        with serving(SERVER_SETTINGS, variants) as servers:
            answer = take_turns("bench.security", variants, servers, config)
        shown = {v.name: _shown(SERVER_SETTINGS | v.settings, folder) for v in variants}
    rows = rows_of(answer, variants)
    goal = _judge(rows, answer["refusals"])
    payload = {"servers": shown, "refusals": answer["refusals"], "goal": goal}
    return Result(list(rows.values()), payload, goal)


# -- the load generator (`python -m bench.security`, a job as JSON on stdin) -------------


async def _refusal(target: Target, request: Any) -> str:
    """How a secured server answers a call without credentials: the status code's name,
    or "OK" when it answers (which makes its row meaningless)."""
    try:
        await target.stub.ParseMolecule(request, timeout=CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as error:
        return str(error.code().name)
    return "OK"


async def _refusals(targets: Sequence[Target], request: Any) -> dict[str, Any]:
    """Each secured server's answer to a call without credentials (`_refusal`)."""
    return {"refusals": {t.name: await _refusal(t, request) for t in targets if t.metadata}}


if __name__ == "__main__":
    run_job(functools.partial(drive_rounds, before=_refusals))
