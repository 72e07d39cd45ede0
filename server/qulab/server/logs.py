"""JSON-lines logging on stdout: one object per record, extra fields kept as keys.

`log.info("started", extra={"port": 50051})` writes
`{"time": "...", "level": "INFO", "logger": "...", "message": "started", "port": 50051}`.

The one line per RPC takes a shorter road, `RpcLog.write`: the same JSON shape without a
LogRecord, because the logging module's per-record work costs more than the rest of the
server's per-call bookkeeping together (measured: ~30 us vs ~10 us a call).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

__all__ = ["JsonFormatter", "RpcLog", "configure", "rpc_log"]

# Attributes every LogRecord has; anything else was passed through `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_RPC_LOGGER = "qulab.rpc"


def _timestamp(epoch_ns: int) -> str:
    seconds, ns = divmod(epoch_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ns // 1000:06d}Z"


def _line(epoch_ns: int, level: str, logger: str, message: str, fields: Mapping[str, Any]) -> str:
    entry = {
        "time": _timestamp(epoch_ns),
        "level": level,
        "logger": logger,
        "message": message,
        **fields,
    }
    return json.dumps(entry, default=str, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return _line(
            int(record.created * 1e9), record.levelname, record.name, record.getMessage(), fields
        )


class RpcLog:
    """Writes the one JSON line per RPC (INFO, logger "qulab.rpc") straight to the stream."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stdout
        self.enabled = True

    def write(self, fields: Mapping[str, Any]) -> None:
        if self.enabled:
            self.stream.write(_line(time.time_ns(), "INFO", _RPC_LOGGER, "rpc", fields) + "\n")
            self.stream.flush()


rpc_log = RpcLog()


def configure(level: str) -> None:
    """Send every record of this process to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    rpc_log.stream = sys.stdout
    rpc_log.enabled = logging.getLogger(_RPC_LOGGER).isEnabledFor(logging.INFO)
