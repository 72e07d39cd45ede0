"""The ASDF decoder against an independent encoder written here from the spec's tables."""

from __future__ import annotations

import numpy as np
import pytest

from qulab.server.domain._asdf import decode_xyy
from qulab.server.domain._jcamp import JcampLimits, read_jcamp
from qulab.server.errors import InvalidArgument

SQZ_POS, SQZ_NEG = "@ABCDEFGHI", "@abcdefghi"
DIF_POS, DIF_NEG = "%JKLMNOPQR", "%jklmnopqr"
DUP = "STUVWXYZs"


def _letter(value: int, positive: str, negative: str) -> str:
    digits = str(abs(value))
    table = negative if value < 0 else positive
    return table[int(digits[0])] + digits[1:]


def _dup(count: int) -> str:
    digits = str(count)
    return DUP[int(digits[0]) - 1] + digits[1:]


def encode(y: list[int], form: str, per_line: int = 10) -> tuple[str, int]:
    """An (X++(Y..Y)) table of `y` (X = point index) and the number of Y checks written."""
    lines, checks, i = [], 0, 0
    dif = "DIF" in form
    while i < len(y):
        chunk = y[i : i + per_line]
        tokens: list[str] = []
        if form == "AFFN":
            tokens = [str(v) for v in chunk]
        elif form == "PAC":
            tokens = [f"{v:+d}" for v in chunk]
        else:
            prev = 0
            for j, v in enumerate(chunk):
                if not dif or j == 0:
                    tokens.append(_letter(v, SQZ_POS, SQZ_NEG))
                else:
                    tokens.append(_letter(v - int(prev), DIF_POS, DIF_NEG))
                prev = v
            if "DUP" in form:
                runs: list[list[str | int]] = []
                for t in tokens:
                    if runs and runs[-1][0] == t:
                        runs[-1][1] = int(runs[-1][1]) + 1
                    else:
                        runs.append([t, 1])
                tokens = [f"{t}{_dup(int(n)) if int(n) > 1 else ''}" for t, n in runs]
        sep = " " if form == "AFFN" else ""
        lines.append(f"{i} " + sep.join(tokens))
        i += len(chunk)
        if dif and i < len(y):
            # The next line opens with a Y check: it repeats the last value of this one.
            i -= 1
            checks += 1
    return "\n".join(lines) + "\n", checks


def spectrum(seed: int, n: int) -> list[int]:
    rng = np.random.default_rng(seed)
    y = rng.integers(-(10**6), 10**6, n)
    if n > 20:
        start = int(rng.integers(0, n - 10))
        y[start : start + 10] = 0
        y[n // 2 : n // 2 + 5] = y[n // 2]
    return [int(v) for v in y]


FORMS = ["AFFN", "PAC", "SQZ", "SQZ DUP", "SQZ DIF", "SQZ DIF DUP"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("n", [1, 2, 3, 9, 10, 11, 57, 1000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roundtrip(form: str, n: int, seed: int) -> None:
    y = spectrum(seed * 1000 + n, n)
    text, checks = encode(y, form)
    decoded = decode_xyy(text.encode(), 1, 10**7)
    assert decoded.y.tolist() == y
    assert decoded.checked == checks
    assert decoded.failed == []
    # Each line's X is the index of the point it starts with (a Y check's point included).
    xs = [int(line.split()[0]) for line in text.splitlines()]
    assert decoded.line_x.tolist() == xs
    assert decoded.line_index.tolist() == xs


def test_roundtrip_through_read_jcamp_with_runs_of_zeros() -> None:
    y = [0] * 40 + [5, -5, 5] + [7] * 30 + [-123456]
    text, _ = encode(y, "SQZ DIF DUP", per_line=16)
    body = (
        "##TITLE=t\n##JCAMP-DX=4.24\n##XUNITS=1/CM\n##YUNITS=A\n##FIRSTX=0\n"
        f"##LASTX={len(y) - 1}\n##NPOINTS={len(y)}\n##XFACTOR=1\n##YFACTOR=0.5\n"
        f"##XYDATA=(X++(Y..Y))\n{text}##END=\n"
    )
    (block,) = read_jcamp(body.encode(), strict=True)
    (page,) = block.pages
    assert page.y.tolist() == [v * 0.5 for v in y]
    assert page.x.tolist() == list(range(len(y)))
    assert page.encoding == "SQZ DIF DUP"
    assert {c.name for c in block.checks} >= {"Y_CHECKPOINT", "NPOINTS", "X_CHECK"}
    assert all(c.passed for c in block.checks)


def _corrupt_check(text: str) -> tuple[str, int]:
    """Change the last difference on line 1: its last value no longer matches the Y check
    that opens line 2 (and only that one)."""
    lines = text.splitlines()
    last = lines[0][-1]
    if last.isdigit():
        swapped = str((int(last) + 1) % 10)
    else:
        table = DIF_POS if last in DIF_POS else DIF_NEG
        swapped = table[table.index(last) % 9 + 1]
    lines[0] = lines[0][:-1] + swapped
    return "\n".join(lines) + "\n", 2


def test_corrupted_y_check_is_detected() -> None:
    y = spectrum(7, 30)
    text, _ = encode(y, "SQZ DIF", per_line=10)
    bad, line = _corrupt_check(text)
    decoded = decode_xyy(bad.encode(), 1, 10**7)
    assert [f[0] for f in decoded.failed] == [line]
    file = (
        "##TITLE=t\n##JCAMP-DX=5.01\n##FIRSTX=0\n##LASTX=29\n##NPOINTS=30\n"
        f"##XYDATA=(X++(Y..Y))\n{bad}##END=\n"
    )
    with pytest.raises(InvalidArgument) as error:
        read_jcamp(file.encode(), strict=True)
    assert error.value.reason == "CHECK_FAILED"
    assert error.value.violations[0].line == line + 6
    (block,) = read_jcamp(file.encode())
    failed = [c for c in block.checks if not c.passed]
    assert [(c.name, c.line) for c in failed] == [("Y_CHECKPOINT", line + 6)]
    assert any("Y check failed" in w for w in block.warnings)


@pytest.mark.parametrize(
    ("text", "values", "encoding"),
    [
        ("1 1 2 3\n", [1, 2, 3], "AFFN"),
        ("1 +1-2+3\n", [1, -2, 3], "PAC"),
        ("1 1.5 -2.25 .5\n", [1.5, -2.25, 0.5], "AFFN"),
        ("1 A1b2C3\n", [11, -22, 33], "SQZ"),
        ("1 A1J1K2\n", [11, 22, 44], "SQZ DIF"),
        ("1 @T\n", [0, 0], "SQZ DUP"),
        ("1 A%U\n", [1, 1, 1, 1], "SQZ DIF DUP"),
        ("1 1.0E+02 2e-1\n", [100.0, 0.2], "AFFN"),
        ("1 1 ? 3\n", [1, None, 3], "AFFN"),
        ("1 1 2 $$ note J3\n2 3\n", [1, 2, 3], "AFFN"),
    ],
)
def test_hand_made_lines(text: str, values: list[float | None], encoding: str) -> None:
    decoded = decode_xyy(text.encode(), 1, 100)
    got = [None if np.isnan(v) else v for v in decoded.y.tolist()]
    assert got == values
    assert decoded.encoding == encoding


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("text", "reason", "fragment"),
    [
        ("1 A1S999999999999\n", "LIMIT_EXCEEDED", "over the limit"),
        ("1 " + "7" * 1_000_000 + "\n", "INVALID_JCAMP", "longer than"),
        ("1 J1\n", "INVALID_JCAMP", "DIF value cannot start"),
        ("1 S3\n", "INVALID_JCAMP", "DUP count"),
        ("1 2 \x00 3\n", "INVALID_JCAMP", "unexpected character"),
        ("1 1..2\n", "INVALID_JCAMP", "two decimal points"),
        ("1 + 2\n", "INVALID_JCAMP", "without digits"),
    ],
)
def test_hostile_tables(text: str, reason: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        decode_xyy(text.encode(), 5, JcampLimits().max_points)
    assert error.value.reason == reason
    assert fragment in error.value.message
    assert error.value.violations[0].line == 5
