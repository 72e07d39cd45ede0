"""A worker process skips an item whose remaining time ran out before its turn, and
computes the rest of the task: a real worker (`worker_main` in a process of its own),
driven over its socket with the pool's own frames."""

from __future__ import annotations

import multiprocessing
import socket

from google.rpc import code_pb2, status_pb2

from qulab.server.config import Settings
from qulab.server.workers import _wire
from qulab.server.workers._process import worker_main
from qulab.server.workers.jobs import MOLECULE_PARSE
from qulab.v1 import molecule_pb2


def test_an_item_out_of_time_is_skipped_and_the_rest_computed() -> None:
    ours, theirs = socket.socketpair()
    ours.settimeout(120)
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=worker_main, args=(theirs, Settings()), daemon=True)
    process.start()
    theirs.close()
    try:
        first = _wire.recv_frame(ours)
        assert first is not None
        assert isinstance(_wire.decode(first), _wire.Ready)
        payloads = [
            molecule_pb2.ParseMoleculeRequest(smiles=s).SerializeToString() for s in ("CCO", "CCN")
        ]
        _wire.send_frame(
            ours, _wire.encode(_wire.Task(7, MOLECULE_PARSE, payloads, [-0.001, 30.0]))
        )
        done = []
        for _ in payloads:
            frame = _wire.recv_frame(ours)
            assert frame is not None
            message = _wire.decode(frame)
            assert isinstance(message, _wire.ItemDone)
            done.append(message)
    finally:
        ours.close()
        process.join(30)
    skipped, computed = done
    assert (skipped.task_id, skipped.item, skipped.ok) == (7, 0, False)
    status = status_pb2.Status.FromString(skipped.body)
    assert status.code == code_pb2.DEADLINE_EXCEEDED
    assert "before a worker could start" in status.message
    assert (computed.item, computed.ok) == (1, True)
    answer = molecule_pb2.ParseMoleculeResponse.FromString(computed.body)
    assert answer.molecule.canonical_smiles == "CCN"
    assert process.exitcode == 0
