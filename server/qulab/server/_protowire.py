"""Protocol-buffer wire format written by hand, for the two places where building a
message object would cost more than the bytes: the provenance field appended to a
worker's serialized answer, and the OTLP spans of a traced call."""

from __future__ import annotations

__all__ = ["length_delimited", "varint"]

_SMALL = [bytes([i]) for i in range(0x80)]  # a varint below 128 is its own byte


def varint(value: int) -> bytes:
    """A base-128 varint; a negative int64 as its two's complement (ten bytes)."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(number: int, data: bytes) -> bytes:
    """Field `number` holding `data` (wire type 2: bytes, string or a message)."""
    return varint(number << 3 | 2) + varint(len(data)) + data
