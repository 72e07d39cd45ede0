"""Frames between the server and its worker processes.

A frame is an 8-byte big-endian length and that many bytes. Its body is a flat pickled tuple
of ints, strings and `bytes` (the serialized protobuf payloads) — never an object graph, so
the cost on each side is one `loads`/`dumps` of a few fields plus the payload bytes.

    server -> worker   Task(task_id, op, payloads, budgets_s)
                       `budgets_s[i]`: the seconds payload i had left when the task was
                       sent; the worker skips (DEADLINE_EXCEEDED) a payload whose time ran
                       out before its turn
    worker -> server   Ready(pid)  once, after the worker has imported everything
                       ItemDone(task_id, item, ok, body, started_ns, finished_ns, compute_ns,
                                exiting)
                       one per payload, as soon as it is computed; `body` is the serialized
                       response when `ok`, else a serialized google.rpc.Status; `exiting`
                       says the worker leaves after this item (the rest of its task was
                       not started)
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = [
    "FrameProtocol",
    "ItemDone",
    "Ready",
    "Task",
    "decode",
    "encode",
    "frame",
    "recv_frame",
    "send_frame",
]

_HEADER = struct.Struct("!Q")
HEADER_SIZE = _HEADER.size


class Task(NamedTuple):
    task_id: int
    op: str
    payloads: list[bytes]
    budgets_s: list[float]


class Ready(NamedTuple):
    pid: int


class ItemDone(NamedTuple):
    task_id: int
    item: int
    ok: bool
    body: bytes
    started_ns: int
    finished_ns: int
    compute_ns: int
    exiting: bool


def encode(message: Task | Ready | ItemDone) -> bytes:
    return pickle.dumps((type(message).__name__, tuple(message)), protocol=5)


_KINDS: dict[str, Any] = {k.__name__: k for k in (Task, Ready, ItemDone)}


def decode(frame: bytes) -> Task | Ready | ItemDone:
    kind, fields = pickle.loads(frame)
    result: Task | Ready | ItemDone = _KINDS[kind](*fields)
    return result


def frame(body: bytes) -> bytes:
    """Header and body as one buffer: one write, one wake-up of the reader."""
    return _HEADER.pack(len(body)) + body


def body_length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    return int(length)


def send_frame(sock: socket.socket, body: bytes) -> None:
    """Blocking send, for the worker side."""
    sock.sendall(frame(body))


def recv_frame(sock: socket.socket) -> bytes | None:
    """Blocking receive, for the worker side; None when the server closed the socket."""
    head = _recv_exactly(sock, HEADER_SIZE)
    if head is None:
        return None
    body = _recv_exactly(sock, body_length(head))
    if body is None:
        return None
    return body


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return bytes(buf)


class FrameProtocol(asyncio.Protocol):
    """The server's end of a worker socket: frames are cut out of the byte stream and
    handed over decoded as they arrive, inside the event loop's read callback (no task or
    await per frame)."""

    def __init__(
        self, on_message: Callable[[Task | Ready | ItemDone], None], on_closed: Callable[[], None]
    ) -> None:
        self._on_message = on_message
        self._on_closed = on_closed
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= HEADER_SIZE:
            end = start + HEADER_SIZE + _HEADER.unpack_from(buffer, start)[0]
            if len(buffer) < end:
                break
            self._on_message(decode(bytes(buffer[start + HEADER_SIZE : end])))
            start = end
        del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_closed()
