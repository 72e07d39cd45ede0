"""A real gRPC server on loopback whose MoleculeService answers as a test scripts it: the
status codes to return, in order, and a health status to report. It records every attempt
with its metadata and arrival time, so client tests can count retries, read the headers
the client's interceptors added, and see what a circuit breaker let through."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from qulab.v1 import molecule_pb2, molecule_pb2_grpc


@dataclass(frozen=True)
class Attempt:
    metadata: dict[str, str]
    at: float  # time.monotonic() on arrival


@dataclass(frozen=True)
class Step:
    """One scripted answer: a status code (OK: an answer) and optional trailers."""

    code: grpc.StatusCode = grpc.StatusCode.OK
    trailers: tuple[tuple[str, str], ...] = ()


@dataclass
class Script:
    steps: deque[Step] = field(default_factory=deque)
    then: Step = field(default_factory=Step)  # once the steps run out
    attempts: list[Attempt] = field(default_factory=list)
    health_checks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, context: grpc.ServicerContext) -> Step:
        with self.lock:
            self.attempts.append(Attempt(dict(context.invocation_metadata()), time.monotonic()))  # type: ignore[arg-type]
            return self.steps.popleft() if self.steps else self.then

    def reset(self, *steps: Step, then: Step | None = None) -> None:
        with self.lock:
            self.steps = deque(steps)
            self.then = then or Step()
            self.attempts.clear()
            self.health_checks = 0


class _Molecules(molecule_pb2_grpc.MoleculeServiceServicer):
    def __init__(self, script: Script) -> None:
        self._script = script

    def ParseMolecule(
        self, request: molecule_pb2.ParseMoleculeRequest, context: grpc.ServicerContext
    ) -> molecule_pb2.ParseMoleculeResponse:
        step = self._script.answer(context)
        if step.code is not grpc.StatusCode.OK:
            context.set_trailing_metadata(step.trailers)
            context.abort(step.code, f"scripted {step.code.name}")
        return molecule_pb2.ParseMoleculeResponse(
            id=request.id, molecule=molecule_pb2.Molecule(canonical_smiles=request.smiles)
        )

    def ParseMolecules(
        self,
        request_iterator: Iterator[molecule_pb2.ParseMoleculeRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[molecule_pb2.ParseMoleculeResponse]:
        step = self._script.answer(context)
        for request in request_iterator:
            if request.smiles == "ABORT":
                context.abort(step.code, f"scripted {step.code.name} mid-stream")
            yield molecule_pb2.ParseMoleculeResponse(
                id=request.id, molecule=molecule_pb2.Molecule(canonical_smiles=request.smiles)
            )


class _Health(health.HealthServicer):
    def __init__(self, script: Script) -> None:
        super().__init__()
        self._script = script

    def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        with self._script.lock:
            self._script.health_checks += 1
        return super().Check(request, context)


class ScriptedServer:
    def __init__(self) -> None:
        self.script = Script()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        molecule_pb2_grpc.add_MoleculeServiceServicer_to_server(
            _Molecules(self.script), self._server
        )
        self._health = _Health(self.script)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self._server.start()

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        self._health.set("", status)

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)
