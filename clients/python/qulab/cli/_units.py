"""`qulab convert`: values from one unit to another (UnitService.ConvertUnits)."""

from __future__ import annotations

import argparse
import json

from qulab.cli._common import ExitCode, UsageError, connect
from qulab.v1 import units_pb2

__all__ = ["register"]

_CONTEXTS = {"spectroscopy": "spectroscopy", "none": ""}


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = commands.add_parser(
        "convert",
        parents=[common],
        help="convert values between units: qulab convert 500 nm 1/cm",
        description="Convert one or more values from a unit to another (pint's unit syntax). "
        "The spectroscopy context relates wavelength, wavenumber, frequency and energy.",
    )
    parser.add_argument(
        "arguments", nargs="+", metavar="VALUE... FROM TO", help="values, then the two units"
    )
    parser.add_argument(
        "--context",
        choices=tuple(_CONTEXTS),
        default="spectroscopy",
        help="pint context (default: spectroscopy)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> ExitCode:
    *texts, from_unit, to_unit = args.arguments
    if not texts:
        raise UsageError("give at least one value, then the unit it is in and the unit wanted")
    try:
        values = [float(t) for t in texts]
    except ValueError as error:
        raise UsageError(f"not a number: {error}") from None
    request = units_pb2.ConvertUnitsRequest(
        values=values, from_unit=from_unit, to_unit=to_unit, context=_CONTEXTS[args.context]
    )
    with connect(args) as client:
        answer = client.convert_units(request)
    for value, converted in zip(values, answer.values, strict=True):
        if getattr(args, "json", False):
            row = {
                "input": value,
                "from_unit": answer.from_unit,
                "to_unit": answer.to_unit,
                "value": converted,
            }
            print(json.dumps(row))
        else:
            print(f"{value:.15g} {from_unit} = {converted:.15g} {to_unit}")
    return ExitCode.OK
