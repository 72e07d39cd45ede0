"""Fixtures for the molecule tests: the corpora under tests/data/smiles (see SOURCES.md)
and RDKit's own reading of a SMILES, the reference the service must agree with."""

from __future__ import annotations

import csv
import functools
import gzip
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from rdkit import Chem, rdBase

from qulab.server.domain import MoleculeLimits

SMILES_DATA = Path(__file__).resolve().parent.parent / "data" / "smiles"
# Every 23rd line of the ~47k ChEMBL molecules: about 2,000 spread over the whole file
# (its first lines are tiny molecules only), always the same ones.
CHEMBL_STRIDE = 23
CHEMBL_SUBSET = 2_000

Corpus = list[tuple[str, str]]


@functools.cache
def _read_smi(name: str) -> Corpus:
    path = SMILES_DATA / "nextmove" / name
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    pairs = []
    for line in raw.decode("ascii").splitlines():
        if line.strip():
            smiles, _, ident = line.strip().partition(" ")
            pairs.append((smiles, ident.strip()))
    if name.startswith("chembl_"):
        return pairs[::CHEMBL_STRIDE][:CHEMBL_SUBSET]
    return pairs


@pytest.fixture(scope="session")
def nextmove() -> Callable[[str], Corpus]:
    """(SMILES, id) pairs of a NextMove file; for ChEMBL files, the deterministic sample."""
    return _read_smi


@pytest.fixture(scope="session")
def selfies_cases() -> list[str]:
    """SMILES of the selfies project's hand-picked hard cases."""
    text = (SMILES_DATA / "selfies" / "custom_cases.csv").read_text()
    return [row["smiles"] for row in csv.DictReader(io.StringIO(text))]


@pytest.fixture(scope="session")
def rdkit_mol() -> Callable[[str], Chem.Mol | None]:
    """RDKit's own reading of a SMILES (default arguments), with its log kept quiet."""

    def read(smiles: str) -> Chem.Mol | None:
        with rdBase.BlockLogs():
            return Chem.MolFromSmiles(smiles)

    return read


@pytest.fixture
def limits() -> MoleculeLimits:
    return MoleculeLimits()
