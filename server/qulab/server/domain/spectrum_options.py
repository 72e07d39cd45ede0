"""Effective option values for spectrum requests, the defaults the proto documents applied in
one place. Light to import: servicers use it for provenance, workers for the settings."""

from __future__ import annotations

from dataclasses import dataclass

from qulab.v1 import spectrum_pb2

__all__ = [
    "DEFAULT_BASELINE_DEGREE",
    "DEFAULT_MAX_PEAKS",
    "DEFAULT_PEAK_PROMINENCE",
    "DEFAULT_SMOOTHING_ORDER",
    "DEFAULT_SMOOTHING_WINDOW",
    "EncodeChoices",
    "encode_choices",
    "encode_parameters",
    "parse_parameters",
]

DEFAULT_BASELINE_DEGREE = 3
DEFAULT_SMOOTHING_WINDOW = 11
DEFAULT_SMOOTHING_ORDER = 3
DEFAULT_PEAK_PROMINENCE = 0.05
DEFAULT_MAX_PEAKS = 64

_NORMALIZATION = {
    spectrum_pb2.NORMALIZATION_UNSPECIFIED: "none",
    spectrum_pb2.NORMALIZATION_MAX: "max",
    spectrum_pb2.NORMALIZATION_AREA: "area",
    spectrum_pb2.NORMALIZATION_SNV: "snv",
}
_BASELINE = {
    spectrum_pb2.BASELINE_UNSPECIFIED: "none",
    spectrum_pb2.BASELINE_LINEAR: "linear",
    spectrum_pb2.BASELINE_POLYNOMIAL: "polynomial",
    spectrum_pb2.BASELINE_ROLLING_MIN: "rolling_min",
}
_SMOOTHING = {
    spectrum_pb2.SMOOTHING_UNSPECIFIED: "none",
    spectrum_pb2.SMOOTHING_SAVITZKY_GOLAY: "savitzky_golay",
    spectrum_pb2.SMOOTHING_MOVING_AVERAGE: "moving_average",
}


@dataclass(frozen=True, slots=True)
class EncodeChoices:
    """EncodeSpectrumOptions with every default applied."""

    start: float
    stop: float
    points: int
    unit: str
    normalization: str
    baseline: str
    baseline_degree: int
    smoothing: str
    smoothing_window: int
    smoothing_order: int
    peak_prominence: float
    max_peaks: int


def encode_choices(options: spectrum_pb2.EncodeSpectrumOptions) -> EncodeChoices:
    def given(name: str, default: float) -> float:
        present = options.HasField(name)  # type: ignore[arg-type]  # names below are optional fields
        return float(getattr(options, name)) if present else default

    return EncodeChoices(
        start=options.grid.start,
        stop=options.grid.stop,
        points=options.grid.points,
        unit=options.grid.unit,
        normalization=_NORMALIZATION[options.normalization],
        baseline=_BASELINE[options.baseline],
        baseline_degree=int(given("baseline_degree", DEFAULT_BASELINE_DEGREE)),
        smoothing=_SMOOTHING[options.smoothing],
        smoothing_window=int(given("smoothing_window", DEFAULT_SMOOTHING_WINDOW)),
        smoothing_order=int(given("smoothing_order", DEFAULT_SMOOTHING_ORDER)),
        peak_prominence=float(given("peak_prominence", DEFAULT_PEAK_PROMINENCE)),
        max_peaks=int(given("max_peaks", DEFAULT_MAX_PEAKS)),
    )


def encode_parameters(options: spectrum_pb2.EncodeSpectrumOptions) -> dict[str, str]:
    """Every effective encode option, defaults applied, as text (Provenance.parameters)."""
    choices = encode_choices(options)
    return {name: str(getattr(choices, name)) for name in choices.__dataclass_fields__}


def parse_parameters(options: spectrum_pb2.ParseSpectrumOptions) -> dict[str, str]:
    return {"strict": str(options.strict).lower(), "x_unit": options.x_unit}
