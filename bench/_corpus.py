"""The molecules every benchmark uses, so that their rates can be compared.

The first lines of NextMove's ChEMBL set in Kekulé form (`SMILES<whitespace>id` per line),
each SMILES once, keeping only those RDKit reads: every call should succeed, so an error
in a benchmark is a finding rather than noise. The file is sorted by size, so its first
lines are small molecules (3 to about 20 heavy atoms); rates here are higher than on
drug-like sets and per-call overheads weigh more.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from rdkit import Chem, rdBase

__all__ = ["ROOT", "corpus_path", "unique_smiles"]

ROOT = Path(__file__).resolve().parent.parent
_NAME = "chembl_kekule.smi.gz"
_CANDIDATES = (
    ROOT / "tests" / "data" / "smiles" / "nextmove" / _NAME,
    ROOT / "tests" / "data" / "smiles" / _NAME,
    ROOT.parent / "shared" / "corpora" / "smiles" / "nextmove" / _NAME,
)


def corpus_path() -> Path:
    """The first of the known places that holds the file."""
    for path in _CANDIDATES:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{_NAME} is in none of: {', '.join(map(str, _CANDIDATES))}")


def unique_smiles(count: int) -> list[str]:
    """Up to `count` unique SMILES that RDKit reads, in file order."""
    found: dict[str, None] = {}
    with gzip.open(corpus_path(), "rt", encoding="ascii") as lines, rdBase.BlockLogs():
        for line in lines:
            smiles = line.split(maxsplit=1)[0] if line.strip() else ""
            if smiles and smiles not in found and Chem.MolFromSmiles(smiles) is not None:
                found[smiles] = None
                if len(found) == count:
                    break
    return list(found)
