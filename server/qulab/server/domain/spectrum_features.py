"""EncodeSpectrum: one measured spectrum in, one fixed-length float32 vector and its peaks out.

The steps, always in this order:

1. clean: pairs with a non-finite x or y are dropped, the rest sorted by x, and the y
   values of equal x averaged;
2. baseline removal, on those points: `linear` subtracts the line through the first and
   the last point; `polynomial` the asymmetric "modified polyfit" of Lieber &
   Mahadevan-Jansen (2003): a least-squares polynomial is fitted, the spectrum clipped to
   it from above, and the fit repeated until it stops moving, so it settles under the peaks;
   `rolling_min` a rolling minimum smoothed by a moving average, both `smoothing_window`
   points wide;
3. smoothing, on the same points: Savitzky-Golay or a moving average. Windows count
   points, not x units, and the edges are mirrored (scipy's `mode="mirror"`);
4. resampling onto the grid by linear interpolation; grid points outside the data's x
   range are 0, never extrapolated;
5. normalisation of the resampled vector: `max` divides by its largest |value|, `area` by
   the trapezoid area of |vector| over the grid, `snv` subtracts the mean and divides by
   the (population) standard deviation. A vector that would divide by zero becomes zeros;
6. peaks of the normalised vector with `scipy.signal.find_peaks`' definitions: local
   maxima (the middle of a flat top), their prominence, and their width at half
   prominence (`peak_widths(rel_height=0.5)`, linearly interpolated between samples).

Prominences and widths are found with segment trees, so the cost stays O(n log n) however
many peaks a noisy million-point vector has (scipy's own walk is O(n) per peak).

Bad settings or input raise `InvalidArgument` with the field path relative to the settings
(`grid.points`, `smoothing_window`, ...) or the arrays (`x`, `y`). Pure numpy; no gRPC.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from numpy.polynomial import legendre

from qulab.server.errors import FieldViolation, InvalidArgument

__all__ = [
    "BASELINES",
    "MAX_BASELINE_DEGREE",
    "MAX_GRID_POINTS",
    "MAX_SMOOTHING_ORDER",
    "NORMALIZATIONS",
    "SMOOTHINGS",
    "EncodeSettings",
    "Encoded",
    "Grid",
    "encode_spectrum",
]

Floats = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]

MAX_GRID_POINTS: Final = 1_000_000
MAX_BASELINE_DEGREE: Final = 10
MAX_SMOOTHING_ORDER: Final = 10
NORMALIZATIONS: Final = ("none", "max", "area", "snv")
BASELINES: Final = ("none", "linear", "polynomial", "rolling_min")
SMOOTHINGS: Final = ("none", "savitzky_golay", "moving_average")

# Modified polyfit stops when the fit moves by less than this share of its own norm.
_MODPOLY_TOLERANCE: Final = 1e-3
_MODPOLY_MAX_ITERATIONS: Final = 200
# Vandermonde blocks of at most this many elements keep 10^7-point inputs within memory.
_VANDER_ELEMENTS: Final = 1 << 22
# Above this window a convolution goes through the FFT: O(n log n) instead of O(n w).
_DIRECT_WINDOW: Final = 64
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
_EPS: Final = float(np.finfo(np.float64).eps)


@dataclass(frozen=True, slots=True)
class Grid:
    """The target axis: `numpy.linspace(start, stop, points)`, both ends included."""

    start: float
    """First grid point, in the x units of the spectrum."""
    stop: float
    """Last grid point; may be below `start` (descending axes, as IR often has)."""
    points: int
    """Length of the vector, 2..MAX_GRID_POINTS."""


@dataclass(frozen=True, slots=True)
class EncodeSettings:
    """How a spectrum becomes a vector; see the module docstring for the order of steps."""

    grid: Grid
    """The axis the spectrum is resampled onto."""
    normalization: str = "none"
    """One of NORMALIZATIONS."""
    baseline: str = "none"
    """One of BASELINES."""
    baseline_degree: int = 3
    """Degree of the `polynomial` baseline, 0..MAX_BASELINE_DEGREE."""
    smoothing: str = "none"
    """One of SMOOTHINGS."""
    smoothing_window: int = 11
    """Odd window, in points, of the smoothing and of the `rolling_min` baseline; at least 3
    and at most the number of (distinct-x) points of the spectrum."""
    smoothing_order: int = 3
    """Polynomial order of the Savitzky-Golay filter, below the window and at most
    MAX_SMOOTHING_ORDER."""
    peak_prominence: float = 0.05
    """Smallest prominence of a reported peak, as a share of the largest |value| of the
    normalised vector."""
    max_peaks: int = 64
    """At most this many peaks, the most prominent ones, are reported."""


# eq=False: the fields are arrays, whose == does not give one truth value.
@dataclass(frozen=True, slots=True, eq=False)
class Encoded:
    """The vector and the peaks found on it, peaks sorted by ascending x."""

    vector: npt.NDArray[np.float32]
    """The processed spectrum on the grid, `grid.points` finite values."""
    peak_positions: Floats
    """x of each peak's grid point (the middle one of a flat top)."""
    peak_heights: Floats
    """Value of the normalised vector at each peak."""
    peak_widths: Floats
    """Full width at half prominence, in x units."""


def encode_spectrum(x: npt.ArrayLike, y: npt.ArrayLike, settings: EncodeSettings) -> Encoded:
    """The fixed-length vector and the peaks of the spectrum `y(x)`.

    Raises `InvalidArgument` for bad settings, arrays of different lengths, fewer than two
    finite points or distinct x values, and values too large for a float32 vector.
    """
    _check_settings(settings)
    xs, ys = _clean(x, y)
    _check_window(settings, xs.size)
    grid = settings.grid
    axis = np.linspace(grid.start, grid.stop, grid.points)
    # Values near the float64 limit may overflow on the way; the check below reports them.
    with np.errstate(over="ignore", invalid="ignore"):
        ys = _smoothed(_without_baseline(xs, ys, settings), settings)
        vector = _normalised(np.interp(axis, xs, ys, left=0.0, right=0.0), axis, settings)
    if not np.isfinite(vector).all() or np.abs(vector).max() > _FLOAT32_MAX:
        raise InvalidArgument(
            FieldViolation(
                field="y",
                description="the processed values do not fit a float32 vector; "
                "scale the spectrum or choose a normalisation",
            )
        )
    scale = float(np.abs(vector).max())
    peaks, prominences, widths = _peaks(vector)
    kept = prominences >= settings.peak_prominence * scale
    peaks, prominences, widths = peaks[kept], prominences[kept], widths[kept]
    strongest = np.argsort(-prominences, kind="stable")[: settings.max_peaks]
    peaks, widths = peaks[strongest], widths[strongest]
    positions = axis[peaks]
    by_x = np.argsort(positions, kind="stable")
    step = abs(grid.stop - grid.start) / (grid.points - 1)
    return Encoded(
        vector=vector.astype(np.float32),
        peak_positions=positions[by_x],
        peak_heights=vector[peaks][by_x],
        peak_widths=widths[by_x] * step,
    )


def _refuse(field: str, description: str, reason: str = "INVALID_FIELD") -> InvalidArgument:
    return InvalidArgument(FieldViolation(field=field, description=description, reason=reason))


def _integer(value: object, field: str) -> int:
    if isinstance(value, bool):
        raise _refuse(field, f"must be an integer (got {value!r})")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise _refuse(field, f"must be an integer (got {value!r})") from None


def _check_settings(settings: EncodeSettings) -> None:
    grid = settings.grid
    points = _integer(grid.points, "grid.points")
    if not 2 <= points <= MAX_GRID_POINTS:
        raise _refuse(
            "grid.points",
            f"{points} points; the grid needs 2..{MAX_GRID_POINTS}",
            reason="LIMIT_EXCEEDED" if points > MAX_GRID_POINTS else "INVALID_FIELD",
        )
    for name in ("start", "stop"):
        if not math.isfinite(getattr(grid, name)):
            raise _refuse(f"grid.{name}", f"must be finite (got {getattr(grid, name)!r})")
    if grid.start == grid.stop:
        raise _refuse("grid", f"start and stop are both {grid.start!r}")
    if not math.isfinite(float(grid.stop) - float(grid.start)):
        raise _refuse("grid", "stop - start overflows")
    for field, value, allowed in (
        ("normalization", settings.normalization, NORMALIZATIONS),
        ("baseline", settings.baseline, BASELINES),
        ("smoothing", settings.smoothing, SMOOTHINGS),
    ):
        if value not in allowed:
            raise _refuse(field, f"unknown {field} {value!r}; choose one of {', '.join(allowed)}")
    degree = _integer(settings.baseline_degree, "baseline_degree")
    if not 0 <= degree <= MAX_BASELINE_DEGREE:
        raise _refuse("baseline_degree", f"{degree} is outside 0..{MAX_BASELINE_DEGREE}")
    window = _integer(settings.smoothing_window, "smoothing_window")
    if window < 3 or window % 2 == 0:
        raise _refuse("smoothing_window", f"{window}: the window must be odd and at least 3")
    order = _integer(settings.smoothing_order, "smoothing_order")
    if not 0 <= order <= min(window - 1, MAX_SMOOTHING_ORDER):
        raise _refuse(
            "smoothing_order",
            f"{order} is outside 0..{min(window - 1, MAX_SMOOTHING_ORDER)} "
            f"(below the window {window}, at most {MAX_SMOOTHING_ORDER})",
        )
    if not math.isfinite(settings.peak_prominence) or settings.peak_prominence < 0:
        raise _refuse("peak_prominence", f"{settings.peak_prominence!r} is not a share >= 0")
    if _integer(settings.max_peaks, "max_peaks") < 0:
        raise _refuse("max_peaks", f"{settings.max_peaks} is negative")


def _check_window(settings: EncodeSettings, points: int) -> None:
    used = settings.smoothing != "none" or settings.baseline == "rolling_min"
    if used and settings.smoothing_window > points:
        raise _refuse(
            "smoothing_window",
            f"{settings.smoothing_window} is wider than the spectrum's {points} points",
        )


def _array(values: npt.ArrayLike, field: str) -> Floats:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise _refuse(field, "must be an array of real numbers") from None
    if array.ndim != 1:
        raise _refuse(field, f"must be one-dimensional (got shape {array.shape})")
    return array


def _clean(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[Floats, Floats]:
    """Finite pairs sorted by strictly increasing x, y averaged over equal x."""
    xs, ys = _array(x, "x"), _array(y, "y")
    if xs.size != ys.size:
        raise _refuse("y", f"{ys.size} values for {xs.size} x values")
    finite = np.isfinite(xs) & np.isfinite(ys)
    if np.count_nonzero(finite) < 2:
        field = "x" if np.count_nonzero(np.isfinite(xs)) < 2 else "y"
        raise _refuse(field, "fewer than 2 points with a finite x and y")
    if not finite.all():
        xs, ys = xs[finite], ys[finite]
    if (xs[1:] < xs[:-1]).all():
        xs, ys = xs[::-1], ys[::-1]
    elif not (xs[1:] > xs[:-1]).all():
        xs, first, counts = np.unique(xs, return_inverse=True, return_counts=True)
        ys = np.bincount(first, weights=ys, minlength=xs.size) / counts
    if xs.size < 2:
        raise _refuse("x", "fewer than 2 distinct finite x values")
    if not math.isfinite(float(xs[-1]) - float(xs[0])):
        raise _refuse("x", "the x range overflows")
    return np.ascontiguousarray(xs), np.ascontiguousarray(ys)


def _without_baseline(x: Floats, y: Floats, settings: EncodeSettings) -> Floats:
    if settings.baseline == "linear":
        slope = (y[-1] - y[0]) / (x[-1] - x[0])
        line: Floats = y[0] + slope * (x - x[0])
        return y - line
    if settings.baseline == "polynomial":
        return y - _modified_polyfit(x, y, settings.baseline_degree)
    if settings.baseline == "rolling_min":
        window = settings.smoothing_window
        return y - _correlate(_rolling_min(y, window), np.full(window, 1.0 / window))
    return y


def _modified_polyfit(x: Floats, y: Floats, degree: int) -> Floats:
    """Lieber & Mahadevan-Jansen's baseline: fit, clip the spectrum to the fit, refit.

    Legendre polynomials of x mapped onto [-1, 1] keep the normal equations well
    conditioned up to degree 10; the change of the fit is measured through the Gram
    matrix, so an iteration is one pass over the points.
    """
    t = (x - x[0]) * (2.0 / (x[-1] - x[0])) - 1.0
    rows = max(1, _VANDER_ELEMENTS // (degree + 1))
    blocks = [slice(start, start + rows) for start in range(0, t.size, rows)]
    cached = legendre.legvander(t, degree) if len(blocks) == 1 else None

    def vander(block: slice) -> Floats:
        return cached if cached is not None else legendre.legvander(t[block], degree)

    gram = sum((v.T @ v for v in map(vander, blocks)), np.zeros((degree + 1, degree + 1)))
    solve = np.linalg.pinv(gram)
    coefficients = solve @ sum((vander(b).T @ y[b] for b in blocks), np.zeros(degree + 1))
    work = y.copy()
    for _ in range(_MODPOLY_MAX_ITERATIONS):
        projection = np.zeros(degree + 1)
        for block in blocks:
            v = vander(block)
            np.minimum(work[block], v @ coefficients, out=work[block])
            projection += v.T @ work[block]
        previous, coefficients = coefficients, solve @ projection
        change = coefficients - previous
        if change @ gram @ change <= _MODPOLY_TOLERANCE**2 * (previous @ gram @ previous):
            break
    return np.concatenate([vander(block) @ coefficients for block in blocks])


def _rolling_min(y: Floats, window: int) -> Floats:
    """Centred rolling minimum with mirrored edges, O(n) for any window (van Herk/Gil-Werman:
    a window of w points spans at most two w-blocks, so it is the minimum of one block's
    suffix and the next block's prefix)."""
    padded = np.pad(y, window // 2, mode="reflect")
    blocks = -(-padded.size // window)
    filled = np.full(blocks * window, np.inf)
    filled[: padded.size] = padded
    tiles = filled.reshape(blocks, window)
    prefix = np.minimum.accumulate(tiles, axis=1).ravel()
    suffix = np.minimum.accumulate(tiles[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.minimum(suffix[: y.size], prefix[window - 1 : window - 1 + y.size])


def _smoothed(y: Floats, settings: EncodeSettings) -> Floats:
    window = settings.smoothing_window
    if settings.smoothing == "savitzky_golay":
        return _correlate(y, _savgol_coefficients(window, settings.smoothing_order))
    if settings.smoothing == "moving_average":
        return _correlate(y, np.full(window, 1.0 / window))
    return y


def _savgol_coefficients(window: int, order: int) -> Floats:
    """Weights that give the least-squares polynomial's value at the window's centre.

    Positions are scaled to [-1, 1]: rescaling the columns of the design matrix leaves
    row 0 of its pseudo-inverse (the constant term, i.e. the value at 0) unchanged.
    """
    half = window // 2
    t = np.arange(-half, half + 1) / half
    design = t[:, np.newaxis] ** np.arange(order + 1)
    weights: Floats = np.linalg.pinv(design)[0]
    return weights


def _correlate(y: Floats, weights: Floats) -> Floats:
    """`sum_i weights[i] * y[k - h + i]` at every k, the edges mirrored (h = len // 2 <= len(y)
    - 1, so one reflection suffices)."""
    padded = np.pad(y, weights.size // 2, mode="reflect")
    if weights.size <= _DIRECT_WINDOW:
        out: Floats = np.convolve(padded, weights[::-1], mode="valid")
        return out
    full = padded.size + weights.size - 1
    size = 1 << (full - 1).bit_length()
    spectrum = np.fft.rfft(padded, size) * np.fft.rfft(weights[::-1], size)
    return np.fft.irfft(spectrum, size)[weights.size - 1 : padded.size]


def _normalised(vector: Floats, axis: Floats, settings: EncodeSettings) -> Floats:
    largest = float(np.abs(vector).max())
    if settings.normalization == "max":
        return vector / largest if largest > 0 else np.zeros_like(vector)
    if settings.normalization == "area":
        area = abs(float(np.trapezoid(np.abs(vector), axis)))
        return vector / area if area > 0 else np.zeros_like(vector)
    if settings.normalization == "snv":
        deviation = float(vector.std())
        # A constant vector has a standard deviation of rounding noise, not of data.
        if deviation <= 16 * _EPS * largest:
            return np.zeros_like(vector)
        centred: Floats = vector - vector.mean()
        return centred / deviation
    return vector


def _peaks(vector: Floats) -> tuple[Indices, Floats, Floats]:
    """Local maxima, their prominences and widths at half prominence (in samples), as
    `scipy.signal.find_peaks`, `peak_prominences` and `peak_widths(rel_height=0.5)`."""
    runs = np.flatnonzero(vector[1:] != vector[:-1]) + 1
    starts = np.concatenate(([0], runs))
    ends = np.concatenate((runs - 1, [vector.size - 1]))
    level = vector[starts]
    top = (level[:-2] < level[1:-1]) & (level[2:] < level[1:-1])
    peaks = (starts[1:-1][top] + ends[1:-1][top]) // 2
    if peaks.size == 0:
        return peaks, np.zeros(0), np.zeros(0)
    height = vector[peaks]
    highs, lows = _SegmentTree(vector, lowest=False), _SegmentTree(vector, lowest=True)
    # Scanning from a peak to the nearest strictly higher sample on each side (or the end),
    # the higher of the two lowest samples passed is the peak's reference level.
    _, left_low = highs.nearest(peaks - 1, height, leftwards=True, lows=lows)
    _, right_low = highs.nearest(peaks + 1, height, leftwards=False, lows=lows)
    prominences = height - np.minimum(np.maximum(left_low, right_low), height)
    half = height - 0.5 * prominences
    # The first samples at or below half height; both bases are, so both exist.
    inner_left, _ = lows.nearest(peaks, half, leftwards=True)
    inner_right, _ = lows.nearest(peaks, half, leftwards=False)
    left_ip = inner_left.astype(np.float64)
    below = vector[inner_left] < half
    i = inner_left[below]
    left_ip[below] += (half[below] - vector[i]) / (vector[i + 1] - vector[i])
    right_ip = inner_right.astype(np.float64)
    below = vector[inner_right] < half
    i = inner_right[below]
    right_ip[below] -= (half[below] - vector[i]) / (vector[i - 1] - vector[i])
    return peaks, prominences, right_ip - left_ip


class _SegmentTree:
    """Minima (`lowest`) or maxima over power-of-two segments, for vectorised searches of
    the nearest sample at or below (minima) or above (maxima) a threshold on either side of
    a position. A search takes O(log n) numpy steps over all positions at once."""

    def __init__(self, values: Floats, *, lowest: bool) -> None:
        self.n = values.size
        self.size = 1 << max(1, (self.n - 1).bit_length())
        self.lowest = lowest
        op = np.minimum if lowest else np.maximum
        tree = np.full(2 * self.size, np.inf if lowest else -np.inf)
        tree[self.size : self.size + self.n] = values
        level = self.size
        while level > 1:
            tree[level // 2 : level] = op(
                tree[level : 2 * level : 2], tree[level + 1 : 2 * level : 2]
            )
            level //= 2
        self.tree = tree

    def _hit(self, nodes: Indices, threshold: Floats) -> npt.NDArray[np.bool_]:
        values = self.tree[nodes]
        return values <= threshold if self.lowest else values > threshold

    def nearest(
        self,
        positions: Indices,
        threshold: Floats,
        *,
        leftwards: bool,
        lows: _SegmentTree | None = None,
    ) -> tuple[Indices, Floats]:
        """The nearest j at or beyond each position (largest j <= position when `leftwards`,
        else smallest j >= position) that hits, -1 or n where none does; and, from the
        minima tree `lows`, the minimum over the samples passed on the way (position up to
        j, j excluded), +inf where none was passed or `lows` is None."""
        found = np.full(positions.size, -1 if leftwards else self.n, dtype=np.intp)
        passed = np.full(positions.size, np.inf)
        todo = np.flatnonzero((positions >= 0) & (positions < self.n))
        nodes = positions[todo] + self.size
        hit = self._hit(nodes, threshold[todo])
        hits: list[Indices] = []
        spans: list[Indices] = []
        while True:
            if lows is not None:
                passed[todo[~hit]] = np.minimum(passed[todo[~hit]], lows.tree[nodes[~hit]])
            hits.append(todo[hit])
            spans.append(nodes[hit])
            todo, nodes = todo[~hit], nodes[~hit]
            if todo.size == 0:
                break
            # Climb while the span checked is the far child of its parent; the next span
            # to check is the parent's sibling on the near side.
            if leftwards:
                nodes = nodes // (nodes & -nodes)
                alive = nodes > 1
                todo, nodes = todo[alive], nodes[alive] - 1
            else:
                nodes = nodes // ((nodes + 1) & -(nodes + 1))
                alive = nodes > 0
                todo, nodes = todo[alive], nodes[alive] + 1
            hit = self._hit(nodes, threshold[todo])
        # The spans found while climbing (the starting leaves among them), descended into
        # all at once: take the nearer child when it hits, else pass it and take the other.
        todo, nodes = np.concatenate(hits), np.concatenate(spans)
        nearer = int(leftwards)
        while True:
            inner = np.flatnonzero(nodes < self.size)
            if inner.size == 0:
                break
            child = 2 * nodes[inner] + nearer
            hit = self._hit(child, threshold[todo[inner]])
            if lows is not None:
                missed = todo[inner[~hit]]
                passed[missed] = np.minimum(passed[missed], lows.tree[child[~hit]])
            nodes[inner] = np.where(hit, child, child ^ 1)
        found[todo] = nodes - self.size
        return found, passed
