"""Security benchmark: what the interceptor chain costs a unary call, with all of it on
against all of it off, measured in the same run on the same molecules.

Three `python -m qulab.server`, each with the settings of the molecule benchmark (2
workers, the result cache off, so every call is computed), started side by side and
driven by one load generator in its own process (`python -m bench.security`): ParseMolecule
over the molecule corpus, 64 concurrent callers on one channel per server, closed loop
(`bench._load.closed_loop`), the same figure as the molecule benchmark's unary row.
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

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import secrets
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench._cpu import CpuClock
from bench._load import (
    CALL_TIMEOUT_S,
    CHANNEL_OPTIONS,
    Call,
    Outcome,
    closed_loop,
    run_generator,
    run_job,
    timed_runs,
)
from bench._measure import Run
from bench._report import Row
from bench._server import running_server
from bench.molecules import SERVER_SETTINGS, UNARY_CALLERS
from qulab.v1 import molecule_pb2, molecule_pb2_grpc

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
MIN_ROUNDS = 7
"""Rounds of a real run (more with --repeats); a quick run does 2."""
_WARMUP_CALLS = 512
_PRINCIPAL = "bench"
_ROLE = "bench"
_METHOD = "qulab.v1.MoleculeService/ParseMolecule"
_AUDIENCE = "qulab-bench"
_RATE_PER_S = 1_000_000
"""Never reached: the limiter runs on every call but refuses none."""
_TOKEN_LIFETIME_S = 3600
_LOAD_TIMEOUT_PAD_S = 60.0

_PARSE = f"ParseMolecule unary, {UNARY_CALLERS} callers"
OFF = f"{_PARSE}, security off"
KEY = f"{_PARSE}, API key + roles + rate limit"
JWT = f"{_PARSE}, JWT RS256 + roles + rate limit"
ON = (KEY, JWT)
LOAD_SETTINGS = {
    "unary_callers": UNARY_CALLERS,
    "unary_channels": 1,
    "warmup_calls": _WARMUP_CALLS,
    "order": "rotated each round",
    "event_loop": "uvloop",
}


@dataclass(frozen=True)
class Config:
    smiles: list[str]
    rounds: int
    """Timed runs per row, the servers taking turns."""
    max_seconds: float
    """Bound on one run (a run also ends when every molecule is done)."""


@dataclass(frozen=True)
class _Variant:
    name: str
    settings: dict[str, str]
    """QULAB_* settings on top of SERVER_SETTINGS (file names are in the temporary dir)."""
    metadata: list[tuple[str, str]]
    """What every call sends."""


# -- credentials -------------------------------------------------------------------------


def _variants(folder: Path) -> list[_Variant]:
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
        _Variant(OFF, {"QULAB_AUTH": "none"}, []),
        _Variant(KEY, secured | {"QULAB_API_KEYS_FILE": str(keys)}, [("x-api-key", api_key)]),
        _Variant(
            JWT,
            secured | {"QULAB_JWT_PUBLIC_KEYS": str(public), "QULAB_JWT_AUDIENCE": _AUDIENCE},
            [("authorization", f"Bearer {token}")],
        ),
    ]


def _shown(settings: dict[str, str], folder: Path) -> dict[str, str]:
    """Settings as the JSON records them: the temporary folder's name left out."""
    return {k: v.replace(str(folder), "<tmp>") for k, v in settings.items()}


# -- the run -----------------------------------------------------------------------------


@dataclass
class Result:
    rows: list[Row]
    payload: dict[str, Any]
    """The servers' settings, the per-round ratios, the refusal checks, the goal."""
    goal: dict[str, dict[str, Any]]


def _paired_ratios(on: Sequence[Run], off: Sequence[Run]) -> list[float]:
    """Each round's "on" rate over the "off" rate of the same round."""
    return [a.rate / b.rate for a, b in zip(on, off, strict=True) if b.rate > 0]


def _judge(rows: dict[str, Row], refusals: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Ratios and targets of the "on" rows: met when the ratio of medians reaches GOAL,
    no call failed, and the server refused a call without credentials."""
    off = rows[OFF]
    goal = {}
    for name in ON:
        row = rows[name]
        ratio = row.value / off.value if off.value > 0 else 0.0
        paired = _paired_ratios(row.runs, off.runs)
        errors = sum(run.errors for run in [*row.runs, *off.runs])
        refusal = refusals.get(name, "")
        met = ratio >= GOAL and errors == 0 and refusal == "UNAUTHENTICATED"
        row.ratios = {"off": ratio}
        row.target, row.met = f">= {GOAL:g}x off", met
        goal[name] = {
            "x_off": ratio,
            "x_off_per_round": paired,
            "x_off_per_round_median": statistics.median(paired) if paired else None,
            "errors": errors,
            "anonymous_call": refusal,
            "met": met,
        }
    return goal


def run(config: Config) -> Result:
    """Start the three servers, drive them in turns, and judge the "on" rows."""
    with tempfile.TemporaryDirectory(prefix="qulab-bench-security-") as name:
        folder = Path(name)
        variants = _variants(folder)
        with contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(running_server(SERVER_SETTINGS | v.settings)) for v in variants
            ]
            job = {
                "servers": [
                    {
                        "name": v.name,
                        "address": s.address,
                        "server_pid": s.pid,
                        "metadata": v.metadata,
                        "secured": bool(v.metadata),
                    }
                    for v, s in zip(variants, servers, strict=True)
                ],
                "smiles": config.smiles,
                "rounds": config.rounds,
                "max_seconds": config.max_seconds,
                "warmup": _WARMUP_CALLS,
            }
            bound = (config.rounds + 1) * len(variants) * config.max_seconds
            answer = run_generator("bench.security", job, bound + _LOAD_TIMEOUT_PAD_S)
        shown = {v.name: _shown(SERVER_SETTINGS | v.settings, folder) for v in variants}
    rows = {
        v.name: Row(v.name, "calls/s", [Run(**run) for run in answer["runs"][v.name]])
        for v in variants
    }
    goal = _judge(rows, answer["refusals"])
    payload = {"servers": shown, "refusals": answer["refusals"], "goal": goal}
    return Result(list(rows.values()), payload, goal)


# -- the load generator (`python -m bench.security`, a job as JSON on stdin) -------------


def _call_with(metadata: Sequence[tuple[str, str]]) -> Call:
    """A ParseMolecule call sending `metadata` (none when empty), one unit counted."""
    sent = tuple(metadata) or None

    async def call(stub: Any, request: Any, outcome: Outcome) -> None:
        try:
            await stub.ParseMolecule(request, timeout=CALL_TIMEOUT_S, metadata=sent)
        except grpc.aio.AioRpcError as error:
            outcome.add_error(1, error)
        else:
            outcome.add(1)

    return call


@dataclass
class _Target:
    name: str
    stub: Any
    call: Call
    clock: CpuClock
    secured: bool


async def _refusal(target: _Target, request: Any) -> str:
    """How a secured server answers a call without credentials: the status code's name,
    or "OK" when it answers (which makes its row meaningless)."""
    try:
        await target.stub.ParseMolecule(request, timeout=CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as error:
        return str(error.code().name)
    return "OK"


async def _drive(job: dict[str, Any]) -> dict[str, Any]:
    requests = [molecule_pb2.ParseMoleculeRequest(smiles=s) for s in job["smiles"]]
    channels = [
        grpc.aio.insecure_channel(server["address"], options=CHANNEL_OPTIONS)
        for server in job["servers"]
    ]
    try:
        targets = []
        for server, channel in zip(job["servers"], channels, strict=True):
            await asyncio.wait_for(channel.channel_ready(), CALL_TIMEOUT_S)
            targets.append(
                _Target(
                    server["name"],
                    molecule_pb2_grpc.MoleculeServiceStub(channel),
                    _call_with([(k, v) for k, v in server["metadata"]]),
                    CpuClock(server["server_pid"]),
                    server["secured"],
                )
            )
        refusals = {t.name: await _refusal(t, requests[0]) for t in targets if t.secured}
        warmup = requests[: max(job["warmup"], 1)]
        for target in targets:
            stop = time.perf_counter() + job["max_seconds"]
            await closed_loop([target.stub], warmup, UNARY_CALLERS, target.call, stop)
        one = {"repeats": 1, "max_seconds": job["max_seconds"]}
        found: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
        for round_ in range(job["rounds"]):
            shift = round_ % len(targets)
            for target in targets[shift:] + targets[:shift]:
                one_run = functools.partial(
                    closed_loop, [target.stub], requests, UNARY_CALLERS, target.call
                )
                runs = await timed_runs(one, target.clock, one_run)
                found[target.name] += [dataclasses.asdict(r) for r in runs]
        return {"runs": found, "refusals": refusals}
    finally:
        for channel in channels:
            await channel.close()


if __name__ == "__main__":
    run_job(_drive)
