"""The main loop of one worker process.

Started by the pool through a `forkserver` (never `fork` from the gRPC process), it caps
its own address space, imports the domain code once, says Ready, then computes the
payloads of each Task one by one and answers each as soon as it is done. It never imports
grpc. Errors become serialized `google.rpc.Status` bodies; a bug becomes INTERNAL with an
error id whose traceback is logged here, not sent.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import time
from typing import TYPE_CHECKING

from qulab.server import logs
from qulab.server.config import Settings
from qulab.server.errors import DeadlineExceeded, Internal, QulabError, ResourceExhausted
from qulab.server.workers import _wire

if TYPE_CHECKING:
    from qulab.server.workers._ops import Op

__all__ = ["worker_main"]

_log = logging.getLogger("qulab.worker")
_EXPIRED = (
    DeadlineExceeded("the deadline passed before a worker could start on the request")
    .to_status()
    .SerializeToString()
)


def _cap_memory(megabytes: int) -> None:
    if megabytes > 0:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker_main(sock: socket.socket, settings: Settings) -> None:
    # The server process handles SIGINT/SIGTERM and stops workers by closing their socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logs.configure(settings.log_level)
    _cap_memory(settings.worker_memory_mb)
    # Imported here, not at the top: the server process imports this module to name the
    # target of its workers, and must never load RDKit itself (the forkserver preloads it).
    from qulab.server.workers._ops import build_ops

    ops = build_ops(settings)
    _wire.send_frame(sock, _wire.encode(_wire.Ready(os.getpid())))
    while (frame := _wire.recv_frame(sock)) is not None:
        received = time.monotonic()
        task = _wire.decode(frame)
        assert isinstance(task, _wire.Task)
        op = ops[task.op]
        for index, payload in enumerate(task.payloads):
            started_ns = time.time_ns()
            t0 = time.perf_counter_ns()
            if time.monotonic() - received >= task.budgets_s[index]:
                ok, body, recycle = False, _EXPIRED, False  # its caller has stopped waiting
            else:
                ok, body, recycle = _run(op, task.op, payload)
            compute_ns = time.perf_counter_ns() - t0
            # After a MemoryError the C++ heap may be inconsistent: leave, and let the pool
            # start a fresh worker (it queues the rest of the task again).
            done = _wire.ItemDone(
                task.task_id, index, ok, body, started_ns, time.time_ns(), compute_ns, recycle
            )
            _wire.send_frame(sock, _wire.encode(done))
            if recycle:
                return


def _run(op: Op, name: str, payload: bytes) -> tuple[bool, bytes, bool]:
    try:
        return True, op(payload), False
    except QulabError as exc:
        return False, exc.to_status().SerializeToString(), False
    except MemoryError:
        error = ResourceExhausted(
            "the input needs more memory than a worker may use",
            retry_after_ms=-1,
            reason="WORKER_MEMORY_LIMIT",
        )
        return False, error.to_status().SerializeToString(), True
    except Exception:
        internal = Internal(f"internal error in {name}")
        _log.exception("worker op failed", extra={"error_id": internal.error_id, "op": name})
        return False, internal.to_status().SerializeToString(), False
