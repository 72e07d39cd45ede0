"""EncodeMolecule's domain function against RDKit's generators called directly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import Descriptors, MACCSkeys, rdFingerprintGenerator

from qulab.server.domain import MoleculeLimits, encode_parameters
from qulab.server.domain import molecule_features as features_module
from qulab.server.domain._molecule_reader import read_molecule
from qulab.server.domain.molecule_features import encode_molecules
from qulab.server.domain.options import parse_settings
from qulab.server.errors import InvalidArgument
from qulab.tensors import from_tensor
from qulab.v1 import common_pb2, molecule_pb2

Corpus = list[tuple[str, str]]
E = molecule_pb2.MoleculeEncoding
FINGERPRINTS = (
    E.MOLECULE_ENCODING_MORGAN,
    E.MOLECULE_ENCODING_FEATURE_MORGAN,
    E.MOLECULE_ENCODING_ATOM_PAIR,
    E.MOLECULE_ENCODING_TOPOLOGICAL_TORSION,
)
SAMPLE_SIZE = 60


@pytest.fixture(scope="module")
def sample(nextmove: Callable[[str], Corpus]) -> list[str]:
    """ChEMBL molecules RDKit reads, every 30th of the test subset: small to large."""
    readable = []
    for smiles, _ in nextmove("chembl_kekule.smi.gz")[::30]:
        if Chem.MolFromSmiles(smiles) is not None:
            readable.append(smiles)
    return readable[:SAMPLE_SIZE]


def encode(
    smiles: list[str], encoding: int, **fingerprint: Any
) -> molecule_pb2.EncodeMoleculeResponse:
    request = molecule_pb2.EncodeMoleculeRequest(
        molecules=[molecule_pb2.MoleculeInput(smiles=s) for s in smiles],
        encoding=encoding,  # type: ignore[arg-type]
        fingerprint=molecule_pb2.FingerprintOptions(**fingerprint),
    )
    return encode_molecules(request, MoleculeLimits())


def rdkit_generator(encoding: int, radius: int, n_bits: int, chirality: bool) -> Any:
    if encoding == E.MOLECULE_ENCODING_MORGAN:
        return rdFingerprintGenerator.GetMorganGenerator(
            radius=radius, fpSize=n_bits, includeChirality=chirality
        )
    if encoding == E.MOLECULE_ENCODING_FEATURE_MORGAN:
        return rdFingerprintGenerator.GetMorganGenerator(
            radius=radius,
            fpSize=n_bits,
            includeChirality=chirality,
            atomInvariantsGenerator=rdFingerprintGenerator.GetMorganFeatureAtomInvGen(),
        )
    if encoding == E.MOLECULE_ENCODING_ATOM_PAIR:
        return rdFingerprintGenerator.GetAtomPairGenerator(
            fpSize=n_bits, includeChirality=chirality
        )
    return rdFingerprintGenerator.GetTopologicalTorsionGenerator(
        fpSize=n_bits, includeChirality=chirality
    )


@pytest.mark.parametrize("encoding", FINGERPRINTS, ids=E.Name)
@pytest.mark.parametrize(
    ("radius", "n_bits", "chirality"), [(2, 2048, False), (3, 1024, True), (1, 8, False)]
)
def test_bit_fingerprints_equal_rdkits(
    sample: list[str], encoding: int, radius: int, n_bits: int, chirality: bool
) -> None:
    response = encode(sample, encoding, radius=radius, n_bits=n_bits, include_chirality=chirality)
    generator = rdkit_generator(encoding, radius, n_bits, chirality)
    expected = np.stack(
        [generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in sample]
    ).astype(np.uint8)
    got = from_tensor(response.features)
    assert response.features.dtype == common_pb2.DTYPE_UINT8
    assert got.shape == (len(sample), n_bits)
    assert np.array_equal(got, expected)
    assert set(np.unique(got)) <= {0, 1}
    assert list(response.feature_names) == []
    assert [s.code for s in response.item_status] == [0] * len(sample)


@pytest.mark.parametrize("encoding", FINGERPRINTS, ids=E.Name)
def test_count_fingerprints_equal_rdkits(sample: list[str], encoding: int) -> None:
    response = encode(sample, encoding, counts=True, include_chirality=True)
    generator = rdkit_generator(encoding, 2, 2048, True)
    expected = np.stack(
        [generator.GetCountFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in sample]
    )
    got = from_tensor(response.features)
    assert response.features.dtype == common_pb2.DTYPE_INT32
    assert got.dtype == np.int32
    assert np.array_equal(got, expected)
    assert got.max() > 1


def test_default_fingerprint_is_morgan_radius_2_of_2048_bits(sample: list[str]) -> None:
    got = from_tensor(encode(sample, E.MOLECULE_ENCODING_MORGAN).features)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    expected = np.stack([generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in sample])
    assert np.array_equal(got, expected)


def test_maccs_keys_equal_rdkits(sample: list[str]) -> None:
    # counts and n_bits do not apply to MACCS keys: always 167 bits.
    response = encode(sample, E.MOLECULE_ENCODING_MACCS, counts=True, n_bits=64)
    got = from_tensor(response.features)
    expected = np.zeros((len(sample), 167), dtype=np.uint8)
    for row, smiles in zip(expected, sample, strict=True):
        DataStructs.ConvertToNumpyArray(MACCSkeys.GenMACCSKeys(Chem.MolFromSmiles(smiles)), row)
    assert response.features.dtype == common_pb2.DTYPE_UINT8
    assert got.shape == (len(sample), 167)
    assert np.array_equal(got, expected)
    assert not got[:, 0].any()


def test_descriptors_equal_rdkits(sample: list[str]) -> None:
    subset = sample[:20]
    response = encode(subset, E.MOLECULE_ENCODING_RDKIT_DESCRIPTORS)
    names = [name for name, _ in Descriptors._descList]
    assert list(response.feature_names) == names
    got = from_tensor(response.features)
    assert response.features.dtype == common_pb2.DTYPE_FLOAT64
    assert got.shape == (len(subset), len(names))
    expected = np.array(
        [
            [
                np.nan if v is None else v
                for v in Descriptors.CalcMolDescriptors(Chem.MolFromSmiles(s)).values()
            ]
            for s in subset
        ],
        dtype=np.float64,
    )
    assert np.array_equal(got, expected, equal_nan=True)


def row_is(row: npt.NDArray[Any], value: float) -> bool:
    return bool(np.all(np.isnan(row))) if np.isnan(value) else bool(np.all(row == value))


@pytest.mark.parametrize(
    ("encoding", "empty"),
    [
        (E.MOLECULE_ENCODING_MORGAN, 0.0),
        (E.MOLECULE_ENCODING_MACCS, 0.0),
        (E.MOLECULE_ENCODING_RDKIT_DESCRIPTORS, np.nan),
    ],
    ids=["morgan", "maccs", "descriptors"],
)
def test_failed_items_keep_order_and_empty_rows(encoding: int, empty: float) -> None:
    request = molecule_pb2.EncodeMoleculeRequest(
        molecules=[
            molecule_pb2.MoleculeInput(smiles="CCO"),
            molecule_pb2.MoleculeInput(smiles="CC(C"),
            molecule_pb2.MoleculeInput(selfies="[C][=C][C][=C][C][=C][Ring1][=Branch1]"),
            molecule_pb2.MoleculeInput(smiles="C" * 5_000),
            molecule_pb2.MoleculeInput(),
            molecule_pb2.MoleculeInput(inchi="InChI=1S/CH4/h1H4"),
        ],
        encoding=encoding,  # type: ignore[arg-type]
    )
    response = encode_molecules(request, MoleculeLimits())
    got = from_tensor(response.features)
    assert [s.code for s in response.item_status] == [0, 3, 0, 3, 3, 0]
    assert "molecules[1].smiles" in response.item_status[1].message
    assert "position 2" in response.item_status[1].message
    assert "molecules[3].smiles" in response.item_status[3].message
    assert "max_atoms" in response.item_status[3].message
    assert "molecules[4].input" in response.item_status[4].message
    for failed in (1, 3, 4):
        assert row_is(got[failed], empty)
    good = encode(["CCO", "c1ccccc1", "C"], encoding)
    assert np.array_equal(
        got[[0, 2, 5]], from_tensor(good.features), equal_nan=bool(np.isnan(empty))
    )


def test_item_status_carries_the_parse_error_details() -> None:
    response = encode(["CC(C"], E.MOLECULE_ENCODING_MORGAN)
    status = response.item_status[0]
    with pytest.raises(InvalidArgument) as caught:
        read_molecule(
            "smiles",
            "CC(C",
            parse_settings(molecule_pb2.ParseOptions()),
            MoleculeLimits(),
            field_path="molecules[0].smiles",
        )
    assert status == caught.value.to_status()
    assert len(status.details) == 2  # BadRequest and ErrorInfo


def test_parse_options_apply_to_encoding() -> None:
    request = molecule_pb2.EncodeMoleculeRequest(
        molecules=[molecule_pb2.MoleculeInput(smiles="C(C)(C)(C)(C)C")],
        encoding=E.MOLECULE_ENCODING_MORGAN,
        parse_options=molecule_pb2.ParseOptions(sanitize=False),
    )
    response = encode_molecules(request, MoleculeLimits())
    assert response.item_status[0].code == 0
    assert from_tensor(response.features).any()
    request.parse_options.strict = True
    assert encode_molecules(request, MoleculeLimits()).item_status[0].code == 3


def test_no_molecules_gives_an_empty_matrix() -> None:
    response = encode([], E.MOLECULE_ENCODING_RDKIT_DESCRIPTORS)
    assert from_tensor(response.features).shape == (0, len(Descriptors._descList))
    assert len(response.item_status) == 0


@pytest.mark.parametrize(
    ("encoding", "fingerprint", "field"),
    [
        (E.MOLECULE_ENCODING_UNSPECIFIED, {}, "encoding"),
        (99, {}, "encoding"),
        (E.MOLECULE_ENCODING_MORGAN, {"n_bits": 4}, "fingerprint.n_bits"),
        (E.MOLECULE_ENCODING_ATOM_PAIR, {"n_bits": 65_537}, "fingerprint.n_bits"),
        (E.MOLECULE_ENCODING_FEATURE_MORGAN, {"radius": 9}, "fingerprint.radius"),
    ],
)
def test_request_level_errors_raise(encoding: int, fingerprint: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        encode(["CCO"], encoding, **fingerprint)
    assert caught.value.violations[0].field == field


def test_options_that_do_not_apply_are_not_checked() -> None:
    response = encode(["CCO"], E.MOLECULE_ENCODING_MACCS, n_bits=4, radius=9)
    assert from_tensor(response.features).shape == (1, 167)


def test_generators_are_built_once_per_option_set(sample: list[str]) -> None:
    features_module._generator.cache_clear()
    for _ in range(3):
        encode(sample[:2], E.MOLECULE_ENCODING_FEATURE_MORGAN, radius=3)
    info = features_module._generator.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_encode_parameters_apply_defaults() -> None:
    request = molecule_pb2.EncodeMoleculeRequest(encoding=E.MOLECULE_ENCODING_MORGAN)
    parameters = encode_parameters(request)
    assert parameters["encoding"] == "MOLECULE_ENCODING_MORGAN"
    assert parameters["radius"] == "2"
    assert parameters["n_bits"] == "2048"
    assert parameters["sanitize"] == "true"


def test_an_item_rdkit_cannot_encode_fails_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    real = features_module._maccs_into

    def refuse_two_atoms(mol: Any, row: npt.NDArray[Any]) -> None:
        if mol.GetNumAtoms() == 2:
            raise RuntimeError("Invariant Violation")
        real(mol, row)

    monkeypatch.setattr(features_module, "_maccs_into", refuse_two_atoms)
    response = encode(["C", "CC", "CCC"], E.MOLECULE_ENCODING_MACCS)
    assert [s.code for s in response.item_status] == [0, 3, 0]
    assert "ENCODING_FAILED" in str(response.item_status[1].details)
    assert "molecules[1].smiles" in response.item_status[1].message
    got = from_tensor(response.features)
    assert not got[1].any()
    assert got[2].any()


def test_a_bug_met_by_one_item_is_internal_for_that_item_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = features_module._descriptors_into

    def broken_for_two_atoms(mol: Any, row: npt.NDArray[Any]) -> None:
        real(mol, row)
        if mol.GetNumAtoms() == 2:
            raise ZeroDivisionError("a bug")

    monkeypatch.setattr(features_module, "_descriptors_into", broken_for_two_atoms)
    response = encode(["C", "CC", "CCC"], E.MOLECULE_ENCODING_RDKIT_DESCRIPTORS)
    assert [s.code for s in response.item_status] == [0, 13, 0]  # 13: INTERNAL
    got = from_tensor(response.features)
    assert np.isnan(got[1]).all()
    assert not np.isnan(got[2]).all()
    assert "a bug" not in response.item_status[1].message
    error_id = response.item_status[1].message.rsplit("error id ", 1)[1].rstrip(")")
    assert error_id in caplog.text
    assert "ZeroDivisionError" in caplog.text


def test_chunk_field_paths_count_from_first_index() -> None:
    request = molecule_pb2.EncodeMoleculeRequest(
        molecules=[molecule_pb2.MoleculeInput(smiles="C"), molecule_pb2.MoleculeInput()],
        encoding=E.MOLECULE_ENCODING_MORGAN,
    )
    response = encode_molecules(request, MoleculeLimits(), first_index=500)
    assert "molecules[501].input" in response.item_status[1].message
