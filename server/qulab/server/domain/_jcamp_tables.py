"""JCAMP-DX data tables: XYDATA/XYPOINTS, NTUPLES pages, PEAK TABLE and PEAK ASSIGNMENTS.

`TableReader` is the part of a block that knows its header values and turns the body of
a table record into `Page`, `Peaks` or `Assignment` values; `(X++(Y..Y))` ordinates go
through `_asdf`. What to do with a failed check or an unreadable header value (error or
warning) is the block's business: it implements `check`, `problem` and `warn`.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qulab.server.domain._asdf import decode_xyy, invalid, too_many_points

__all__ = [
    "MAX_FAILURES_LISTED",
    "Assignment",
    "Page",
    "Peaks",
    "TableReader",
    "decode_text",
    "strip_comments",
]

FloatArray = npt.NDArray[np.float64]

MAX_FAILURES_LISTED = 20
"""Failed checks of one kind listed per block (so per page too); the rest are counted."""

_COMMENT = re.compile(rb"\$\$[^\n]*")
_FORM = re.compile(r"\(\s*([A-Z0-9]+)\s*\+\+\s*\(\s*([A-Z0-9]+)\s*\.\.\s*[A-Z0-9]+\s*\)\s*\)?")
_GROUPS = re.compile(r"\(\s*([A-Z0-9]+)\s*\.\.\s*[A-Z0-9]+\s*\)")
_ASSIGNMENT = re.compile(rb"\(([^()<>]*)<([^>]*)>\s*\)")
# Commas and semicolons separate values like blanks do; made blanks, `bytes.split()` finds
# the words several times faster than a regex.
_SEPARATORS_TO_BLANK = bytes.maketrans(b",;", b"  ")
_NOT_LETTER = re.compile(r"[^A-Z]")


def strip_comments(raw: bytes) -> bytes:
    """`raw` without its `$$` comments (each runs to the end of its line)."""
    # One-byte searches are memchr; "$$" alone is a far slower two-byte search.
    return _COMMENT.sub(b"", raw) if b"$" in raw and b"$$" in raw else raw


def decode_text(raw: bytes) -> str:
    """Text of a record: UTF-8, or Latin-1 where it is not valid UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass(slots=True)
class Page:
    """One table of values: a block's XYDATA/XYPOINTS, or one NTUPLES page."""

    name: str
    x: FloatArray
    y: FloatArray
    x_unit: str
    y_unit: str
    x_symbol: str
    y_symbol: str
    form: str
    encoding: str


@dataclass(slots=True)
class Peaks:
    form: str
    values: FloatArray


@dataclass(slots=True)
class Assignment:
    x: float
    y: float
    width: float
    multiplicity: str
    assignment: str


class TableReader(ABC):
    """Header values of one block and the decoding of its data tables."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self.header: dict[str, str] = {}
        self.page_header: dict[str, str] = {}
        self.page_name = ""
        self.pages: list[Page] = []
        self.peaks: Peaks | None = None
        self.assignments: list[Assignment] = []
        self.points = 0

    @abstractmethod
    def check(self, name: str, passed: bool, message: str, line: int) -> None:
        """Record one consistency check performed."""

    @abstractmethod
    def more_failed(self, name: str, count: int, line: int) -> None:
        """`count` further failures of check `name`, from `line` on, that were not listed."""

    @abstractmethod
    def problem(self, message: str, line: int) -> None:
        """Something unreadable but skippable: an error when strict, else a warning."""

    @abstractmethod
    def warn(self, message: str) -> None:
        """A warning that is never an error."""

    def get(self, label: str) -> str:
        return self.page_header.get(label, self.header.get(label, ""))

    def number(self, text: str, label: str, line: int) -> float:
        text = text.strip()
        if not text:
            return math.nan
        try:
            return float(text.split()[0])
        except ValueError:
            self.problem(f"##{label}= {text[:40]!r} is not a number", line)
            return math.nan

    def header_number(self, label: str, line: int) -> float:
        return self.number(self.get(label), label, line)

    def column(self, label: str, index: int) -> str:
        items = [x.strip() for x in self.get(label).split(",")]
        return items[index] if index < len(items) else ""

    def budget(self, line: int) -> int:
        left = self.max_points - self.points
        if left < 0:
            raise too_many_points(self.points, self.max_points, line)
        return left

    def declared_points(self, label: str, index: int | None, line: int) -> int:
        text = self.get("NPOINTS") if index is None else self.column("VARDIM", index)
        if index is not None and "NPOINTS" in self.page_header:
            text = self.page_header["NPOINTS"]
        value = self.number(text, label, line)
        if math.isnan(value):
            return 0
        if value > self.max_points or value < 0 or value != int(value):
            raise invalid(
                f"declared {label}={value:g} is over the limit of {self.max_points}",
                line,
                reason="LIMIT_EXCEEDED",
            )
        return int(value)

    def read_table(self, label: str, form: str, body: bytes, line: int) -> None:
        """Decode one table record; `line` is the 1-based line of its label."""
        if label == "PEAKASSIGNMENTS":
            self.read_assignments(form, body, line)
        elif label == "PEAKTABLE":
            self.read_peaks(form, body, line)
        else:
            self.read_values(label, form, body, line)

    def variables(self, form: str, line: int) -> tuple[list[str], list[int | None]]:
        symbols = [x.strip().upper() for x in self.get("SYMBOL").split(",")]
        match = _FORM.match(form.upper())
        groups = _GROUPS.match(form.upper().replace(" ", ""))
        names = [match.group(1), match.group(2)] if match else []
        if not match and groups:
            names = list(groups.group(1))
        if not names:
            raise invalid(f"unreadable data table form {form!r}", line)
        if not symbols or symbols == [""]:
            return names, [None] * len(names)
        return names, [symbols.index(n) if n in symbols else None for n in names]

    def read_values(self, label: str, form: str, body: bytes, line: int) -> None:
        ntuple = label == "DATATABLE"
        spec = form[: form.rfind(")") + 1] if ntuple and ")" in form else form
        names: list[str] = ["X", "Y"]
        index: list[int | None] = [None, None]
        if ntuple:
            names, index = self.variables(spec, line)
        upper = spec.upper().replace(" ", "")
        groups = _GROUPS.match(upper)
        if "++" in upper:
            self.read_xyy(spec, names, index, body, line)
        elif groups:
            if not ntuple:
                names = list(groups.group(1))
                index = [None] * len(names)
            self.read_groups(spec, names, index, body, line)
        else:
            raise invalid(f"unsupported data table form {form!r}", line)

    def factor(self, index: int | None, label: str, line: int) -> float:
        text = self.column("FACTOR", index) if index is not None else self.get(label)
        value = self.number(text, label, line)
        return 1.0 if math.isnan(value) else value

    def unit(self, index: int | None, label: str) -> str:
        return self.column("UNITS", index) if index is not None else self.get(label)

    def page_title(self, y_symbol: str) -> str:
        if not self.page_name:
            return ""
        variable = self.page_name.split("=")[0].strip().upper()
        symbols = [x.strip().upper() for x in self.get("SYMBOL").split(",")]
        if variable in symbols:
            kind = self.column("VARTYPE", symbols.index(variable)).upper()
            if kind != "PAGE":
                return self.page_name
        return y_symbol

    def failures(self, name: str, listed: list[tuple[int, str]], total: int, more_at: int) -> None:
        """`total` failures of check `name` on one page: `listed` as (line, message), the
        rest, from line `more_at` on, only counted."""
        for at, message in listed:
            self.check(name, False, message, at)
        if total > len(listed):
            self.more_failed(name, total - len(listed), more_at)

    def read_xyy(
        self, form: str, names: list[str], index: list[int | None], body: bytes, line: int
    ) -> None:
        xi, yi = index[0], index[1]
        ntuple = len(index) == 2 and (xi is not None or yi is not None)
        decoded = decode_xyy(body, line + 1, self.budget(line))
        n = decoded.y.size
        self.points += n
        xf = self.factor(xi, "XFACTOR", line)
        yf = self.factor(yi, "YFACTOR", line)
        if ntuple and xi is not None:
            first = self.number(self.column("FIRST", xi), "FIRST", line)
            last = self.number(self.column("LAST", xi), "LAST", line)
            declared = self.declared_points("VAR_DIM", xi, line)
            deltax = math.nan
        else:
            first = self.header_number("FIRSTX", line)
            last = self.header_number("LASTX", line)
            declared = self.declared_points("NPOINTS", None, line)
            deltax = self.header_number("DELTAX", line)
        failed = decoded.failed
        if failed:
            listed = [
                (at, f"Y check failed: line starts with {found:g}, previous line ended {exp:g}")
                for at, exp, found in failed[:MAX_FAILURES_LISTED]
            ]
            more_at = failed[min(MAX_FAILURES_LISTED, len(failed) - 1)][0]
            self.failures("Y_CHECKPOINT", listed, len(failed), more_at)
        elif decoded.checked:
            self.check("Y_CHECKPOINT", True, f"{decoded.checked} DIF Y checks agree", 0)
        if decoded.missing:
            self.warn(f"line {line}: {decoded.missing} '?' ordinates read as NaN")
        line_x = decoded.line_x * xf
        if math.isnan(first) and line_x.size:
            first = float(line_x[0])
        if declared > 1 and not math.isnan(last):
            step = (last - first) / (declared - 1)
        elif not math.isnan(deltax):
            step = deltax
        elif decoded.line_index.size > 1 and decoded.line_index[-1] > 0:
            step = float(line_x[-1] - line_x[0]) / float(decoded.line_index[-1])
        else:
            step = 0.0
        x: FloatArray = first + np.arange(n, dtype=np.float64) * step
        self.point_checks(n, declared, line, "VAR_DIM" if ntuple else "NPOINTS")
        if line_x.size and n:
            tolerance = 0.5 * abs(step) + 1e-9 * max(abs(first), abs(last) if last == last else 0)
            expected_x = first + decoded.line_index * step
            off = np.flatnonzero(np.abs(line_x - expected_x) > tolerance)
            if off.size:
                listed = [
                    (
                        int(decoded.line_no[i]),
                        f"line abscissa {line_x[i]:g} is not {expected_x[i]:g} "
                        f"(point {decoded.line_index[i]})",
                    )
                    for i in off[:MAX_FAILURES_LISTED]
                ]
                more_at = int(decoded.line_no[off[min(MAX_FAILURES_LISTED, off.size - 1)]])
                self.failures("X_CHECK", listed, int(off.size), more_at)
            else:
                self.check("X_CHECK", True, f"{line_x.size} line abscissas agree", 0)
            if not ntuple and not math.isnan(self.header_number("FIRSTX", line)):
                agree = abs(float(line_x[0]) - first) <= tolerance
                self.check(
                    "FIRSTX",
                    agree,
                    f"first line abscissa {line_x[0]:g}, FIRSTX {first:g}",
                    int(decoded.line_no[0]),
                )
            if not math.isnan(last):
                implied = float(line_x[-1]) + (n - 1 - int(decoded.line_index[-1])) * step
                agree = abs(implied - last) <= tolerance
                self.check(
                    "LASTX",
                    agree,
                    f"last abscissa {implied:g}, LAST(X) {last:g}",
                    int(decoded.line_no[-1]),
                )
        if not math.isnan(deltax) and declared > 1 and not math.isnan(last):
            computed = (last - first) / (declared - 1)
            agree = abs(computed - deltax) <= 1e-3 * abs(computed) + 1e-12
            self.check(
                "DELTAX", agree, f"DELTAX {deltax:g}, (LASTX-FIRSTX)/(NPOINTS-1) {computed:g}", line
            )
        self.pages.append(
            Page(
                name=self.page_title(names[1]),
                x=x,
                y=decoded.y * yf,
                x_unit=self.unit(xi, "XUNITS"),
                y_unit=self.unit(yi, "YUNITS"),
                x_symbol=names[0],
                y_symbol=names[1],
                form=form,
                encoding=decoded.encoding,
            )
        )

    def point_checks(self, n: int, declared: int, line: int, label: str) -> None:
        if declared:
            message = f"{n} points decoded, {label} declares {declared}"
            self.check("NPOINTS", n == declared, message, line)

    def numbers(self, body: bytes, width: int, line: int) -> tuple[FloatArray, bool]:
        """The values of a table of `width` columns, and whether any is NaN ('?')."""
        body = strip_comments(body)
        words = body.translate(_SEPARATORS_TO_BLANK).split()
        if len(words) % width:
            raise invalid(f"{len(words)} values do not make groups of {width}", line)
        if len(words) > self.budget(line) * width:
            raise too_many_points(len(words) // width, self.max_points, line)
        try:
            values = np.fromiter(map(float, words), np.float64, len(words))
        except ValueError:
            pass
        else:
            # float() reads NaN only from a word spelling it, so a table without an "n"
            # skips the scan.
            nan = (b"n" in body or b"N" in body) and bool(np.isnan(values).any())
            return values.reshape(-1, width), nan
        values = np.empty(len(words))
        for i, word in enumerate(words):
            try:
                values[i] = float(word)
            except ValueError:
                if word != b"?" and not word.isalpha():
                    offset = body[: body.find(word)].count(b"\n")
                    raise invalid(f"not a number: {word[:40]!r}", line + 1 + offset) from None
                values[i] = math.nan
        return values.reshape(-1, width), True

    def read_groups(
        self, form: str, names: list[str], index: list[int | None], body: bytes, line: int
    ) -> None:
        table, nan = self.numbers(body, len(names), line)
        self.points += table.shape[0]
        labels = ["XFACTOR", "YFACTOR"] + [f"{n}FACTOR" for n in names[2:]]
        factors = [self.factor(index[i], labels[i], line) for i in range(len(names))]
        xi = index[0]
        if xi is None or "NPOINTS" in self.page_header:
            declared = self.declared_points("NPOINTS", None, line)
        else:
            declared = self.declared_points("VAR_DIM", xi, line)
        self.point_checks(table.shape[0], declared, line, "NPOINTS")
        if nan:
            self.warn(f"line {line}: '?' values read as NaN")
        for j in range(1, len(names)):
            self.pages.append(
                Page(
                    name=self.page_title(names[j]),
                    x=table[:, 0] * factors[0],
                    y=table[:, j] * factors[j],
                    x_unit=self.unit(index[0], "XUNITS"),
                    y_unit=self.unit(index[j], "YUNITS"),
                    x_symbol=names[0],
                    y_symbol=names[j],
                    form=form,
                    encoding="AFFN",
                )
            )

    def read_peaks(self, form: str, body: bytes, line: int) -> None:
        match = _GROUPS.match(form.upper().replace(" ", ""))
        if not match or match.group(1) not in ("XY", "XYW", "XYM"):
            raise invalid(f"unsupported peak table form {form!r}", line)
        table, _ = self.numbers(body, len(match.group(1)), line)
        self.points += table.shape[0]
        table[:, 0] *= self.factor(None, "XFACTOR", line)
        table[:, 1] *= self.factor(None, "YFACTOR", line)
        declared = self.declared_points("NPOINTS", None, line)
        self.point_checks(table.shape[0], declared, line, "NPOINTS")
        self.peaks = Peaks(form=form, values=table)

    def read_assignments(self, form: str, body: bytes, line: int) -> None:
        fields = _NOT_LETTER.sub("", form.upper())
        if not fields.endswith("A") or not fields.startswith("X"):
            raise invalid(f"unsupported peak assignments form {form!r}", line)
        body = strip_comments(body).replace(b"\r\n", b"\n")
        for match in _ASSIGNMENT.finditer(body):
            values = [x.strip() for x in decode_text(match.group(1)).split(",")]
            found = dict(zip(fields[:-1], values, strict=False))
            self.assignments.append(
                Assignment(
                    x=self.number(found.get("X", ""), "PEAKASSIGNMENTS", line),
                    y=self.number(found.get("Y", ""), "PEAKASSIGNMENTS", line),
                    width=self.number(found.get("W", ""), "PEAKASSIGNMENTS", line),
                    multiplicity=found.get("M", ""),
                    assignment=decode_text(match.group(2)).strip(),
                )
            )
        if not self.assignments and body.strip():
            raise invalid("no (x, y, ..., <assignment>) entry in PEAK ASSIGNMENTS", line + 1)
        declared = self.declared_points("NPOINTS", None, line)
        self.point_checks(len(self.assignments), declared, line, "NPOINTS")
