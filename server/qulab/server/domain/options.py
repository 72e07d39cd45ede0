"""Effective option values for molecule requests: the defaults the proto documents,
applied in one place. Light to import (no RDKit): servicers use it for provenance."""

from __future__ import annotations

from dataclasses import dataclass

from qulab.v1 import molecule_pb2

__all__ = [
    "DEFAULT_N_BITS",
    "DEFAULT_RADIUS",
    "FingerprintSettings",
    "ParseSettings",
    "encode_parameters",
    "fingerprint_settings",
    "parse_parameters",
    "parse_settings",
]

DEFAULT_RADIUS = 2
DEFAULT_N_BITS = 2048


@dataclass(frozen=True, slots=True)
class ParseSettings:
    sanitize: bool
    remove_hydrogens: bool
    strict: bool
    kekulize: bool
    isomeric: bool


@dataclass(frozen=True, slots=True)
class FingerprintSettings:
    radius: int
    n_bits: int
    counts: bool
    include_chirality: bool


def parse_settings(options: molecule_pb2.ParseOptions) -> ParseSettings:
    return ParseSettings(
        sanitize=options.sanitize if options.HasField("sanitize") else True,
        remove_hydrogens=(
            options.remove_hydrogens if options.HasField("remove_hydrogens") else True
        ),
        strict=options.strict,
        kekulize=options.kekulize,
        isomeric=options.isomeric if options.HasField("isomeric") else True,
    )


def fingerprint_settings(options: molecule_pb2.FingerprintOptions) -> FingerprintSettings:
    return FingerprintSettings(
        radius=options.radius if options.HasField("radius") else DEFAULT_RADIUS,
        n_bits=options.n_bits if options.HasField("n_bits") else DEFAULT_N_BITS,
        counts=options.counts,
        include_chirality=options.include_chirality,
    )


def _as_text(settings: ParseSettings | FingerprintSettings) -> dict[str, str]:
    return {name: str(getattr(settings, name)).lower() for name in settings.__dataclass_fields__}


def parse_parameters(options: molecule_pb2.ParseOptions) -> dict[str, str]:
    """Every effective parse option, defaults applied, as text (for Provenance.parameters)."""
    return _as_text(parse_settings(options))


def encode_parameters(request: molecule_pb2.EncodeMoleculeRequest) -> dict[str, str]:
    """Every effective encode parameter, defaults applied, as text."""
    return {
        "encoding": molecule_pb2.MoleculeEncoding.Name(request.encoding),
        **_as_text(fingerprint_settings(request.fingerprint)),
        **_as_text(parse_settings(request.parse_options)),
    }
