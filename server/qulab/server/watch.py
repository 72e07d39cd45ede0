"""Noticing that files changed, for the reloads of credentials and TLS certificates."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

__all__ = ["Fingerprint", "fingerprint"]

Fingerprint = tuple[tuple[int, int, int] | None, ...]


def fingerprint(paths: Iterable[str]) -> Fingerprint:
    """(mtime, size, inode) of each file, None for a missing one. The inode matters: a
    Kubernetes secret or config map update swaps a symlink to a new file."""
    prints: list[tuple[int, int, int] | None] = []
    for path in paths:
        stat = None
        with contextlib.suppress(OSError):
            stat = os.stat(path)
        prints.append(None if stat is None else (stat.st_mtime_ns, stat.st_size, stat.st_ino))
    return tuple(prints)
