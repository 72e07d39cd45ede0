"""Unit conversion against pint itself: a registry of the test's own converts every pair the
service's cached shortcuts convert, and the answers must agree."""

from __future__ import annotations

import random

import numpy as np
import numpy.typing as npt
import pint
import pytest

from qulab.server.domain import units
from qulab.server.domain.units import canonical_unit, convert, parse_jcamp_unit
from qulab.server.errors import InvalidArgument

VALUES = np.array([-1e3, -40.0, -1.5, 1e-9, 0.37, 1.0, 42.0, 500.0, 6.02e23])


@pytest.fixture(scope="module")
def ureg() -> pint.UnitRegistry[npt.NDArray[np.float64]]:
    return pint.UnitRegistry()


def by_pint(
    ureg: pint.UnitRegistry[npt.NDArray[np.float64]],
    values: npt.NDArray[np.float64],
    from_unit: str,
    to_unit: str,
    context: str = "",
) -> npt.NDArray[np.float64]:
    contexts = (context,) if context else ()
    with np.errstate(all="ignore"):
        converted = ureg.Quantity(values.copy(), from_unit).to(to_unit, *contexts)
    return np.asarray(converted.magnitude, dtype=np.float64)


def assert_same(ours: npt.NDArray[np.float64], theirs: npt.NDArray[np.float64]) -> None:
    assert ours.dtype == np.float64
    assert ours.shape == theirs.shape
    finite = np.isfinite(theirs)
    # An offset (273.15 K) leaves digits of its own size: 1e-12 of the largest value.
    atol = 1e-12 * float(np.max(np.abs(theirs[finite]), initial=0.0))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=atol)


def error_of(from_unit: str, to_unit: str, context: str = "") -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        convert(np.array([1.0]), from_unit, to_unit, context)
    (violation,) = caught.value.violations
    assert caught.value.reason == violation.reason
    return caught.value


PAIRS = [
    ("m", "km"),
    ("nm", "angstrom"),
    ("µm", "nm"),
    ("μm", "Å"),
    ("bohr", "angstrom"),
    ("inch", "cm"),
    ("eV", "J"),
    ("hartree", "eV"),
    ("Ry", "meV"),
    ("kcal/mol", "kJ/mol"),
    ("kJ/mol", "J/mol"),
    ("Hz", "THz"),
    ("1/s", "MHz"),
    ("degC", "K"),
    ("K", "degC"),
    ("degC", "degF"),
    ("degF", "degC"),
    ("degR", "K"),
    ("°C", "kelvin"),
    ("delta_degC", "delta_degF"),
    ("atm", "Pa"),
    ("bar", "psi"),
    ("torr", "kPa"),
    ("mmHg", "Pa"),
    ("ppm", "percent"),
    ("percent", ""),
    ("", "ppm"),
    ("permille", "ppm"),
    ("ppm", "dimensionless"),
    ("m/s", "km/h"),
    ("kg m / s^2", "N"),
    ("cm^-1", "1/m"),
    ("cm⁻¹", "1/m"),
    ("m**(1/2)", "cm**0.5"),
]

SPECTROSCOPY = [
    ("nm", "1/cm"),
    ("nm", "eV"),
    ("eV", "nm"),
    ("1/cm", "eV"),
    ("1/cm", "nm"),
    ("Hz", "nm"),
    ("eV", "Hz"),
    ("J", "1/cm"),
    ("µm", "THz"),
    ("nm", "micrometer"),
]


@pytest.mark.parametrize(("from_unit", "to_unit"), PAIRS)
def test_agrees_with_pint(
    ureg: pint.UnitRegistry[npt.NDArray[np.float64]], from_unit: str, to_unit: str
) -> None:
    assert_same(convert(VALUES, from_unit, to_unit), by_pint(ureg, VALUES, from_unit, to_unit))


@pytest.mark.parametrize(("from_unit", "to_unit"), SPECTROSCOPY)
def test_agrees_with_pint_in_spectroscopy(
    ureg: pint.UnitRegistry[npt.NDArray[np.float64]], from_unit: str, to_unit: str
) -> None:
    values = np.abs(VALUES)
    assert_same(
        convert(values, from_unit, to_unit, "spectroscopy"),
        by_pint(ureg, values, from_unit, to_unit, "spectroscopy"),
    )


@pytest.mark.parametrize(("from_unit", "to_unit"), [*PAIRS[:6], *SPECTROSCOPY])
def test_context_spectroscopy_leaves_plain_conversions_alone(
    ureg: pint.UnitRegistry[npt.NDArray[np.float64]], from_unit: str, to_unit: str
) -> None:
    values = np.abs(VALUES)
    assert_same(
        convert(values, from_unit, to_unit, "spectroscopy"),
        by_pint(ureg, values, from_unit, to_unit, "spectroscopy"),
    )


def test_temperatures_keep_their_offsets() -> None:
    np.testing.assert_allclose(
        convert(np.array([-273.15, 0.0, 100.0]), "degC", "K"), [0.0, 273.15, 373.15], atol=1e-12
    )
    np.testing.assert_allclose(convert(np.array([-40.0, 212.0]), "degF", "degC"), [-40.0, 100.0])


def test_500_nm_is_20000_wavenumbers() -> None:
    (wavenumber,) = convert(np.array([500.0]), "nm", "1/cm", "spectroscopy")
    assert wavenumber == pytest.approx(20_000.0, rel=1e-12)
    (energy,) = convert(np.array([500.0]), "nm", "eV", "spectroscopy")
    assert energy == pytest.approx(1239.84198433 / 500.0, rel=1e-9)


def test_spectroscopy_round_trip() -> None:
    wavelengths = np.geomspace(100.0, 100_000.0, 1001)
    wavenumbers = convert(wavelengths, "nm", "1/cm", "spectroscopy")
    energies = convert(wavenumbers, "1/cm", "eV", "spectroscopy")
    frequencies = convert(energies, "eV", "Hz", "spectroscopy")
    back = convert(frequencies, "Hz", "nm", "spectroscopy")
    np.testing.assert_allclose(back, wavelengths, rtol=1e-12, atol=0.0)
    assert not np.allclose(wavenumbers, wavelengths)


@pytest.mark.parametrize(
    ("from_unit", "to_unit", "context"),
    [
        ("m", "mm", ""),
        ("degC", "degF", ""),
        ("nm", "1/cm", "spectroscopy"),
        ("eV", "Hz", "spectroscopy"),
    ],
)
def test_large_arrays_agree_with_pint(
    ureg: pint.UnitRegistry[npt.NDArray[np.float64]], from_unit: str, to_unit: str, context: str
) -> None:
    values = np.random.default_rng(7).uniform(1.0, 5000.0, size=100_000)
    original = values.copy()
    ours = convert(values, from_unit, to_unit, context)
    assert_same(ours, by_pint(ureg, values, from_unit, to_unit, context))
    np.testing.assert_array_equal(values, original)


def test_common_conversions_do_not_go_through_pint() -> None:
    for from_unit, to_unit, context in [
        ("m", "mm", ""),
        ("degC", "K", ""),
        ("nm", "1/cm", "spectroscopy"),
        ("eV", "Hz", "spectroscopy"),
    ]:
        converter = units._converter(from_unit, to_unit, context)
        assert getattr(converter, "__name__", "") != "by_pint", (from_unit, to_unit)


def test_shortcut_refused_when_it_does_not_reproduce_pint() -> None:
    probes = units._PROBES
    with np.errstate(all="ignore"):
        assert units._shortcut(probes * 3.0) is not None
        assert units._shortcut(3.0 / probes) is not None
        assert units._shortcut(probes * 1.8 + 32.0) is not None
        assert units._shortcut(probes**2) is None
        assert units._shortcut(np.sqrt(np.abs(probes))) is None
        assert units._shortcut(np.where(probes > 1e6, probes * (1 + 1e-9), probes)) is None


def test_fallback_to_pint_when_no_shortcut(
    ureg: pint.UnitRegistry[npt.NDArray[np.float64]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(units, "_shortcut", lambda expected: None)
    units._converter.cache_clear()
    try:
        converter = units._converter("nm", "eV", "spectroscopy")
        assert converter.__name__ == "by_pint"
        values = np.abs(VALUES)
        assert_same(
            convert(values, "nm", "eV", "spectroscopy"),
            by_pint(ureg, values, "nm", "eV", "spectroscopy"),
        )
    finally:
        units._converter.cache_clear()


def test_shapes_and_dtypes() -> None:
    grid = np.arange(12, dtype=np.float32).reshape(3, 4)
    converted = convert(grid, "m", "cm")
    assert converted.shape == (3, 4)
    assert converted.dtype == np.float64
    np.testing.assert_allclose(converted, grid.astype(np.float64) * 100.0)
    scalar = convert(np.float64(2.0), "km", "m")
    assert isinstance(scalar, np.ndarray)
    assert scalar.shape == ()
    assert float(scalar) == 2000.0
    assert convert(np.array([]), "nm", "1/cm", "spectroscopy").shape == (0,)


@pytest.mark.parametrize(
    ("from_unit", "to_unit", "context"),
    [
        ("m", "km", ""),
        ("degC", "K", ""),
        ("nm", "1/cm", "spectroscopy"),
        ("eV", "Hz", "spectroscopy"),
    ],
)
def test_non_finite_values_pass_through(
    ureg: pint.UnitRegistry[npt.NDArray[np.float64]], from_unit: str, to_unit: str, context: str
) -> None:
    values = np.array([np.nan, np.inf, -np.inf, 0.0, 1.0])
    ours = convert(values, from_unit, to_unit, context)
    theirs = by_pint(ureg, values, from_unit, to_unit, context)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    assert np.isnan(ours[0])
    np.testing.assert_array_equal(ours[1:], theirs[1:])


def test_overflow_becomes_inf() -> None:
    (converted,) = convert(np.array([1e300]), "km", "nm")
    assert converted == np.inf


@pytest.mark.parametrize(
    ("from_unit", "to_unit", "field"),
    [
        ("furlongz", "m", "from_unit"),
        ("m", "lightyearz", "to_unit"),
        ("NM", "m", "from_unit"),
        ("m*blorp/s", "m", "from_unit"),
    ],
)
def test_unknown_unit(from_unit: str, to_unit: str, field: str) -> None:
    error = error_of(from_unit, to_unit)
    (violation,) = error.violations
    assert (violation.field, violation.reason) == (field, "UNKNOWN_UNIT")
    unknown = from_unit if field == "from_unit" else to_unit
    assert (unknown.split("*")[1] if "*" in unknown else unknown) in violation.description


def test_dimension_mismatch() -> None:
    (violation,) = error_of("m", "s").violations
    assert (violation.field, violation.reason) == ("to_unit", "DIMENSION_MISMATCH")
    assert "'m'" in violation.description
    assert "'s'" in violation.description
    assert "[length]" in violation.description
    assert "[time]" in violation.description
    assert "spectroscopy" not in violation.description


@pytest.mark.parametrize(("from_unit", "to_unit"), [("nm", "1/cm"), ("eV", "nm"), ("Hz", "J")])
def test_mismatch_suggests_spectroscopy_when_it_would_work(from_unit: str, to_unit: str) -> None:
    (violation,) = error_of(from_unit, to_unit).violations
    assert (violation.field, violation.reason) == ("to_unit", "DIMENSION_MISMATCH")
    assert 'context "spectroscopy"' in violation.description
    assert convert(np.array([1.0]), from_unit, to_unit, "spectroscopy").shape == (1,)


@pytest.mark.parametrize(("from_unit", "to_unit"), [("nm", "K"), ("kJ/mol", "eV"), ("eV", "s")])
def test_mismatch_even_in_spectroscopy(from_unit: str, to_unit: str) -> None:
    (violation,) = error_of(from_unit, to_unit, "spectroscopy").violations
    assert (violation.field, violation.reason) == ("to_unit", "DIMENSION_MISMATCH")
    assert "not even in context 'spectroscopy'" in violation.description
    (plain,) = error_of(from_unit, to_unit).violations
    assert "related in" not in plain.description


@pytest.mark.parametrize("context", ["sp", "Spectroscopy", "chemistry", " "])
def test_unknown_context(context: str) -> None:
    (violation,) = error_of("nm", "1/cm", context).violations
    assert (violation.field, violation.reason) == ("context", "UNKNOWN_CONTEXT")
    assert repr(context) in violation.description


HOSTILE = [
    "9**9**9*m",
    "m**9**9**9",
    "m**999999999",
    "m**1e400",
    "m^99^99",
    "m²**2",
    "m⁻¹²³⁴⁵",
    "(m**(9**9**9))",
    "m**((((((1))))))",
    "2**99*m",
    "1e999999 m",
    "9" * 199 + "m",
    "(" * 60 + "m" + ")" * 60,
    "(" * 1000 + "m" + ")" * 1000,
    "m" * 201,
    "((((((9*m)**99)**99)**99)**99)**99)",
    "__import__('os').system('true')",
    "m.__class__",
    "m; m",
    "m\nm",
    "m,m",
    "m++",
    "m)",
    "(m",
    "()",
    "m**",
    "*m",
    "m**(1/0)",
    "1/0",
    "m**-",
    "m**0",
    "m⁰",
    "m**(0/2)",
    "m**(1/(2/0))",
    "1/01",
    "1(1.0)",
    "mdegC",
    "m per per s",
    "\x00",
]


@pytest.mark.timeout(5)
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_unit_text_is_refused_quickly(text: str) -> None:
    for field, pair in [("from_unit", (text, "m")), ("to_unit", ("m", text))]:
        (violation,) = error_of(*pair).violations
        assert violation.field == field
        assert violation.reason in {"INVALID_UNIT", "UNKNOWN_UNIT"}


@pytest.mark.timeout(5)
def test_nested_powers_of_units_stay_cheap() -> None:
    text = "((((1*m)**99)**99)**99)**99"
    assert canonical_unit(text) == "meter ** 96059601"
    (converted,) = convert(np.array([1.0]), text, text.replace("m", "km"))
    assert converted == 0.0


@pytest.mark.timeout(20)
def test_random_unit_text_is_converted_or_refused() -> None:
    pieces = [
        "m",
        "s",
        "nm",
        "1",
        "9",
        "99",
        "**",
        "^",
        "(",
        ")",
        "/",
        "*",
        " ",
        "-",
        "⁻¹",
        "²",
        ".",
    ]
    rng = random.Random(20240611)
    fields = []
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 24)))
        try:
            convert(np.array([1.0]), text, "m")
        except InvalidArgument as error:
            fields.append((error.violations[0].field, error.reason))
    assert 0 < len(fields) < 3000
    assert set(fields) <= {
        ("from_unit", "INVALID_UNIT"),
        ("from_unit", "UNKNOWN_UNIT"),
        ("to_unit", "DIMENSION_MISMATCH"),
    }


def test_long_unit_text_is_refused_before_pint() -> None:
    (violation,) = error_of("m" + " " * 200, "m").violations
    assert violation.reason == "INVALID_UNIT"
    assert "200" in violation.description


def test_syntax_errors_say_where() -> None:
    (violation,) = error_of("kg*m/s**2**2", "N").violations
    assert violation.reason == "INVALID_UNIT"
    assert violation.position == 9
    assert "'kg*m/s**2**2'" in violation.description


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("nm", "nanometer"),
        ("1/cm", "1 / centimeter"),
        ("cm^-1", "1 / centimeter"),
        ("eV", "electron_volt"),
        ("degC", "degree_Celsius"),
        ("µm", "micrometer"),
        ("kJ/mol", "kilojoule / mole"),
        ("ppm", "ppm"),
        ("", "dimensionless"),
    ],
)
def test_canonical_unit(text: str, canonical: str) -> None:
    assert canonical_unit(text) == canonical


def test_canonical_unit_raises_on_the_field_given() -> None:
    with pytest.raises(InvalidArgument) as caught:
        canonical_unit("parsec_per_fortnightz", field="options.x_unit")
    (violation,) = caught.value.violations
    assert (violation.field, violation.reason) == ("options.x_unit", "UNKNOWN_UNIT")
    assert "parsec_per_fortnightz" in violation.description


@pytest.mark.parametrize(
    ("jcamp", "unit"),
    [
        ("1/CM", "1/cm"),
        ("1/cm", "1/cm"),
        ("CM-1", "1/cm"),
        ("MICROMETERS", "micrometer"),
        ("NANOMETERS", "nanometer"),
        (" nanometers ", "nanometer"),
        ("HZ", "hertz"),
        ("PPM", "ppm"),
        ("SECONDS", "second"),
        ("MINUTES", "minute"),
        ("DEGREES", "degree"),
        ("EV", "electron_volt"),
        ("TRANSMITTANCE", ""),
        ("ABSORBANCE", ""),
        ("ARBITRARY UNITS", ""),
        ("ARBITRARY  UNITS", ""),
        ("COUNTS", ""),
        ("KUBELKA-MUNK", ""),
        ("FURLONGS", ""),
        ("", ""),
    ],
)
def test_parse_jcamp_unit(jcamp: str, unit: str) -> None:
    assert parse_jcamp_unit(jcamp) == unit


def test_jcamp_units_are_pint_units(ureg: pint.UnitRegistry[npt.NDArray[np.float64]]) -> None:
    for jcamp, unit in units._JCAMP_UNITS.items():
        assert canonical_unit(unit) == str(ureg.Unit(unit)), jcamp
    assert str(ureg.Unit(parse_jcamp_unit("PPM")).dimensionality) == "dimensionless"
    assert canonical_unit(parse_jcamp_unit("ABSORBANCE")) == "dimensionless"
