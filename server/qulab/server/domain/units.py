"""Unit conversion on pint, for `UnitService.ConvertUnits` and the spectrum x axis.

One pint registry serves the process, built on first use. A conversion happens in two steps:
the converter for (from unit, to unit, context) is built once, by letting pint convert a few
probe values and keeping the constant(s) that reproduce its answers (a factor; a factor and
an offset for temperatures; `k / x` for wavelength <-> wavenumber/frequency/energy); every
call after that is one numpy operation. Pint converts arrays itself only when no such
shortcut reproduces its probe answers.

Unit text passes a small grammar before pint sees it. Pint's parser evaluates the text as
an arithmetic expression, so "9**9**9" would compute a number with hundreds of millions of
digits; the grammar allows numbers only as exponents (nonzero, at most 99 in magnitude,
never a power of a power) and as the 1 of "1/cm", and bounds length and nesting.

Errors are `InvalidArgument` with one field violation, reason one of:

    UNKNOWN_UNIT         pint does not know a name in the unit text
    INVALID_UNIT         the text is not a unit expression (or is too long, too nested, ...)
    DIMENSION_MISMATCH   the units measure different things (in the context given)
    UNKNOWN_CONTEXT      the context is neither "" nor "spectroscopy"
"""

from __future__ import annotations

import functools
import re
import threading
import tokenize
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pint

from qulab.server.errors import FieldViolation, InvalidArgument
from qulab.tensors import from_tensor, to_tensor
from qulab.v1 import units_pb2

__all__ = [
    "CONTEXTS",
    "MAX_UNIT_LENGTH",
    "canonical_unit",
    "convert",
    "convert_units",
    "parse_jcamp_unit",
]

FloatArray = npt.NDArray[np.float64]

MAX_UNIT_LENGTH = 200
"""Characters in one unit text."""

CONTEXTS = ("", "spectroscopy")
"""The contexts `convert` knows: none, and pint's "spectroscopy" (alias "sp")."""

_MAX_DEPTH = 4
_MAX_EXPONENT = 99.0
_CACHE_SIZE = 512
_TOLERANCE = 1e-12
_FAR = 2.0**20
_PROBES = np.array([0.0, 1.0, _FAR, -40.0, -2.5, 1e-3, 0.37, 2.5, 42.0, 640.0, 7.1e5, 3.3e9])

_NAME_CHARS = "A-Za-z\u00b5\u03bc\u00c5\u212b\u00e5\u00f6\u00b0\u03a9\u03c0\u03b5%"
_SUPERSCRIPTS = "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
_FROM_SUPERSCRIPT = str.maketrans(_SUPERSCRIPTS + "\u207b", "0123456789-")
_SAFE = re.compile(rf"[{_NAME_CHARS}0-9_ .*/^()+\-\u00b7\u207b{_SUPERSCRIPTS}]*")
_TOKEN = re.compile(
    rf"""
    (?P<space>\ +)
    |(?P<number>(?:0(?![0-9])|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+)
    |(?P<name>[{_NAME_CHARS}][{_NAME_CHARS}0-9_]*)
    |(?P<power>\*\*|\^)
    |(?P<mul>[*\u00b7])
    |(?P<div>/)
    |(?P<sign>[+\-])
    |(?P<open>\()
    |(?P<close>\))
    |(?P<super>\u207b?[{_SUPERSCRIPTS}]+)
    """,
    re.VERBOSE,
)

# Pint's parser fails on some malformed text with these instead of a PintError (an
# AssertionError for "m++", a TokenError for an unclosed parenthesis, a KeyError for
# "m**0"). The grammar keeps such text away from pint; this keeps a gap in the grammar
# from becoming INTERNAL.
_PINT_PARSE_ERRORS = (
    pint.errors.PintError,
    ValueError,
    TypeError,
    SyntaxError,
    tokenize.TokenError,
    AssertionError,
    ArithmeticError,
    LookupError,
)

_lock = threading.Lock()
"""Held around every use of the registry: pint switches contexts on the shared registry
while it converts, which another thread must not see."""


@functools.cache
def _registry() -> pint.UnitRegistry[FloatArray]:
    return pint.UnitRegistry()


def convert(values: npt.ArrayLike, from_unit: str, to_unit: str, context: str = "") -> FloatArray:
    """`values` (any shape, as float64) converted from `from_unit` to `to_unit`, as pint
    would, float64 of the same shape.

    `context` "spectroscopy" relates wavelength, wavenumber, frequency and energy
    (nm <-> 1/cm <-> Hz <-> eV <-> J). Offset units (degC, degF) convert with their offsets.
    NaN and infinities are converted like any value (NaN stays NaN; inf in nm is 0 in 1/cm);
    values too large for the target unit become inf.

    Raises `InvalidArgument` on field "from_unit", "to_unit" or "context".
    """
    array = np.asarray(values, dtype=np.float64)
    converter = _converter(from_unit, to_unit, context)
    with np.errstate(all="ignore"):
        # np.asarray: a ufunc gives a 0-d input back as a numpy scalar.
        return np.asarray(converter(array))


def canonical_unit(text: str, *, field: str = "unit") -> str:
    """The unit `text` as pint spells it ("nm" -> "nanometer", "1/cm" -> "1 / centimeter",
    "" -> "dimensionless"), for provenance.

    Raises `InvalidArgument` on `field` (UNKNOWN_UNIT or INVALID_UNIT)."""
    return str(_unit(text, field))


_JCAMP_UNITS = {
    "1/CM": "1/cm",
    "CM-1": "1/cm",
    "CM^-1": "1/cm",
    "CM**-1": "1/cm",
    "CM(-1)": "1/cm",
    "WAVENUMBER": "1/cm",
    "WAVENUMBERS": "1/cm",
    "NANOMETER": "nanometer",
    "NANOMETERS": "nanometer",
    "NM": "nanometer",
    "MICROMETER": "micrometer",
    "MICROMETERS": "micrometer",
    "MICRON": "micrometer",
    "MICRONS": "micrometer",
    "UM": "micrometer",
    "ANGSTROM": "angstrom",
    "ANGSTROMS": "angstrom",
    "HZ": "hertz",
    "HERTZ": "hertz",
    "KHZ": "kilohertz",
    "MHZ": "megahertz",
    "GHZ": "gigahertz",
    "PPM": "ppm",
    "EV": "electron_volt",
    "KEV": "kiloelectron_volt",
    "SECOND": "second",
    "SECONDS": "second",
    "SEC": "second",
    "S": "second",
    "MINUTE": "minute",
    "MINUTES": "minute",
    "MIN": "minute",
    "MILLISECONDS": "millisecond",
    "MS": "millisecond",
    "DEGREE": "degree",
    "DEGREES": "degree",
    "2THETA": "degree",
    "KELVIN": "kelvin",
    "K": "kelvin",
    "CELSIUS": "degree_Celsius",
    "DEGREES C": "degree_Celsius",
    "PERCENT": "percent",
    "%": "percent",
}
"""JCAMP-DX XUNITS/YUNITS spellings (upper case, single spaces) and their pint units. The
quantities JCAMP names rather than measures in units (TRANSMITTANCE, ABSORBANCE, COUNTS,
ARBITRARY UNITS, ...) are not here: they are dimensionless, "" like any unknown spelling."""


def convert_units(request: units_pb2.ConvertUnitsRequest) -> units_pb2.ConvertUnitsResponse:
    """The ConvertUnits answer: `values` or `tensor` converted, the units as pint spells them."""
    response = units_pb2.ConvertUnitsResponse(
        from_unit=canonical_unit(request.from_unit, field="from_unit"),
        to_unit=canonical_unit(request.to_unit, field="to_unit"),
    )
    if request.HasField("tensor"):
        try:
            values = from_tensor(request.tensor)
        except ValueError as exc:
            raise InvalidArgument(FieldViolation(field="tensor", description=str(exc))) from None
        if values.dtype.kind != "f":
            raise InvalidArgument(
                FieldViolation(field="tensor.dtype", description="must be float32 or float64")
            )
        converted = convert(values, request.from_unit, request.to_unit, request.context)
        response.tensor.CopyFrom(to_tensor(converted))
    else:
        converted = convert(
            np.array(request.values, np.float64),
            request.from_unit,
            request.to_unit,
            request.context,
        )
        response.values.extend(converted.tolist())
    return response


def parse_jcamp_unit(text: str) -> str:
    """The pint unit for a JCAMP-DX XUNITS/YUNITS value: "1/CM" -> "1/cm",
    "MICROMETERS" -> "micrometer", "PPM" -> "ppm" (dimensionless). "" for a quantity with
    no unit (TRANSMITTANCE, ABSORBANCE, ARBITRARY UNITS, COUNTS) and for any spelling not
    known, which the caller should then leave unconverted."""
    key = " ".join(text.split()).upper()
    return _JCAMP_UNITS.get(key, "")


def _violation(
    field: str, reason: str, description: str, position: int | None = None
) -> InvalidArgument:
    return InvalidArgument(FieldViolation(field, description, reason, position=position))


@dataclass(slots=True)
class _Grammar:
    """Recursive descent over the tokens of one unit text:

    expr     = term { ["*" | "/"] term }           (juxtaposition multiplies)
    term     = factor [ power exponent | superscripts ]
    factor   = name | "1" | "(" expr ")"
    exponent = [sign] number | "(" numbers ")"     (numbers, * and / only)

    An exponent's value is worked out here and must be nonzero and at most 99 in magnitude.
    """

    text: str
    field: str
    tokens: list[tuple[str, str, int]]
    at: int = 0

    def fail(self, what: str, position: int | None = None) -> InvalidArgument:
        if position is None:
            position = self.tokens[self.at][2] if self.at < len(self.tokens) else len(self.text)
        return _violation(
            self.field,
            "INVALID_UNIT",
            f"{self.text!r} is not a unit expression: {what} at character {position}",
            position,
        )

    def peek(self) -> str:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else "end"

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expr(self, depth: int) -> None:
        self.term(depth)
        while self.peek() not in ("end", "close"):
            if self.peek() in ("mul", "div"):
                self.take()
            self.term(depth)

    def term(self, depth: int) -> None:
        self.factor(depth)
        if self.peek() == "power":
            self.take()
            self.exponent()
        elif self.peek() == "super":
            _, text, position = self.take()
            digits = text.translate(_FROM_SUPERSCRIPT)
            self.check_exponent(float(digits), position)
        if self.peek() in ("power", "super"):
            raise self.fail("a power of a power")

    def factor(self, depth: int) -> None:
        kind, text, position = self.take() if self.peek() != "end" else ("end", "", 0)
        if kind == "name":
            return
        if kind == "number":
            if float(text) != 1.0:
                raise self.fail(f"a numeric factor {text!r} (a unit has none)", position)
            return
        if kind == "open":
            if depth >= _MAX_DEPTH:
                raise self.fail(f"parentheses nested deeper than {_MAX_DEPTH}", position)
            self.expr(depth + 1)
            if self.peek() != "close":
                raise self.fail("an unclosed parenthesis", position)
            self.take()
            return
        self.at -= kind != "end"
        raise self.fail("a unit name expected")

    def exponent(self) -> None:
        position = self.tokens[self.at][2] if self.at < len(self.tokens) else len(self.text)
        value = self.numbers(0) if self.peek() == "open" else self.signed_number()
        self.check_exponent(value, position)

    def check_exponent(self, value: float, position: int) -> None:
        # Pint fails on a zero power of a lone unit ("m**0") with a KeyError.
        if value == 0.0:
            raise self.fail("an exponent of 0", position)
        if not abs(value) <= _MAX_EXPONENT:
            raise self.fail(f"an exponent larger than {_MAX_EXPONENT:g}", position)

    def numbers(self, depth: int) -> float:
        _, _, position = self.take()
        if depth >= _MAX_DEPTH:
            raise self.fail(f"parentheses nested deeper than {_MAX_DEPTH}", position)
        value = self.number_atom(depth)
        while self.peek() in ("mul", "div"):
            kind, _, position = self.take()
            operand = self.number_atom(depth)
            if kind == "mul":
                value *= operand
            elif operand == 0.0:
                raise self.fail("a division by 0", position)
            else:
                value /= operand
        if self.peek() != "close":
            raise self.fail("an exponent may hold only numbers, * and /")
        self.take()
        return value

    def number_atom(self, depth: int) -> float:
        if self.peek() == "open":
            return self.numbers(depth + 1)
        return self.signed_number()

    def signed_number(self) -> float:
        sign = 1.0
        if self.peek() == "sign":
            sign = -1.0 if self.take()[1] == "-" else 1.0
        if self.peek() != "number":
            raise self.fail("a number expected as exponent")
        _, text, position = self.take()
        value = float(text)
        if not value <= _MAX_EXPONENT:
            raise self.fail(f"an exponent larger than {_MAX_EXPONENT:g}", position)
        return sign * value


def _check_syntax(text: str, field: str) -> None:
    if len(text) > MAX_UNIT_LENGTH:
        raise _violation(
            field,
            "INVALID_UNIT",
            f"unit text of {len(text)} characters (at most {MAX_UNIT_LENGTH}): {text[:40]!r}...",
        )
    safe = _SAFE.match(text)
    assert safe is not None  # the pattern matches the empty prefix
    if safe.end() < len(text):
        raise _unexpected(text, field, safe.end())
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise _unexpected(text, field, position)
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group(), position))
        position = match.end()
    if not tokens:
        return
    grammar = _Grammar(text, field, tokens)
    grammar.expr(0)
    if grammar.at < len(tokens):
        raise grammar.fail("an unmatched closing parenthesis")


def _unexpected(text: str, field: str, position: int) -> InvalidArgument:
    return _violation(
        field,
        "INVALID_UNIT",
        f"{text!r} is not a unit expression: {text[position]!r} unexpected at character {position}",
        position,
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _unit(text: str, field: str) -> pint.Unit:
    _check_syntax(text, field)
    with _lock:
        registry = _registry()
        try:
            return registry.Unit(text)
        except pint.errors.UndefinedUnitError as error:
            names = [str(name) for name in error.unit_names]
            where = "" if names == [text] else f" in {text!r}"
            listed = ", ".join(map(repr, names)) or repr(text)
            raise _violation(field, "UNKNOWN_UNIT", f"unknown unit {listed}{where}") from error
        except _PINT_PARSE_ERRORS as error:
            raise _violation(
                field, "INVALID_UNIT", f"{text!r} is not a unit expression: {error}"
            ) from error


_Converter = Callable[[FloatArray], FloatArray]


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _converter(from_text: str, to_text: str, context: str) -> _Converter:
    if context not in CONTEXTS:
        raise _violation(
            "context",
            "UNKNOWN_CONTEXT",
            f"unknown context {context!r}; known: " + ", ".join(map(repr, CONTEXTS)),
        )
    source = _unit(from_text, "from_unit")
    target = _unit(to_text, "to_unit")
    contexts = (context,) if context else ()

    def by_pint(values: FloatArray) -> FloatArray:
        with _lock:
            quantity = _registry().Quantity(values, source)
            return np.asarray(quantity.to(target, *contexts).magnitude, dtype=np.float64)

    try:
        with np.errstate(all="ignore"):
            expected = by_pint(_PROBES)
    except pint.errors.DimensionalityError as error:
        raise _mismatch(from_text, to_text, context, source, target) from error
    except pint.errors.OffsetUnitCalculusError as error:
        raise _violation("from_unit", "INVALID_UNIT", str(error)) from error
    except OverflowError as error:
        raise _violation(
            "to_unit",
            "INVALID_UNIT",
            f"the factor from {from_text!r} to {to_text!r} is beyond a float64",
        ) from error
    return _shortcut(expected) or by_pint


def _shortcut(expected: FloatArray) -> _Converter | None:
    """A numpy function that gives pint's answers on the probes, or None.

    `expected` is pint's conversion of `_PROBES`, whose first values are 0, 1 and 2**20."""
    zero, one, far = (float(y) for y in expected[:3])
    candidates: list[tuple[_Converter, float]] = []
    if np.isfinite(one) and one != 0.0:
        if zero == 0.0:
            candidates.append((functools.partial(np.multiply, one), 0.0))
        candidates.append((functools.partial(np.divide, one), 0.0))
    if np.isfinite(zero) and np.isfinite(far) and far != zero:
        # The slope from two probes far apart: `one - zero` would cancel digits.
        candidates.append((_affine((far - zero) / _FAR, zero), zero))
    with np.errstate(all="ignore"):
        for candidate, offset in candidates:
            got = candidate(_PROBES[1:])
            scale = np.maximum(np.abs(expected[1:]), abs(offset))
            if np.all(np.abs(got - expected[1:]) <= _TOLERANCE * scale):
                return candidate
    return None


def _affine(slope: float, offset: float) -> _Converter:
    def apply(values: FloatArray) -> FloatArray:
        result = values * slope
        result += offset
        return result

    return apply


def _mismatch(
    from_text: str, to_text: str, context: str, source: pint.Unit, target: pint.Unit
) -> InvalidArgument:
    description = (
        f"cannot convert {from_text!r} ({source.dimensionality}) to {to_text!r} "
        f"({target.dimensionality})"
    )
    if context:
        description += f", not even in context {context!r}"
    elif _related_in_spectroscopy(source, target):
        description += '; they are related in context "spectroscopy"'
    return _violation("to_unit", "DIMENSION_MISMATCH", description)


def _related_in_spectroscopy(source: pint.Unit, target: pint.Unit) -> bool:
    with _lock:
        try:
            _registry().Quantity(1.0, source).to(target, "spectroscopy")
        except pint.errors.PintError:
            return False
    return True
