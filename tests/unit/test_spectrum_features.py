"""EncodeSpectrum's domain function against independent references: numpy.interp for the
resampling, scipy.signal (savgol_filter, find_peaks, peak_prominences, peak_widths) and
scipy.ndimage for the filters, and synthetic spectra with a known baseline."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import sympy
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage, signal

from qulab.server.domain import spectrum_features as module
from qulab.server.domain.spectrum_features import (
    MAX_GRID_POINTS,
    EncodeSettings,
    Grid,
    encode_spectrum,
)
from qulab.server.errors import InvalidArgument

Floats = npt.NDArray[np.float64]


def gaussians(x: Floats, *peaks: tuple[float, float, float]) -> Floats:
    """Sum of `height * exp(-(x - centre)^2 / (2 width^2))` over (centre, width, height)."""
    out = np.zeros_like(x)
    for centre, width, height in peaks:
        out += height * np.exp(-0.5 * ((x - centre) / width) ** 2)
    return out


def settings(grid: Grid, **changes: Any) -> EncodeSettings:
    return EncodeSettings(grid=grid, **changes)


def refused(x: Any, y: Any, chosen: EncodeSettings) -> str:
    with pytest.raises(InvalidArgument) as caught:
        encode_spectrum(x, y, chosen)
    assert len(caught.value.violations) == 1
    return caught.value.violations[0].field


# Resampling


@pytest.mark.parametrize(
    ("grid", "outside"),
    [
        (Grid(0.5, 9.5, 257), False),
        (Grid(9.5, 0.5, 100), False),  # descending, as IR axes often are
        (Grid(-3.0, 7.5, 64), True),  # starts before the data
        (Grid(12.0, 4.0, 33), True),  # descending, starts after the data
        (Grid(-5.0, 15.0, 1000), True),  # both sides outside
    ],
)
def test_resampling_is_linear_interpolation_and_zero_outside(grid: Grid, outside: bool) -> None:
    rng = np.random.default_rng(7)
    x = np.sort(rng.uniform(0.0, 10.0, 300))
    y = rng.normal(size=x.size)
    axis = np.linspace(grid.start, grid.stop, grid.points)
    inside = (axis >= x[0]) & (axis <= x[-1])
    expected = np.where(inside, np.interp(axis, x, y), 0.0)

    got = encode_spectrum(x, y, settings(grid)).vector

    assert got.dtype == np.float32
    assert got.shape == (grid.points,)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert (got[~inside] == 0).all()
    assert (~inside).any() == outside


def test_input_is_cleaned_sorted_and_duplicates_averaged() -> None:
    x = np.array([5.0, 1.0, np.nan, 3.0, 3.0, 2.0, np.inf, 4.0, 1.0, 6.0])
    y = np.array([50.0, 10.0, 7.0, 30.0, 34.0, 20.0, 1.0, np.nan, 14.0, 60.0])
    # Kept pairs by x: 1 -> (10 + 14) / 2, 2 -> 20, 3 -> (30 + 34) / 2, 5 -> 50, 6 -> 60.
    known_x = np.array([1.0, 2.0, 3.0, 5.0, 6.0])
    known_y = np.array([12.0, 20.0, 32.0, 50.0, 60.0])
    grid = Grid(0.0, 7.0, 57)
    axis = np.linspace(0.0, 7.0, 57)
    expected = np.where((axis >= 1) & (axis <= 6), np.interp(axis, known_x, known_y), 0.0)

    got = encode_spectrum(x, y, settings(grid)).vector

    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_descending_input_gives_the_same_vector_as_ascending() -> None:
    x = np.linspace(4000.0, 400.0, 3000)
    y = gaussians(x, (1600.0, 30.0, 1.0), (2900.0, 50.0, 0.5))
    grid = Grid(3900.0, 500.0, 512)
    chosen = settings(grid, smoothing="savitzky_golay", baseline="polynomial")
    forward = encode_spectrum(x[::-1], y[::-1], chosen)
    backward = encode_spectrum(x, y, chosen)
    np.testing.assert_array_equal(forward.vector, backward.vector)


# Smoothing


@pytest.mark.parametrize(
    ("window", "order"),
    [(3, 0), (3, 1), (5, 2), (11, 3), (21, 4), (65, 3), (101, 3), (301, 2)],
)
def test_savitzky_golay_matches_scipy_mirror_mode(window: int, order: int) -> None:
    rng = np.random.default_rng(window * 100 + order)
    y = rng.normal(size=700) + np.linspace(-3.0, 5.0, 700)
    chosen = settings(
        Grid(0, 1, 2), smoothing="savitzky_golay", smoothing_window=window, smoothing_order=order
    )
    expected = signal.savgol_filter(y, window, order, mode="mirror")
    np.testing.assert_allclose(module._smoothed(y, chosen), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("window", "order"), [(5, 4), (11, 3), (31, 6), (101, 5), (201, 10)])
def test_savitzky_golay_weights_are_the_exact_least_squares_weights(
    window: int, order: int
) -> None:
    # In rational arithmetic: row 0 of (A^T A)^-1 A^T, A[i, j] = (i - h)^j. Here scipy's own
    # weights (an unscaled lstsq) drift by up to 4e-11 at order 6, so they are no reference.
    half = window // 2
    design = sympy.Matrix(
        [[sympy.Integer(i) ** j for j in range(order + 1)] for i in range(-half, half + 1)]
    )
    exact = ((design.T * design).inv() * design.T).row(0)
    expected = np.array([float(w) for w in exact])
    np.testing.assert_allclose(module._savgol_coefficients(window, order), expected, atol=1e-14)


def test_savitzky_golay_window_as_wide_as_the_spectrum() -> None:
    y = np.random.default_rng(3).normal(size=41)
    chosen = settings(Grid(0, 1, 2), smoothing="savitzky_golay", smoothing_window=41)
    expected = signal.savgol_filter(y, 41, 3, mode="mirror")
    np.testing.assert_allclose(module._smoothed(y, chosen), expected, rtol=0, atol=1e-10)


def test_savitzky_golay_through_the_public_function() -> None:
    x = np.linspace(0.0, 1.0, 2001)
    y = np.random.default_rng(5).normal(size=x.size)
    chosen = settings(Grid(0.0, 1.0, 2001), smoothing="savitzky_golay", smoothing_window=15)
    expected = signal.savgol_filter(y, 15, 3, mode="mirror")
    np.testing.assert_allclose(encode_spectrum(x, y, chosen).vector, expected, atol=1e-6)


@pytest.mark.parametrize("window", [3, 9, 63, 65, 255])
def test_moving_average_matches_scipy_uniform_filter(window: int) -> None:
    y = np.random.default_rng(window).normal(size=900)
    chosen = settings(Grid(0, 1, 2), smoothing="moving_average", smoothing_window=window)
    expected = ndimage.uniform_filter1d(y, window, mode="mirror")
    np.testing.assert_allclose(module._smoothed(y, chosen), expected, rtol=0, atol=1e-10)


# Baselines


def test_linear_baseline_removes_a_line_exactly() -> None:
    x = np.linspace(100.0, 900.0, 1601)
    peaks = gaussians(x, (400.0, 15.0, 2.0), (650.0, 25.0, 1.0))
    assert peaks[0] < 1e-20
    assert peaks[-1] < 1e-20
    y = peaks + (3.5 - 0.004 * x)
    chosen = settings(Grid(100.0, 900.0, 1601), baseline="linear")

    np.testing.assert_allclose(module._without_baseline(x, y, chosen), peaks, rtol=0, atol=1e-13)
    np.testing.assert_allclose(encode_spectrum(x, y, chosen).vector, peaks, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("degree", [0, 1, 3, 6, 10])
def test_polynomial_baseline_removes_a_polynomial_of_its_degree(degree: int) -> None:
    x = np.linspace(-40.0, 260.0, 5000)
    rng = np.random.default_rng(degree)
    t = (x - 110.0) / 150.0
    y = np.polynomial.polynomial.polyval(t, rng.normal(size=degree + 1))
    chosen = settings(Grid(0, 1, 2), baseline="polynomial", baseline_degree=degree)
    scale = np.abs(y).max()
    assert np.abs(module._without_baseline(x, y, chosen)).max() < 1e-9 * scale


def test_polynomial_baseline_settles_under_the_peaks() -> None:
    x = np.linspace(400.0, 4000.0, 16384)
    peaks = gaussians(x, (1000.0, 20.0, 5.0), (1700.0, 40.0, 3.0), (2900.0, 15.0, 8.0))
    baseline = 2.0 - 1e-4 * (x - 2000.0) + 1e-7 * (x - 2000.0) ** 2
    y = peaks + baseline
    chosen = settings(Grid(0, 1, 2), baseline="polynomial", baseline_degree=3)

    error = (y - module._without_baseline(x, y, chosen)) - baseline
    under = peaks > 0.05 * peaks.max()
    # The baseline swings by 0.4 over the axis and the peaks reach 8; the fit stays within
    # 0.2 % of the tallest peak everywhere, 0.1 % under the peaks themselves.
    assert np.abs(error).max() < 0.002 * peaks.max()
    assert np.abs(error[under]).max() < 0.001 * peaks.max()
    # A plain least-squares fit is pulled up by the peaks: ten times the error at least.
    plain = np.polynomial.polynomial.Polynomial.fit(x, y, 3)(x) - baseline
    assert np.abs(plain[under]).max() > 10 * np.abs(error[under]).max()


@pytest.mark.parametrize("window", [3, 11, 51, 99])
def test_rolling_min_baseline_matches_a_direct_computation(window: int) -> None:
    x = np.linspace(0.0, 1.0, 400)
    y = np.random.default_rng(window).normal(size=x.size) + 5.0 * x
    half = window // 2
    minima = sliding_window_view(np.pad(y, half, mode="reflect"), window).min(axis=1)
    expected = y - sliding_window_view(np.pad(minima, half, mode="reflect"), window).mean(axis=1)
    chosen = settings(Grid(0, 1, 2), baseline="rolling_min", smoothing_window=window)
    np.testing.assert_allclose(module._without_baseline(x, y, chosen), expected, atol=1e-10)


# Normalisation


@pytest.mark.parametrize("grid", [Grid(0.0, 50.0, 801), Grid(55.0, -5.0, 333)])
def test_normalisations_by_definition(grid: Grid) -> None:
    x = np.linspace(0.0, 50.0, 2000)
    y = gaussians(x, (12.0, 2.0, 3.0), (30.0, 4.0, -1.5)) + 0.25
    axis = np.linspace(grid.start, grid.stop, grid.points)

    by_max = encode_spectrum(x, y, settings(grid, normalization="max")).vector
    assert np.abs(by_max).max() == 1.0

    by_area = encode_spectrum(x, y, settings(grid, normalization="area")).vector
    area = abs(np.trapezoid(np.abs(by_area.astype(np.float64)), axis))
    assert area == pytest.approx(1.0, rel=1e-6)

    snv = encode_spectrum(x, y, settings(grid, normalization="snv")).vector.astype(np.float64)
    assert snv.mean() == pytest.approx(0.0, abs=1e-6)
    assert snv.std() == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("normalization", ["none", "max", "area", "snv"])
def test_a_zero_spectrum_normalises_to_zeros(normalization: str) -> None:
    x = np.linspace(0.0, 10.0, 100)
    got = encode_spectrum(x, np.zeros(x.size), settings(GRID, normalization=normalization))
    assert (got.vector == 0).all()
    assert got.peak_positions.size == 0


@pytest.mark.parametrize("level", [3.0, -1e-300, 1e300])
def test_flat_spectra_normalise_without_dividing_by_zero(level: float) -> None:
    x = np.linspace(0.0, 10.0, 100)
    y = np.full(x.size, level)
    grid = Grid(1.0, 9.0, 64)  # inside the data: the vector is flat too
    snv = encode_spectrum(x, y, settings(grid, normalization="snv")).vector
    assert (snv == 0).all()
    by_max = encode_spectrum(x, y, settings(grid, normalization="max")).vector
    np.testing.assert_array_equal(by_max, np.sign(level))
    by_area = encode_spectrum(x, y, settings(grid, normalization="area")).vector
    np.testing.assert_allclose(by_area, np.sign(level) / 8.0, rtol=1e-6)


# Peaks


def scipy_peaks(vector: Floats, prominence: float) -> tuple[Floats, Floats, Floats]:
    """Indices, prominences and widths (samples) of scipy's peaks of at least `prominence`."""
    peaks, found = signal.find_peaks(vector, prominence=prominence)
    widths = signal.peak_widths(vector, peaks, rel_height=0.5)[0]
    return peaks, found["prominences"], widths


@pytest.mark.parametrize("seed", range(6))
def test_private_peaks_match_scipy_on_noise_and_plateaus(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(3, 3000))
    # Few distinct levels give plateaus and equal neighbours, the cases with rules.
    vector = rng.integers(0, 6, size).astype(np.float64) if seed % 2 else rng.normal(size=size)
    peaks, prominences, widths = module._peaks(vector)
    expected, expected_prominences, expected_widths = scipy_peaks(vector, 0.0)
    np.testing.assert_array_equal(peaks, expected)
    np.testing.assert_array_equal(prominences, expected_prominences)
    np.testing.assert_allclose(widths, expected_widths, rtol=1e-12)


@pytest.mark.timeout(30)
def test_private_peaks_on_a_staircase_match_scipy_in_bounded_time() -> None:
    # Each small peak sees only lower samples to its right all the way to the end:
    # scipy's walk is O(n) per peak here.
    vector = -np.arange(20_000.0) + 1.5 * (np.arange(20_000) % 2)
    peaks, prominences, widths = module._peaks(vector)
    expected, expected_prominences, expected_widths = scipy_peaks(vector, 0.0)
    np.testing.assert_array_equal(peaks, expected)
    np.testing.assert_array_equal(prominences, expected_prominences)
    np.testing.assert_allclose(widths, expected_widths, rtol=1e-12)

    # A million-point staircase: bounded by the test's timeout, not timed here.
    big = -np.arange(1_000_000.0) + 1.5 * (np.arange(1_000_000) % 2)
    assert module._peaks(big)[0].size == 499_999


@pytest.mark.parametrize("grid", [Grid(400.0, 4000.0, 1024), Grid(4000.0, 400.0, 777)])
def test_peaks_match_scipy_in_x_units(grid: Grid) -> None:
    rng = np.random.default_rng(11)
    x = np.linspace(400.0, 4000.0, 8000)
    y = gaussians(
        x, (800.0, 12.0, 1.0), (1650.0, 40.0, 3.0), (2200.0, 15.0, 2.0), (3000.0, 80.0, 0.7)
    )
    y += rng.normal(0.0, 0.01, x.size)
    chosen = settings(grid, normalization="max", peak_prominence=0.02, max_peaks=1000)
    axis = np.linspace(grid.start, grid.stop, grid.points)
    resampled = np.interp(axis, x, y)
    vector = resampled / np.abs(resampled).max()
    peaks, _, widths = scipy_peaks(vector, 0.02)
    order = np.argsort(axis[peaks])
    step = abs(grid.stop - grid.start) / (grid.points - 1)

    got = encode_spectrum(x, y, chosen)

    assert peaks.size >= 4
    np.testing.assert_array_equal(got.peak_positions, axis[peaks][order])
    np.testing.assert_allclose(got.peak_heights, vector[peaks][order], rtol=1e-12)
    np.testing.assert_allclose(got.peak_widths, widths[order] * step, rtol=1e-9)
    # The Gaussian at 1650 (sigma 40) has a FWHM of 2 sqrt(2 ln 2) 40 = 94.2.
    at_1650 = np.argmin(np.abs(got.peak_positions - 1650.0))
    assert got.peak_widths[at_1650] == pytest.approx(94.2, rel=0.05)


def test_max_peaks_keeps_the_most_prominent_sorted_by_position() -> None:
    rng = np.random.default_rng(2)
    x = np.linspace(0.0, 100.0, 4000)
    y = gaussians(
        x,
        *(
            (c, 0.8, h)
            for c, h in zip(rng.uniform(5, 95, 40), rng.uniform(0.1, 1, 40), strict=True)
        ),
    )
    grid = Grid(100.0, 0.0, 2000)
    axis = np.linspace(100.0, 0.0, 2000)
    chosen = settings(grid, normalization="max", peak_prominence=0.0, max_peaks=7)
    vector = np.interp(axis, x, y) / np.abs(np.interp(axis, x, y)).max()
    peaks, prominences, _ = scipy_peaks(vector, 0.0)
    strongest = peaks[np.argsort(-prominences, kind="stable")[:7]]

    got = encode_spectrum(x, y, chosen)

    assert peaks.size > 7
    np.testing.assert_array_equal(got.peak_positions, np.sort(axis[strongest]))
    assert encode_spectrum(x, y, settings(grid, max_peaks=0)).peak_positions.size == 0


# Refusals


GRID = Grid(0.0, 10.0, 100)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"grid": Grid(0.0, 10.0, 1)}, "grid.points"),
        ({"grid": Grid(0.0, 10.0, MAX_GRID_POINTS + 1)}, "grid.points"),
        ({"grid": Grid(0.0, 10.0, 10.5)}, "grid.points"),  # type: ignore[arg-type]
        ({"grid": Grid(5.0, 5.0, 100)}, "grid"),
        ({"grid": Grid(-1e308, 1e308, 100)}, "grid"),
        ({"grid": Grid(float("nan"), 5.0, 100)}, "grid.start"),
        ({"grid": Grid(0.0, float("inf"), 100)}, "grid.stop"),
        ({"normalization": "l2"}, "normalization"),
        ({"baseline": "als"}, "baseline"),
        ({"smoothing": "gaussian"}, "smoothing"),
        ({"baseline_degree": -1}, "baseline_degree"),
        ({"baseline_degree": 11}, "baseline_degree"),
        ({"smoothing_window": 10}, "smoothing_window"),
        ({"smoothing_window": 1}, "smoothing_window"),
        ({"smoothing_window": 5, "smoothing_order": 5}, "smoothing_order"),
        ({"smoothing_window": 31, "smoothing_order": 11}, "smoothing_order"),
        ({"peak_prominence": float("nan")}, "peak_prominence"),
        ({"peak_prominence": -0.1}, "peak_prominence"),
        ({"max_peaks": -1}, "max_peaks"),
    ],
)
def test_bad_settings_name_their_field(changes: dict[str, Any], field: str) -> None:
    x = np.linspace(0.0, 10.0, 50)
    chosen = settings(changes.pop("grid", GRID), **changes)
    assert refused(x, np.sin(x), chosen) == field


@pytest.mark.parametrize(
    ("x", "y", "field"),
    [
        ([0.0, 1.0, 2.0], [1.0, 2.0], "y"),
        ([], [], "x"),
        ([1.0], [1.0], "x"),
        ([np.nan, np.nan, np.nan], [1.0, 2.0, 3.0], "x"),
        ([1.0, 2.0, 3.0], [np.nan, np.nan, np.nan], "y"),
        ([1.0, 2.0, 3.0], [np.nan, 1.0, np.inf], "y"),
        ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], "x"),
        ([-1e308, 1e308], [1.0, 2.0], "x"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "x"),
        (["a", "b"], [1.0, 2.0], "x"),
        ([0.0, 1.0], [1e300, -1e300], "y"),
    ],
)
def test_bad_arrays_name_their_field(x: Any, y: Any, field: str) -> None:
    assert refused(x, y, settings(GRID)) == field


@pytest.mark.parametrize(
    "changes",
    [{"smoothing": "savitzky_golay"}, {"smoothing": "moving_average"}, {"baseline": "rolling_min"}],
)
def test_window_wider_than_the_spectrum_is_refused_only_when_used(changes: dict[str, Any]) -> None:
    x = np.linspace(0.0, 10.0, 9)
    assert refused(x, x**2, settings(GRID, smoothing_window=11, **changes)) == "smoothing_window"
    assert encode_spectrum(x, x**2, settings(GRID, smoothing_window=11)).vector.size == 100
    assert encode_spectrum(x, x**2, settings(GRID, smoothing_window=9, **changes)).vector.size


@pytest.mark.timeout(10)
def test_oversized_grid_is_refused_before_any_work() -> None:
    huge = np.zeros(10_000_000)
    assert refused(huge, huge, settings(Grid(0.0, 1.0, 10**9))) == "grid.points"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_million_points_with_every_step_on() -> None:
    """The server's default point limit, every step at its most expensive settings (speed
    itself is measured in bench/)."""
    x = np.linspace(400.0, 4000.0, 1_000_000)
    y = gaussians(x, (1000.0, 20.0, 5.0), (2900.0, 15.0, 8.0)) + 1e-4 * x
    y += np.random.default_rng(0).normal(0.0, 0.01, x.size)
    chosen = settings(
        Grid(4000.0, 400.0, MAX_GRID_POINTS),
        smoothing="savitzky_golay",
        smoothing_window=101,
        baseline="polynomial",
        baseline_degree=10,
        normalization="snv",
    )
    got = encode_spectrum(x, y, chosen)
    assert got.vector.shape == (MAX_GRID_POINTS,)
    assert np.isfinite(got.vector).all()
    np.testing.assert_allclose(np.sort(got.peak_positions)[-2:], [1000.0, 2900.0], atol=1.0)
