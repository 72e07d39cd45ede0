"""A per-process LRU cache of computed responses, bounded in bytes.

Every op is a pure function of its request bytes, so an answer can be reused for an
identical request (same op, same SHA-256 of the deterministic serialization). Only
successful answers are kept. Per pod and optional: a replica never needs another's cache.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["ResultCache"]


class ResultCache:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, op: str, digest: str) -> bytes | None:
        if not self._max_bytes:
            return None
        body = self._entries.get((op, digest))
        if body is None:
            self.misses += 1
            return None
        self._entries.move_to_end((op, digest))
        self.hits += 1
        return body

    def put(self, op: str, digest: str, body: bytes) -> None:
        if len(body) > self._max_bytes // 8 or (op, digest) in self._entries:
            return  # one huge answer must not flush the whole cache
        self._entries[(op, digest)] = body
        self._bytes += len(body)
        while self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted)
