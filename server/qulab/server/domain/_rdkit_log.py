"""Per-call capture of RDKit's log messages.

RDKit explains why it refused an input only in its log (a SMILES parse error, a Molfile
line number, a valence problem); the functions themselves just return `None`. By default
that log goes to the process's stderr, where nobody reading a response would see it.

`rdkit_log()` routes RDKit's log through Python's `logging` (`rdBase.LogToPythonLogger`)
and puts a filter on the "rdkit" logger: while a capture is active in the current thread,
every record is kept for the caller and dropped before any handler can print it; outside
a capture, records go wherever the process's logging configuration sends them. A filter
rather than a handler because RDKit attaches its own stderr handler to that logger.
"""

from __future__ import annotations

import logging
import threading

from rdkit import rdBase

__all__ = ["rdkit_log"]

_LOGGER_NAME = "rdkit"
# RDKit prefixes every line with "[HH:MM:SS] ".
_TIMESTAMP_LENGTH = len("[00:00:00] ")


class _CaptureFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        lines: list[str] | None = getattr(self.local, "lines", None)
        if lines is None:
            return True
        message = record.getMessage()
        if message[:1] == "[" and message[9:11] == "] ":
            message = message[_TIMESTAMP_LENGTH:]
        lines.append(message)
        return False


_filter: _CaptureFilter | None = None
_install_lock = threading.Lock()


def _installed() -> _CaptureFilter:
    global _filter
    if _filter is None:
        with _install_lock:
            if _filter is None:
                rdBase.LogToPythonLogger()
                logger = logging.getLogger(_LOGGER_NAME)
                # Records below the logger's level are never created, so they could not be
                # captured: RDKit reports Molfile errors as warnings.
                if logger.getEffectiveLevel() > logging.WARNING:
                    logger.setLevel(logging.WARNING)
                created = _CaptureFilter()
                logger.addFilter(created)
                _filter = created
    return _filter


class rdkit_log:  # lowercase: used like the function it replaced, `with rdkit_log() as log:`
    """Collect the lines RDKit logs in this thread inside the block (timestamps removed)
    instead of printing them. Nested captures each get only their own lines.

    A class rather than a `contextlib.contextmanager` generator: every parse opens two of
    these, and a plain `__enter__`/`__exit__` pair costs a fraction of a generator-based one.
    """

    __slots__ = ("_local", "_outer")

    def __init__(self) -> None:
        self._local = _filter.local if _filter is not None else _installed().local

    def __enter__(self) -> list[str]:
        local = self._local
        self._outer: list[str] | None = getattr(local, "lines", None)
        lines: list[str] = []
        local.lines = lines
        return lines

    def __exit__(self, *exc_info: object) -> None:
        self._local.lines = self._outer
