"""Spectra: JCAMP-DX bytes in, `SpectrumBlock` messages out (ParseSpectrum); spectra in, a
fixed-length matrix and peak lists out (EncodeSpectrum). Runs in worker processes.

The reader (`_jcamp`) hands over `JcampBlock`s with numpy arrays; this module maps them onto
the contract once, converting x axes on request (`units`, spectroscopy context).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from google.rpc import code_pb2, status_pb2

from qulab.server.domain._jcamp import JcampBlock, JcampLimits, Page, read_jcamp
from qulab.server.domain.spectrum_features import EncodeSettings, Grid, encode_spectrum
from qulab.server.domain.spectrum_options import encode_choices
from qulab.server.domain.units import convert, parse_jcamp_unit
from qulab.server.errors import FieldViolation, InvalidArgument, QulabError
from qulab.tensors import from_tensor, to_tensor
from qulab.v1 import common_pb2, spectrum_pb2

__all__ = ["encode_spectra", "parse_spectrum"]

Floats = npt.NDArray[np.float64]
_SPECTROSCOPY = "spectroscopy"


def _convert(x: Floats, source: str, target: str, source_field: str, target_field: str) -> Floats:
    """`convert` with its field names ("from_unit", "to_unit") as the caller's paths."""
    try:
        return convert(x, source, target, _SPECTROSCOPY)
    except InvalidArgument as exc:
        fields = {"from_unit": source_field, "to_unit": target_field}
        raise exc.renamed(lambda f: fields.get(f, target_field)) from None


def _converted_x(page: Page, x_unit: str, field: str) -> tuple[Floats, str]:
    """The page's x in `x_unit` (unchanged when `x_unit` is empty)."""
    if not x_unit:
        return page.x, page.x_unit
    source = parse_jcamp_unit(page.x_unit)
    if not source:
        raise InvalidArgument(
            FieldViolation(
                field=field,
                reason="NOT_CONVERTIBLE",
                description=f"the x unit {page.x_unit!r} of page {page.name or 'XYDATA'} has "
                f"no physical unit to convert to {x_unit!r}",
            )
        )
    return _convert(page.x, source, x_unit, "content", field), x_unit


def _page_message(page: Page, x_unit: str, out: spectrum_pb2.SpectrumPage) -> Floats:
    """Fill `out` with `page`; its x as sent (in `x_unit` when given)."""
    x, unit = _converted_x(page, x_unit, "options.x_unit")
    out.name = page.name
    # to_tensor makes the one copy needed; the arrays are float64 already.
    out.x.CopyFrom(to_tensor(x))
    out.y.CopyFrom(to_tensor(page.y))
    out.x_unit = unit
    out.y_unit = page.y_unit
    out.x_symbol = page.x_symbol
    out.y_symbol = page.y_symbol
    out.form = page.form
    out.encoding = page.encoding
    out.points = len(page.y)
    return x


def _block_message(block: JcampBlock, x_unit: str, out: spectrum_pb2.SpectrumBlock) -> None:
    out.index = block.index
    out.block_id = block.block_id
    out.parent = block.parent
    out.children.extend(block.children)
    out.title = block.title
    out.jcamp_version = block.version
    out.data_type = block.data_type
    out.data_class = block.data_class
    out.origin = block.origin
    out.owner = block.owner
    add = out.records.add
    for label, value, line in block.records:
        add(label=label, value=value, line=line)
    out.declared_points = block.npoints
    if block.pages:
        # The first page is also the block's own spectrum; listed among the pages only
        # when there are several or it has a name. Written in place, not copied in.
        paged = len(block.pages) > 1 or bool(block.pages[0].name)
        first = out.pages.add() if paged else spectrum_pb2.SpectrumPage()
        x = _page_message(block.pages[0], x_unit, first)
        out.x.CopyFrom(first.x)
        out.y.CopyFrom(first.y)
        out.x_unit = first.x_unit
        out.y_unit = first.y_unit
        out.points = first.points
        out.first_x = float(x[0]) if x.size else math.nan
        out.last_x = float(x[-1]) if x.size else math.nan
        for page in block.pages[1:]:
            _page_message(page, x_unit, out.pages.add())
    else:
        out.first_x = out.last_x = math.nan
    if block.peaks is not None:
        out.peak_table.form = block.peaks.form
        out.peak_table.values.CopyFrom(to_tensor(np.asarray(block.peaks.values, np.float64)))
    for a in block.assignments:
        out.peak_assignments.add(
            x=a.x, y=a.y, width=a.width, multiplicity=a.multiplicity, assignment=a.assignment
        )
    for check in block.checks:
        out.checks.add(name=check.name, passed=check.passed, message=check.message, line=check.line)
    out.warnings.extend(block.warnings)


def parse_spectrum(
    request: spectrum_pb2.ParseSpectrumRequest, limits: JcampLimits
) -> spectrum_pb2.ParseSpectrumResponse:
    blocks = read_jcamp(request.content, strict=request.options.strict, limits=limits)
    response = spectrum_pb2.ParseSpectrumResponse(id=request.id)
    for block in blocks:
        _block_message(block, request.options.x_unit, response.blocks.add())
    return response


def _input_arrays(
    item: spectrum_pb2.SpectrumInput, limits: JcampLimits, field: str
) -> tuple[Floats, Floats, str]:
    """x, y and x's unit (pint syntax, or "" when unknown) of one item."""
    kind = item.WhichOneof("input")
    if kind == "content":
        try:
            blocks = read_jcamp(item.content, limits=limits)
        except InvalidArgument as exc:
            raise exc.renamed(lambda f: f"{field}.{f}") from None
        with_data = [b for b in blocks if b.pages]
        if item.HasField("block"):
            chosen = [b for b in blocks if b.index == item.block]
            if not chosen or not chosen[0].pages:
                raise InvalidArgument(
                    FieldViolation(
                        field=f"{field}.block",
                        description=f"block {item.block} does not exist or holds no data "
                        f"(blocks with data: {[b.index for b in with_data]})",
                    )
                )
            with_data = chosen
        if not with_data:
            raise InvalidArgument(
                FieldViolation(field=f"{field}.content", description="no block holds data")
            )
        page = with_data[0].pages[0]
        return page.x, page.y, parse_jcamp_unit(page.x_unit)
    if kind == "spectrum":
        block = item.spectrum
        unit = parse_jcamp_unit(block.x_unit) or block.x_unit
        return (*_arrays(block.x, block.y, f"{field}.spectrum"), unit)
    raw = item.arrays
    return (*_arrays(raw.x, raw.y, f"{field}.arrays"), raw.x_unit)


def _arrays(x: common_pb2.Tensor, y: common_pb2.Tensor, field: str) -> tuple[Floats, Floats]:
    found = []
    for name, tensor in (("x", x), ("y", y)):
        try:
            array = np.asarray(from_tensor(tensor), np.float64)
        except ValueError as exc:
            raise InvalidArgument(
                FieldViolation(field=f"{field}.{name}", description=str(exc))
            ) from None
        if array.ndim != 1:
            raise InvalidArgument(
                FieldViolation(field=f"{field}.{name}", description="must be one-dimensional")
            )
        found.append(array)
    return found[0], found[1]


def _settings(request: spectrum_pb2.EncodeSpectrumRequest) -> EncodeSettings:
    choices = encode_choices(request.options)
    return EncodeSettings(
        grid=Grid(start=choices.start, stop=choices.stop, points=choices.points),
        normalization=choices.normalization,
        baseline=choices.baseline,
        baseline_degree=choices.baseline_degree,
        smoothing=choices.smoothing,
        smoothing_window=choices.smoothing_window,
        smoothing_order=choices.smoothing_order,
        peak_prominence=choices.peak_prominence,
        max_peaks=choices.max_peaks,
    )


# encode_spectrum's fields that are about the item's arrays; the others are options.
_ITEM_FIELDS = ("x", "y")


def _relocated(exc: InvalidArgument, item_field: str) -> InvalidArgument:
    """encode_spectrum's field names as the caller's request paths."""
    return exc.renamed(lambda f: f"{item_field}.{f}" if f in _ITEM_FIELDS else f"options.{f}")


def encode_spectra(
    request: spectrum_pb2.EncodeSpectrumRequest, limits: JcampLimits, first_index: int = 0
) -> spectrum_pb2.EncodeSpectrumResponse:
    """One row and one peak list per input spectrum; an item that fails gets a NaN row, an
    empty peak list and its own status, and the others go on."""
    settings = _settings(request)
    unit = request.options.grid.unit
    grid = np.linspace(settings.grid.start, settings.grid.stop, settings.grid.points)
    rows = np.full((len(request.spectra), settings.grid.points), np.nan, np.float32)
    response = spectrum_pb2.EncodeSpectrumResponse(feature_names=[f"{v:.10g}" for v in grid])
    for k, item in enumerate(request.spectra):
        field = f"spectra[{first_index + k}]"
        peaks = response.peaks.add()
        try:
            x, y, x_unit = _input_arrays(item, limits, field)
            if unit:
                if not x_unit:
                    raise InvalidArgument(
                        FieldViolation(
                            field=field,
                            reason="NOT_CONVERTIBLE",
                            description=f"the spectrum's x unit is unknown, so it cannot be "
                            f"put on a grid in {unit!r}",
                        )
                    )
                x = _convert(x, x_unit, unit, field, "options.grid.unit")
            try:
                encoded = encode_spectrum(x, y, settings)
            except InvalidArgument as exc:
                raise _relocated(exc, field) from None
        except QulabError as exc:
            response.item_status.append(exc.to_status())
            continue
        rows[k] = encoded.vector
        peaks.positions.extend(encoded.peak_positions.tolist())
        peaks.heights.extend(encoded.peak_heights.tolist())
        peaks.widths.extend(encoded.peak_widths.tolist())
        response.item_status.append(status_pb2.Status(code=code_pb2.OK))
    response.features.CopyFrom(to_tensor(rows))
    return response
