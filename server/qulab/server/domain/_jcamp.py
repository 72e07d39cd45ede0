"""JCAMP-DX 4.24, 5.0x and 6.0 read from memory: records, block tree and checks.

A file is a sequence of labelled data records (``##LABEL= value``). `##TITLE=` opens a
block and `##END=` closes it; a block whose DATA TYPE is LINK holds child blocks.
Data tables (XYDATA, XYPOINTS, PEAK TABLE, PEAK ASSIGNMENTS, NTUPLES pages) are decoded
by `_jcamp_tables`. Every consistency check performed is reported as a `Check`; a failed
one is an `InvalidArgument` with `strict=True` and a warning otherwise.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from qulab.server.domain._asdf import invalid
from qulab.server.domain._jcamp_tables import (
    MAX_FAILURES_LISTED,
    Assignment,
    Page,
    Peaks,
    TableReader,
    decode_text,
    strip_comments,
)
from qulab.server.errors import InvalidArgument

__all__ = ["Assignment", "Check", "JcampBlock", "JcampLimits", "Page", "Peaks", "read_jcamp"]

# A record starts where "##" is the first non-blank of a line; the search is for "##"
# alone (a literal is found far faster than a line anchor) and the line start is
# checked per hit.
_LDR = re.compile(rb"##([^=\n]*)=?([^\n]*)")
_LONE_CR = re.compile(rb"\r(?!\n)")
_LABEL_JUNK = re.compile(r"[\s\-/_]")
_TABLES = frozenset({"XYDATA", "XYPOINTS", "PEAKTABLE", "PEAKASSIGNMENTS", "DATATABLE"})
_STRICT_CHECKS = frozenset({"Y_CHECKPOINT", "NPOINTS"})
_MAX_WARNINGS = 20


@dataclass(frozen=True, slots=True)
class JcampLimits:
    """Bounds on one `read_jcamp` call; past one, `InvalidArgument` LIMIT_EXCEEDED."""

    max_bytes: int = 16 * 1024 * 1024
    """Size of the whole file."""
    max_points: int = 10_000_000
    """Decoded points in one block, all its pages together (checked before DUP expansion)."""
    max_blocks: int = 1000
    """Blocks in the file, LINK blocks included."""
    max_depth: int = 32
    """Nesting of LINK blocks."""


@dataclass(slots=True)
class Check:
    """One consistency check performed."""

    name: str
    passed: bool
    message: str
    line: int


@dataclass(slots=True)
class JcampBlock:
    index: int
    block_id: str
    parent: int
    children: list[int]
    title: str
    version: str
    data_type: str
    data_class: str
    origin: str
    owner: str
    records: list[tuple[str, str, int]]
    pages: list[Page]
    peaks: Peaks | None
    assignments: list[Assignment]
    checks: list[Check]
    warnings: list[str]
    npoints: int
    first_x: float
    last_x: float


@lru_cache(maxsize=4096)
def normalise_label(raw: bytes) -> str:
    """The spec's label identity: case, blanks, '-', '/' and '_' do not count."""
    return _LABEL_JUNK.sub("", decode_text(raw)).upper()


def _value(first: bytes, body: bytes, decode: Callable[[bytes], str]) -> str:
    """A record's value: comments and blank lines removed, lines joined by newlines."""
    if not body or body.isspace():
        return decode(strip_comments(first)).strip()
    lines = [decode(x).strip() for x in strip_comments(first + b"\n" + body).split(b"\n")]
    return "\n".join(x for x in lines if x)


class _Reader:
    def __init__(self, content: bytes, strict: bool, limits: JcampLimits) -> None:
        self.content = content
        self.strict = strict
        self.limits = limits
        # An ASCII file (most are) is valid UTF-8 throughout, so it skips decode_text's
        # fallback, and the C method saves a Python call per record.
        self.decode: Callable[[bytes], str] = bytes.decode if content.isascii() else decode_text
        self.blocks: list[_Block] = []
        self.stack: list[_Block] = []

    def problem(self, message: str, line: int) -> None:
        if self.strict:
            raise invalid(message, line)
        if self.blocks:
            self.blocks[-1].warn(f"line {line}: {message}")

    def records(self) -> Iterator[tuple[int, int, re.Match[bytes]]]:
        """(line start offset, 1-based line, match) of every labelled data record."""
        # Yielded one at a time and lines counted as we go: holding every match of a
        # file with thousands of records makes them survive into the cyclic GC's oldest
        # generation, whose collections then cost more than the reading.
        content = self.content
        line, counted = 1, 0
        for match in _LDR.finditer(content):
            at = match.start()
            start = content.rfind(b"\n", 0, at) + 1
            if start == at or not content[start:at].strip(b" \t"):
                line += content.count(b"\n", counted, start)
                counted = start
                yield start, line, match

    def read(self) -> list[JcampBlock]:
        content = self.content
        # A record's body runs to the start of the next one, so each is taken one behind.
        pending: tuple[int, re.Match[bytes]] | None = None
        for start, line, match in self.records():
            if pending is None:
                if content[:start].strip():
                    self.problem("text before the first ##TITLE= is ignored", 1)
            else:
                self.take(*pending, start)
            pending = line, match
        if pending is None:
            raise invalid("not JCAMP-DX: no labelled data record (##LABEL=)", 1)
        self.take(*pending, len(content))
        if self.stack:
            for block in reversed(self.stack):
                block.problem(f"block {block.title!r} has no ##END=", block.line)
                block.finish()
            self.stack.clear()
        return [b.result() for b in self.blocks]

    def take(self, line: int, match: re.Match[bytes], end: int) -> None:
        """The record of `match`, its body running to offset `end`."""
        label, first = match.group(1, 2)
        body_start = match.end() + 1
        body = self.content[body_start:end] if body_start < end else b""
        self.record(normalise_label(label), first, body, line)

    def record(self, label: str, first: bytes, body: bytes, line: int) -> None:
        current = self.stack[-1] if self.stack else None
        if label == "TITLE":
            while current is not None and not current.is_link:
                current.problem(f"block {current.title!r} has no ##END=", current.line)
                current.finish()
                self.stack.pop()
                current = self.stack[-1] if self.stack else None
            self.open(_value(first, b"", self.decode), current, line)
            self.stack[-1].add("TITLE", first, body, line)
            return
        if current is None:
            if not self.blocks:
                self.problem("the file does not start with ##TITLE=", line)
                self.open("", None, line)
                current = self.stack[-1]
            else:
                if label != "END" or body.strip() or first.strip():
                    self.problem("text after the last ##END= is ignored", line)
                return
        if label == "END":
            current.add(label, first, b"", line)
            current.finish()
            self.stack.pop()
            if not self.stack and strip_comments(body).strip():
                current.problem("text after ##END= is ignored", line + 1)
            return
        current.add(label, first, body, line)

    def open(self, title: str, parent: _Block | None, line: int) -> None:
        if len(self.blocks) >= self.limits.max_blocks:
            raise invalid(
                f"more than {self.limits.max_blocks} blocks", line, reason="LIMIT_EXCEEDED"
            )
        if len(self.stack) >= self.limits.max_depth:
            raise invalid(
                f"LINK blocks nested deeper than {self.limits.max_depth}",
                line,
                reason="LIMIT_EXCEEDED",
            )
        block = _Block(self, len(self.blocks), parent.index if parent else -1, title, line)
        if parent is not None:
            parent.children.append(block.index)
        self.blocks.append(block)
        self.stack.append(block)


class _Block(TableReader):
    def __init__(self, reader: _Reader, index: int, parent: int, title: str, line: int) -> None:
        super().__init__(reader.limits.max_points)
        self.reader = reader
        self.index = index
        self.parent = parent
        self.title = title
        self.line = line
        self.children: list[int] = []
        self.records: list[tuple[str, str, int]] = []
        self.checks: list[Check] = []
        self.warnings: list[str] = []
        self.failed = Counter[str]()
        self.unlisted: dict[str, tuple[int, int]] = {}
        self.unlisted_warnings = 0

    @property
    def is_link(self) -> bool:
        return self.header.get("DATATYPE", "").upper().startswith("LINK") or (
            "BLOCKS" in self.header
        )

    def check(self, name: str, passed: bool, message: str, line: int) -> None:
        if not passed:
            if self.reader.strict and name in _STRICT_CHECKS:
                raise invalid(message, line, reason="CHECK_FAILED")
            if self.failed[name] >= MAX_FAILURES_LISTED:
                self.more_failed(name, 1, line)
                return
            self.failed[name] += 1
            self.warn(f"line {line}: {message}" if line else message)
        self.checks.append(Check(name, passed, message, line))

    def more_failed(self, name: str, count: int, line: int) -> None:
        if self.reader.strict and name in _STRICT_CHECKS:
            raise invalid(f"{name} failed on {count} more lines", line, reason="CHECK_FAILED")
        before, first = self.unlisted.get(name, (0, line))
        self.unlisted[name] = (before + count, first)

    def problem(self, message: str, line: int) -> None:
        if self.reader.strict:
            raise invalid(message, line)
        self.warn(f"line {line}: {message}")

    def warn(self, message: str) -> None:
        if len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(message)
        else:
            self.unlisted_warnings += 1

    def add(self, label: str, first: bytes, body: bytes, line: int) -> None:
        if label in _TABLES:
            form = _value(first, b"", self.reader.decode)
            self.records.append((label, form, line))
            self.read_table(label, form, body, line)
            return
        value = _value(first, body, self.reader.decode)
        self.records.append((label, value, line))
        if label == "PAGE":
            self.page_header = {}
            self.page_name = value
        elif self.page_name and label != "ENDNTUPLES":
            self.page_header[label] = value
        else:
            self.header[label] = value
        if label in ("ENDNTUPLES", "ENDTUPLES"):
            self.page_header, self.page_name = {}, ""

    def finish(self) -> None:
        if "BLOCKS" in self.header:
            declared = self.number(self.header["BLOCKS"], "BLOCKS", self.line)
            if declared != len(self.children):
                message = (
                    f"##BLOCKS= {self.header['BLOCKS']} but {len(self.children)} blocks follow"
                )
                self.warn(f"line {self.line}: {message}")
        if "?" in (
            self.header.get(k, "") for k in ("FIRSTX", "LASTX", "NPOINTS", "XFACTOR", "YFACTOR")
        ):
            self.warn("'?' header values treated as absent")

    def summarised(self) -> tuple[list[Check], list[str]]:
        """Checks and warnings, each capped kind closed by one "and N more lines" entry."""
        checks, warnings = list(self.checks), list(self.warnings)
        for name, (count, line) in self.unlisted.items():
            message = f"and {count} more lines"
            checks.append(Check(name, False, message, line))
            self.unlisted_warnings += count
        if self.unlisted_warnings:
            warnings.append(f"and {self.unlisted_warnings} more lines")
        return checks, warnings

    def result(self) -> JcampBlock:
        def num(label: str) -> float:
            try:
                return float(self.header.get(label, "").split()[0])
            except (ValueError, IndexError):
                return math.nan

        npoints = num("NPOINTS")
        version = self.header.get("JCAMPDX") or self.header.get("JCAMPCS", "")
        checks, warnings = self.summarised()
        return JcampBlock(
            index=self.index,
            block_id=self.header.get("BLOCKID", ""),
            parent=self.parent,
            children=self.children,
            title=self.title,
            version=version,
            data_type=self.header.get("DATATYPE", ""),
            data_class=self.header.get("DATACLASS", ""),
            origin=self.header.get("ORIGIN", ""),
            owner=self.header.get("OWNER", ""),
            records=self.records,
            pages=self.pages,
            peaks=self.peaks,
            assignments=self.assignments,
            checks=checks,
            warnings=warnings,
            npoints=int(npoints) if npoints == npoints and 0 <= npoints < 2**62 else 0,
            first_x=num("FIRSTX"),
            last_x=num("LASTX"),
        )


def read_jcamp(
    content: bytes | str, *, strict: bool = False, limits: JcampLimits = JcampLimits()
) -> list[JcampBlock]:
    """Every block of a JCAMP-DX file, in file order (a LINK block before its children).

    `strict` turns failed Y checks, NPOINTS mismatches, missing ##END= and ignored text
    into errors. Anything unreadable raises `InvalidArgument` on field "content" with the
    1-based line; a file over `limits` raises it with reason LIMIT_EXCEEDED. Failed checks
    of one kind and warnings are listed up to 20 per block, then summarised in one entry.
    """
    if isinstance(content, str):
        content = content.encode("utf-8")
    if len(content) > limits.max_bytes:
        raise invalid(
            f"{len(content)} bytes, over the limit of {limits.max_bytes}", 1, "LIMIT_EXCEEDED"
        )
    # CR LF is left alone (every value is stripped and CR separates ASDF values), which
    # saves copying the file; a CR on its own ends a line and is made an LF.
    if b"\r" in content and _LONE_CR.search(content):
        content = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    try:
        return _Reader(content, strict, limits).read()
    except InvalidArgument:
        raise
    except (ValueError, OverflowError, IndexError) as error:
        raise invalid(f"unreadable JCAMP-DX: {error}", 0) from error
