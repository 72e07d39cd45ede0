"""The one place errors become statuses: a bug in a servicer becomes INTERNAL with an
error id that is in the log, never a traceback or its text on the wire. Exercised on a
real grpc.aio server in this process, with a handler that fails on purpose."""

from __future__ import annotations

import logging

import grpc
import pytest

from qulab.server.cache import ResultCache
from qulab.server.config import Settings
from qulab.server.interceptors import Interceptors
from qulab.server.services._rpc import Call, Context, Rpc
from qulab.server.workers.pool import WorkerPool
from qulab.v1 import molecule_pb2
from tests.integration._status import failure_of

SECRET = "database password is hunter2"


async def _broken(
    request: molecule_pb2.ParseMoleculeRequest, context: Context, call: Call
) -> bytes:
    raise RuntimeError(SECRET)


async def test_a_bug_is_internal_with_a_logged_error_id(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(port=0)
    rpc = Rpc(settings, WorkerPool(settings), ResultCache(0), Interceptors.build(settings))
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "qulab.test.Broken",
                {
                    "Call": rpc.unary(
                        "/qulab.test.Broken/Call", _broken, molecule_pb2.ParseMoleculeRequest
                    )
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            method = channel.unary_unary(
                "/qulab.test.Broken/Call",
                request_serializer=molecule_pb2.ParseMoleculeRequest.SerializeToString,
            )
            with (
                caplog.at_level(logging.ERROR, logger="qulab.rpc"),
                pytest.raises(grpc.aio.AioRpcError) as caught,
            ):
                await method(molecule_pb2.ParseMoleculeRequest(smiles="C"), timeout=10)
    finally:
        await server.stop(0)
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INTERNAL
    assert failure.info is not None
    error_id = failure.info.metadata["error_id"]
    wire = failure.message + repr(failure.details) + repr(failure.trailers)
    assert SECRET not in wire
    assert "Traceback" not in wire
    assert error_id in failure.message
    logged = [r for r in caplog.records if getattr(r, "error_id", None) == error_id]
    assert logged
    assert logged[0].exc_info is not None
    assert SECRET in str(logged[0].exc_info[1])
