"""SpectrumService and UnitService through a real server: the three encodings of one Bruker
spectrum agree point for point, axes convert by the physics (1e7 / wavenumber), strictness
turns a failed Y-check into INVALID_ARGUMENT with its line, encodings keep per-item errors,
and unit conversions equal pint's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pint
import pytest
from google.rpc import code_pb2

from qulab.client import Client, from_tensor, to_tensor
from qulab.v1 import spectrum_pb2, units_pb2
from tests.conftest import RunningServer
from tests.integration._status import failure_of, unpack_status

DATA = Path(__file__).parent.parent / "data" / "jcamp"
ISAS = DATA / "isas"


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.address, timeout=60) as qulab:
        yield qulab


def _parse(client: Client, path: Path, **options: object) -> spectrum_pb2.ParseSpectrumResponse:
    return client.parse_spectrum(
        spectrum_pb2.ParseSpectrumRequest(
            content=path.read_bytes(), options=spectrum_pb2.ParseSpectrumOptions(**options)
        )
    )


def test_three_encodings_of_one_spectrum_agree(client: Client) -> None:
    spectra = [_parse(client, ISAS / f"BRUK{form}.DX").blocks[0] for form in ("AFFN", "PAC", "SQZ")]
    ys = [from_tensor(block.y) for block in spectra]
    assert all(len(y) == 16384 for y in ys)
    np.testing.assert_array_equal(ys[0], ys[1])
    np.testing.assert_array_equal(ys[0], ys[2])
    np.testing.assert_array_equal(from_tensor(spectra[0].x), from_tensor(spectra[2].x))


def test_provenance_and_records(client: Client) -> None:
    answer = _parse(client, ISAS / "LABCALC.DX")
    assert answer.provenance.method == "/qulab.v1.SpectrumService/ParseSpectrum"
    assert answer.provenance.parameters["strict"] == "false"
    (block,) = answer.blocks
    records = {r.label: r.value for r in block.records}
    assert records["TITLE"] == block.title
    text = (ISAS / "LABCALC.DX").read_text(errors="replace")
    npoints = int(re.search(r"##NPOINTS=\s*(\d+)", text).group(1))  # type: ignore[union-attr]
    assert block.points == npoints == block.declared_points


def test_x_axis_converts_by_the_physics(client: Client) -> None:
    wavenumbers = _parse(client, ISAS / "LABCALC.DX").blocks[0]
    nanometres = _parse(client, ISAS / "LABCALC.DX", x_unit="nm").blocks[0]
    assert wavenumbers.x_unit.upper() in ("1/CM", "CM-1", "1/CM ")
    assert nanometres.x_unit == "nm"
    np.testing.assert_allclose(
        from_tensor(nanometres.x), 1e7 / from_tensor(wavenumbers.x), rtol=1e-12
    )
    np.testing.assert_array_equal(from_tensor(nanometres.y), from_tensor(wavenumbers.y))


def test_strict_refuses_a_failed_y_check(client: Client) -> None:
    lines = (ISAS / "BRUKDIF.DX").read_bytes().split(b"\n")
    # Corrupt the Y-check value (the first ordinate) of a DIF data line in the middle.
    data = [k for k, line in enumerate(lines) if line[:1].isdigit()]
    k = data[len(data) // 2]
    head = re.match(rb"^\s*[\d.]+", lines[k])
    assert head is not None
    rest = lines[k][head.end() :]
    first = re.match(rb"\s*[@A-Ia-i]\d*", rest)  # the Y-check, in SQZ form
    assert first is not None, lines[k]
    corrupted = head.group() + b" A999999" + rest[first.end() :]
    lines[k] = corrupted
    content = b"\n".join(lines)
    lenient = client.parse_spectrum(spectrum_pb2.ParseSpectrumRequest(content=content))
    failed = [c for c in lenient.blocks[0].checks if not c.passed]
    assert any(c.name == "Y_CHECKPOINT" for c in failed), failed
    assert lenient.blocks[0].warnings
    with pytest.raises(grpc.RpcError) as caught:
        client.parse_spectrum(
            spectrum_pb2.ParseSpectrumRequest(
                content=content, options=spectrum_pb2.ParseSpectrumOptions(strict=True)
            )
        )
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.info is not None
    assert int(failure.info.metadata["line"]) in (k, k + 1, k + 2)


def test_encode_keeps_per_item_errors(client: Client) -> None:
    x = np.linspace(400.0, 4000.0, 2000)
    y = np.exp(-(((x - 1700.0) / 15.0) ** 2)) + 0.5 * np.exp(-(((x - 2900.0) / 30.0) ** 2))
    request = spectrum_pb2.EncodeSpectrumRequest(
        spectra=[
            spectrum_pb2.SpectrumInput(content=(ISAS / "LABCALC.DX").read_bytes()),
            spectrum_pb2.SpectrumInput(content=b"##TITLE= broken\n##XYDATA=(X++(Y..Y))\n1 x"),
            spectrum_pb2.SpectrumInput(
                arrays=spectrum_pb2.RawSpectrum(x=to_tensor(x), y=to_tensor(y), x_unit="1/cm")
            ),
        ],
        options=spectrum_pb2.EncodeSpectrumOptions(
            grid=spectrum_pb2.SpectrumGrid(start=4000, stop=400, points=512, unit="1/cm"),
            normalization=spectrum_pb2.NORMALIZATION_MAX,
        ),
    )
    answer = client.encode_spectrum(request)
    features = from_tensor(answer.features)
    assert features.shape == (3, 512)
    assert features.dtype == np.float32
    assert [s.code for s in answer.item_status] == [
        code_pb2.OK,
        code_pb2.INVALID_ARGUMENT,
        code_pb2.OK,
    ]
    assert unpack_status(answer.item_status[1]).violations[0].field.startswith("spectra[1]")
    assert np.isnan(features[1]).all()
    assert np.nanmax(np.abs(features[2])) == pytest.approx(1.0)
    positions = sorted(answer.peaks[2].positions)
    assert positions == pytest.approx([1700.0, 2900.0], abs=(4000 - 400) / 511)
    assert list(answer.peaks[1].positions) == []
    assert answer.feature_names[0] == "4000"


def test_convert_units_equals_pint(client: Client) -> None:
    registry = pint.UnitRegistry()
    answer = client.convert_units(
        units_pb2.ConvertUnitsRequest(
            values=[500.0, 1000.0], from_unit="nm", to_unit="1/cm", context="spectroscopy"
        )
    )
    with registry.context("sp"):
        expected = registry.Quantity(np.array([500.0, 1000.0]), "nm").to("1/cm").magnitude
    np.testing.assert_allclose(list(answer.values), expected, rtol=1e-12)
    values = np.random.default_rng(0).uniform(-50, 500, size=(100, 3))
    answer = client.convert_units(
        units_pb2.ConvertUnitsRequest(tensor=to_tensor(values), from_unit="degC", to_unit="K")
    )
    np.testing.assert_allclose(from_tensor(answer.tensor), values + 273.15, rtol=1e-12)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"values": [1.0], "from_unit": "furlongz", "to_unit": "m"}, "from_unit"),
        ({"values": [1.0], "from_unit": "m", "to_unit": "s"}, "to_unit"),
        ({"from_unit": "m", "to_unit": "km"}, "values"),
    ],
)
def test_convert_units_errors_name_the_field(
    client: Client, request_fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.convert_units(units_pb2.ConvertUnitsRequest(**request_fields))  # type: ignore[arg-type]
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in failure.violations] == [field]


def test_unknown_x_unit_names_the_option(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _parse(client, ISAS / "LABCALC.DX", x_unit="furlongs_per_fortnight")
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in failure.violations] == ["options.x_unit"]
    with pytest.raises(grpc.RpcError) as caught:
        _parse(client, ISAS / "LABCALC.DX", x_unit="s")  # 1/cm is not a time
    assert [v.field for v in failure_of(caught.value).violations] == ["options.x_unit"]


def test_a_parsed_block_encodes_like_its_file(client: Client) -> None:
    content = (ISAS / "LABCALC.DX").read_bytes()
    (block,) = client.parse_spectrum(spectrum_pb2.ParseSpectrumRequest(content=content)).blocks
    options = spectrum_pb2.EncodeSpectrumOptions(
        grid=spectrum_pb2.SpectrumGrid(start=3500, stop=500, points=300, unit="1/cm"),
        smoothing=spectrum_pb2.SMOOTHING_SAVITZKY_GOLAY,
        normalization=spectrum_pb2.NORMALIZATION_SNV,
    )
    answer = client.encode_spectrum(
        spectrum_pb2.EncodeSpectrumRequest(
            spectra=[
                spectrum_pb2.SpectrumInput(content=content, block=0),
                spectrum_pb2.SpectrumInput(spectrum=block),
                spectrum_pb2.SpectrumInput(content=content, block=7),
            ],
            options=options,
        )
    )
    features = from_tensor(answer.features)
    np.testing.assert_array_equal(features[0], features[1])
    assert abs(float(features[0].mean())) < 1e-5  # SNV: mean 0
    assert [s.code for s in answer.item_status][2] == code_pb2.INVALID_ARGUMENT
    assert unpack_status(answer.item_status[2]).violations[0].field == "spectra[2].block"
    assert answer.provenance.parameters["normalization"] == "snv"
