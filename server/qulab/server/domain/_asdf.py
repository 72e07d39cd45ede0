"""ASDF: the ordinate encodings of JCAMP-DX data tables, decoded with numpy.

One `(X++(Y..Y))` table arrives as the bytes between its label and the next `##`
record. Every line holds an abscissa followed by ordinates written as

    AFFN  free-format decimals separated by blanks or commas   ``12 -3 4.5``
    PAC   AFFN where a sign is the separator                   ``+12-3+4``
    SQZ   first digit replaced by a letter, sign folded in      ``@ A-I a-i`` (0, 1..9, -1..-9)
    DIF   the difference to the previous ordinate, as SQZ       ``% J-R j-r``
    DUP   the previous token repeated, count as SQZ             ``S-Z s``  (1..9, total count)

and, in DIF form, the first ordinate of a line repeats the last one of the previous
line (the Y check). The decoder never loops per character: one lookup table classifies
every byte, token boundaries and place values come from cumulative sums, DUP becomes
`np.repeat` and DIF a cumulative sum per run of differences. Anything it cannot read
is an `InvalidArgument` naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from qulab.server.errors import FieldViolation, InvalidArgument

__all__ = ["Decoded", "decode_xyy", "invalid", "too_many_points"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_OTHER, _SEP, _NL, _DIGIT, _DOT, _SIGN, _SQZ, _DIF, _DUP, _MISSING = range(10)
_AFFN, _PAC, _KSQZ, _KDIF, _KDUP, _KMISSING = range(6)
_ENCODING_NAMES = ("AFFN", "PAC", "SQZ", "DIF", "DUP")

# Past 15 significant digits a float64 sum of place values is no longer exact.
_EXACT_DIGITS = 15
_MAX_TOKEN_BYTES = 64
_POW10 = 10.0 ** np.arange(_MAX_TOKEN_BYTES + 1)


def _tables() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int8], npt.NDArray[np.uint8]]:
    cls = np.full(256, _OTHER, np.uint8)
    digit = np.full(256, -1, np.int8)
    kind = np.zeros(256, np.uint8)
    for ch in b" \t\r,;\x0b\x0c\x1a":
        cls[ch] = _SEP
    cls[ord("\n")] = _NL
    for i, ch in enumerate(b"0123456789"):
        cls[ch], digit[ch], kind[ch] = _DIGIT, i, _AFFN
    cls[ord(".")], kind[ord(".")] = _DOT, _AFFN
    for ch in b"+-":
        cls[ch], kind[ch] = _SIGN, _PAC
    cls[ord("?")], kind[ord("?")] = _MISSING, _KMISSING
    groups = (
        (b"@ABCDEFGHI", b"abcdefghi", _SQZ, _KSQZ),
        (b"%JKLMNOPQR", b"jklmnopqr", _DIF, _KDIF),
    )
    for positive, negative, c, k in groups:
        for i, ch in enumerate(positive):
            cls[ch], digit[ch], kind[ch] = c, i, k
        for i, ch in enumerate(negative, start=1):
            cls[ch], digit[ch], kind[ch] = c, i, k
    for i, ch in enumerate(b"STUVWXYZs", start=1):
        cls[ch], digit[ch], kind[ch] = _DUP, i, _KDUP
    return cls, digit, kind


_CLASS, _DIGIT_VALUE, _KIND = _tables()
# The same tables for bytes.translate, which maps a whole buffer faster than numpy's take.
_CLASS_BYTES = _CLASS.tobytes()
_DIGIT_BYTES = _DIGIT_VALUE.view(np.uint8).tobytes()
_SIGN_OF = np.ones(256)
_SIGN_OF[list(b"-abcdefghijklmnopqr")] = -1.0
_LF = ord("\n")
_DOT_BYTE = ord(".")
_COMMENT = re.compile(rb"\$\$[^\n]*")
_ASDF_LETTER = re.compile(rb"[@A-DF-Ia-df-i%J-Rj-rS-Zs]")
_EXPONENT = re.compile(rb"[0-9.][eE][+-]?[0-9]")
_AFFN_TOKEN = re.compile(rb"[^\s,;]+")


def invalid(description: str, line: int, reason: str = "INVALID_JCAMP") -> InvalidArgument:
    """The one error this package raises: `content` is unreadable at `line` (1-based)."""
    return InvalidArgument(
        FieldViolation(field="content", description=description, reason=reason, line=line)
    )


def too_many_points(count: int, limit: int, line: int) -> InvalidArgument:
    return invalid(
        f"a data table expands to {count} points, over the limit of {limit} per block",
        line,
        reason="LIMIT_EXCEEDED",
    )


@dataclass(slots=True)
class Decoded:
    """One decoded `(X++(Y..Y))` table, before any factor is applied."""

    y: FloatArray
    """Ordinates as written, Y-check duplicates removed."""
    line_no: IntArray
    """1-based file line of each data line."""
    line_x: FloatArray
    """The abscissa written at the start of each data line."""
    line_index: IntArray
    """Index in `y` of the ordinate each line's abscissa belongs to."""
    encoding: str
    checked: int = 0
    """How many Y checks (DIF line joins) were verified."""
    failed: list[tuple[int, float, float]] = field(default_factory=list)
    """(line, expected, found) for every failed Y check."""
    missing: int = 0
    """How many '?' ordinates were read as NaN."""


@dataclass(slots=True)
class _Tokens:
    kind: npt.NDArray[np.uint8]
    value: FloatArray
    line: IntArray
    integral: bool


def _tokenize(data: bytes, first_line: int) -> _Tokens:
    """Every token of `data` with its kind, signed value and 0-based line offset."""
    # One-byte searches are memchr; "$$" alone is a far slower two-byte search.
    if b"$" in data and b"$$" in data:
        data = _COMMENT.sub(b"", data)
    exponent = b"e" in data or b"E" in data
    if exponent and not _ASDF_LETTER.search(data) and _EXPONENT.search(data):
        return _tokenize_scientific(data, first_line)
    raw = np.frombuffer(data, np.uint8)
    cls = np.frombuffer(data.translate(_CLASS_BYTES), np.uint8)
    newlines = np.flatnonzero(raw == _LF)
    if (cls == _OTHER).any():
        at = int(np.argmax(cls == _OTHER))
        line = first_line + int(np.searchsorted(newlines, at))
        raise invalid(f"unexpected character {data[at : at + 1]!r} in a data line", line)
    # Byte-wide masks only: every int64 or float64 array here is one entry per token.
    in_token = cls >= _DIGIT
    start = cls >= _SIGN
    joined = np.zeros_like(in_token)
    joined[1:] = in_token[:-1]
    joined[1:] &= cls[:-1] != _MISSING
    np.logical_or(start, in_token & ~joined, out=start)
    starts = np.flatnonzero(start)
    if starts.size == 0:
        empty = np.zeros(0, np.int64)
        return _Tokens(np.zeros(0, np.uint8), np.zeros(0), empty, True)
    continues = joined
    continues[:] = False
    np.logical_and(in_token[1:], ~start[1:], out=continues[:-1])
    ends = np.flatnonzero(in_token & ~continues)
    del joined, continues, start, in_token
    # Tokens per line, then repeated line numbers: a search per line, not per token.
    per_line = np.diff(np.searchsorted(starts, newlines), prepend=0, append=starts.size)
    token_line: IntArray = np.repeat(np.arange(per_line.size, dtype=np.int64), per_line)
    length = ends - starts + 1
    longest = int(length.max())
    if longest > _MAX_TOKEN_BYTES:
        at = int(np.argmax(length > _MAX_TOKEN_BYTES))
        raise invalid(
            f"a number longer than {_MAX_TOKEN_BYTES} characters", first_line + int(token_line[at])
        )
    lead = raw.take(starts)
    kind = _KIND.take(lead)
    # Horner's rule, one step per character position, each over every token still that
    # long: tokens sorted longest first make the live ones a prefix, so the work is one
    # operation per token byte rather than per token and position.
    order = np.argsort(-length.astype(np.int16), kind="stable")
    position = starts.take(order)
    by_length = length.take(order)
    live_counts = np.searchsorted(-by_length, -np.arange(1, longest + 1), side="right")
    digits = np.frombuffer(data.translate(_DIGIT_BYTES), np.int8)
    has_dot = b"." in data
    is_dot = raw == _DOT_BYTE if has_dot else None
    sorted_value = np.zeros(starts.size)
    ndigits = np.zeros(starts.size, np.int16)
    fraction = np.zeros(starts.size, np.int16)
    dots = np.zeros(starts.size, np.int16)
    for k in range(longest):
        live = int(live_counts[k])
        window = position[:live]
        digit = digits.take(window)
        is_digit = digit >= 0
        part = sorted_value[:live]
        sorted_value[:live] = np.where(is_digit, part * 10.0 + digit, part)
        ndigits[:live] += is_digit
        if is_dot is not None:
            dots[:live] += is_dot.take(window)
            fraction[:live] += is_digit & (dots[:live] > 0)
        window += 1
    value = np.empty(starts.size)
    value[order] = sorted_value
    unsorted = np.empty_like(ndigits)
    unsorted[order] = ndigits
    ndigits = unsorted
    if has_dot:
        unsorted = np.empty_like(dots)
        unsorted[order] = dots
        dots = unsorted
        unsorted = np.empty_like(fraction)
        unsorted[order] = fraction
        fraction = unsorted
    empty = (ndigits == 0) & (kind != _KMISSING)
    if empty.any():
        at = int(np.argmax(empty))
        raise invalid("a sign or decimal point without digits", first_line + int(token_line[at]))
    if (dots > 1).any():
        at = int(np.argmax(dots > 1))
        raise invalid("a number with two decimal points", first_line + int(token_line[at]))
    integral = not dots.any()
    if not integral:
        value /= _POW10.take(fraction)
    for t in np.flatnonzero(ndigits > _EXACT_DIGITS):
        if kind[t] not in (_AFFN, _PAC):
            raise invalid("an ASDF value with more than 15 digits", first_line + int(token_line[t]))
        value[t] = float(data[int(starts[t]) : int(ends[t]) + 1].lstrip(b"+-"))
    value *= _SIGN_OF.take(lead)
    if b"?" in data:
        value[kind == _KMISSING] = np.nan
    signed = np.flatnonzero(kind == _PAC)
    if signed.size:
        # Signs glued to the number before them make the table PAC; if every sign
        # follows a blank it is AFFN with explicit signs.
        before = starts.take(signed) - 1
        glued = cls.take(before[before >= 0])
        if not ((glued == _DIGIT) | (glued == _DOT)).any():
            kind[signed] = _AFFN
    return _Tokens(kind, value, token_line, integral)


def _tokenize_scientific(data: bytes, first_line: int) -> _Tokens:
    """AFFN with exponents ("1.5E-3"): rare and short, parsed by Python's float."""
    kinds: list[int] = []
    values: list[float] = []
    lines: list[int] = []
    for offset, text in enumerate(data.split(b"\n")):
        words = _AFFN_TOKEN.findall(text)
        try:
            row = list(map(float, words))
            row_kinds = [_AFFN] * len(words)
        except ValueError:
            row, row_kinds = _affn_or_missing(words, first_line + offset)
        values += row
        kinds += row_kinds
        lines += [offset] * len(words)
    return _Tokens(
        np.array(kinds, np.uint8), np.array(values, np.float64), np.array(lines, np.int64), False
    )


def _affn_or_missing(words: list[bytes], line: int) -> tuple[list[float], list[int]]:
    """Values and kinds of one line of AFFN words where '?' may stand for a value."""
    values: list[float] = []
    kinds: list[int] = []
    for word in words:
        try:
            values.append(float(word))
        except ValueError:
            if word != b"?":
                raise invalid(f"not a number: {word[:40]!r}", line) from None
            values.append(float("nan"))
            kinds.append(_KMISSING)
        else:
            kinds.append(_AFFN)
    return values, kinds


def decode_xyy(data: bytes, first_line: int, max_points: int) -> Decoded:
    """Decode the data lines of one `(X++(Y..Y))` table; `first_line` is the 1-based
    file line of the first byte of `data`."""
    tokens = _tokenize(data, first_line)
    kind, value, line = tokens.kind, tokens.value, tokens.line
    if kind.size == 0:
        empty_i = np.zeros(0, np.int64)
        return Decoded(np.zeros(0), empty_i, np.zeros(0), empty_i, "")
    is_x = np.ones(kind.size, bool)
    is_x[1:] = line[1:] != line[:-1]
    x_kind = kind[is_x]
    bad_x = (x_kind != _AFFN) & (x_kind != _PAC)
    if bad_x.any():
        raise invalid(
            "a data line must start with its abscissa (an AFFN number)",
            first_line + int(line[is_x][np.argmax(bad_x)]),
        )
    line_offsets = line[is_x]
    line_x = value[is_x]
    y_kind, y_value, y_line = kind[~is_x], value[~is_x], line[~is_x]
    present = np.bincount(y_kind, minlength=len(_ENCODING_NAMES))
    encoding = " ".join(n for k, n in enumerate(_ENCODING_NAMES) if present[k])

    is_dup = y_kind == _KDUP
    dup = np.flatnonzero(is_dup) if present[_KDUP] else np.zeros(0, np.int64)
    if dup.size:
        repeats = np.ones(y_kind.size, np.int64)
        orphan = (dup == 0) | is_dup.take(np.maximum(dup - 1, 0))
        orphan[~orphan] = y_line[dup[~orphan] - 1] != y_line[dup[~orphan]]
        if orphan.any():
            at = first_line + int(y_line[dup[np.argmax(orphan)]])
            raise invalid("a DUP count must follow a value on the same line", at)
        counts = y_value[dup]
        if np.any(counts != np.floor(counts)):
            at = first_line + int(y_line[dup[np.argmax(counts != np.floor(counts))]])
            raise invalid("a DUP count must be a whole number", at)
        if float(counts.sum()) > max_points:
            raise too_many_points(int(counts.sum()), max_points, first_line)
        repeats[dup - 1] = counts.astype(np.int64)
        keep = y_kind != _KDUP
        total = int(repeats[keep].sum())
        if total > max_points:
            raise too_many_points(total, max_points, first_line)
        y_kind = np.repeat(y_kind[keep], repeats[keep])
        y_value = np.repeat(y_value[keep], repeats[keep])
        y_line = np.repeat(y_line[keep], repeats[keep])
    elif y_kind.size > max_points:
        raise too_many_points(int(y_kind.size), max_points, first_line)

    first_of_line = np.ones(y_kind.size, bool)
    first_of_line[1:] = y_line[1:] != y_line[:-1]
    is_dif = y_kind == _KDIF
    missing = int(np.count_nonzero(y_kind == _KMISSING))
    checked, failed = 0, []
    keep_point = np.ones(y_kind.size, bool)
    if is_dif.any():
        opening = is_dif & first_of_line
        if opening.any():
            at = first_line + int(y_line[np.argmax(opening)])
            raise invalid("a DIF value cannot start a line: it has nothing to differ from", at)
        y_value = _undifference(y_value, is_dif, tokens.integral)
        # In DIF form the first ordinate of a line repeats the last one of the line before.
        heads = np.flatnonzero(first_of_line)[1:]
        check = heads[is_dif[heads - 1]]
        checked = int(check.size)
        expected, found = y_value[check - 1], y_value[check]
        wrong = np.flatnonzero(
            ~np.isclose(found, expected, rtol=0.0, atol=1e-9 * np.abs(expected) + 1e-9)
        )
        failed = [
            (first_line + int(y_line[check[i]]), float(expected[i]), float(found[i])) for i in wrong
        ]
        keep_point[check] = False

    # Index of the first point kept on or after each line; a line opening with a Y
    # check belongs to the point it repeats, the last one of the line before.
    line_index = np.searchsorted(y_line[keep_point], line_offsets).astype(np.int64)
    opened_by_check = np.zeros(line_offsets.size, bool)
    opened_by_check[np.searchsorted(line_offsets, y_line[~keep_point])] = True
    line_index -= opened_by_check
    return Decoded(
        y=y_value[keep_point],
        line_no=first_line + line_offsets,
        line_x=line_x,
        line_index=line_index,
        encoding=encoding,
        checked=checked,
        failed=failed,
        missing=missing,
    )


def _undifference(value: FloatArray, is_dif: npt.NDArray[np.bool_], integral: bool) -> FloatArray:
    """Resolve DIF tokens: each run of differences continues from the absolute value
    before it. Integral data is summed in int64 so long spectra stay exact."""
    absolute = ~is_dif
    run = np.cumsum(absolute) - 1
    heads = np.flatnonzero(absolute)
    finite = np.isfinite(value).all()
    bound = float(np.abs(value).max()) * value.size if value.size else 0.0
    if integral and finite and bound < 2.0**62:
        ints = value.astype(np.int64)
        total = np.cumsum(ints)
        base = total[heads] - ints[heads]
        result: FloatArray = (total - base[run]).astype(np.float64)
        return result
    total_f = np.cumsum(value)
    base_f = total_f[heads] - value[heads]
    resolved: FloatArray = total_f - base_f[run]
    return resolved
