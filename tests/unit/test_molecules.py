"""ParseMolecule's domain function against RDKit itself, the corpora, the limits and the
error contract of protos/qulab/v1/molecule.proto."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable

import pytest
import selfies
from rdkit import Chem, rdBase
from rdkit.Chem import Descriptors, rdMolDescriptors

from qulab.server.domain import MoleculeLimits, parse_parameters
from qulab.server.domain import molecules as molecules_module
from qulab.server.domain._rdkit_log import rdkit_log
from qulab.server.domain.molecules import parse_molecule
from qulab.server.errors import InvalidArgument
from qulab.v1 import molecule_pb2

Corpus = list[tuple[str, str]]
ParseOptions = molecule_pb2.ParseOptions

VALENCE_FILES = ("cornercases.smi", "smilesvalence.smi", "explicitvalence.smi")
STEREO_FILES = (
    "tetrahedral.smi",
    "tetrahedral_distantbcdigit.smi",
    "cistrans.smi",
    "cistrans_nitrogen.smi",
)
CHEMBL_FILES = ("chembl_kekule.smi.gz", "chembl_aromatic_by_rdkit_2017.03.3.smi.gz")


def parse(limits: MoleculeLimits | None = None, **request: object) -> molecule_pb2.Molecule:
    message = molecule_pb2.ParseMoleculeRequest(**request)  # type: ignore[arg-type]
    return parse_molecule(message, limits or MoleculeLimits()).molecule


def refusal(limits: MoleculeLimits | None = None, **request: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        parse(limits, **request)
    return caught.value


def _plain(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).replace("_", "")


def rdkit_atom_rows(mol: Chem.Mol) -> list[tuple[object, ...]]:
    return [
        (
            a.GetSymbol(),
            a.GetAtomicNum(),
            a.GetFormalCharge(),
            a.GetIsotope(),
            a.GetIsAromatic(),
            a.GetTotalNumHs(),
            _plain(str(a.GetChiralTag()), "CHI_"),
            a.GetNumRadicalElectrons(),
            a.GetDegree(),
            a.IsInRing(),
        )
        for a in mol.GetAtoms()
    ]


def atom_rows(molecule: molecule_pb2.Molecule) -> list[tuple[object, ...]]:
    return [
        (
            a.symbol,
            a.atomic_number,
            a.formal_charge,
            a.isotope,
            a.aromatic,
            a.total_hydrogens,
            _plain(molecule_pb2.Chirality.Name(a.chirality), "CHIRALITY_"),
            a.radical_electrons,
            a.degree,
            a.in_ring,
        )
        for a in molecule.atoms
    ]


def rdkit_bond_rows(mol: Chem.Mol) -> list[tuple[object, ...]]:
    rows = []
    for b in mol.GetBonds():
        stereo = _plain(str(b.GetStereo()), "STEREO")
        rows.append(
            (
                b.GetBeginAtomIdx(),
                b.GetEndAtomIdx(),
                str(b.GetBondType()),
                b.GetIsAromatic(),
                b.IsInRing(),
                "UNSPECIFIED" if stereo == "NONE" else stereo,
                list(b.GetStereoAtoms()) if stereo != "NONE" else [],
            )
        )
    return rows


def bond_rows(molecule: molecule_pb2.Molecule) -> list[tuple[object, ...]]:
    return [
        (
            b.begin_atom,
            b.end_atom,
            molecule_pb2.BondOrder.Name(b.order).removeprefix("BOND_ORDER_"),
            b.aromatic,
            b.in_ring,
            _plain(molecule_pb2.BondStereo.Name(b.stereo), "BOND_STEREO_"),
            list(b.stereo_atoms),
        )
        for b in molecule.bonds
    ]


def compare_with_rdkit(
    corpus: Corpus, rdkit_mol: Callable[[str], Chem.Mol | None]
) -> tuple[list[str], set[str], set[str]]:
    """Differences from RDKit's own answers, and the lines each side refused."""
    differences: list[str] = []
    ours_refused: set[str] = set()
    rdkit_refused: set[str] = set()
    for smiles, _ in corpus:
        reference = rdkit_mol(smiles)
        if reference is None:
            rdkit_refused.add(smiles)
        try:
            got = parse(smiles=smiles)
        except InvalidArgument as exc:
            ours_refused.add(smiles)
            if exc.violations[0].field != "smiles":
                differences.append(f"{smiles}: error names {exc.violations[0].field!r}")
            continue
        if reference is None:
            continue
        expected = {
            "canonical_smiles": Chem.MolToSmiles(reference),
            "formula": rdMolDescriptors.CalcMolFormula(reference),
            "average_mass": Descriptors.MolWt(reference),
            "monoisotopic_mass": Descriptors.ExactMolWt(reference),
            "num_atoms": reference.GetNumAtoms(),
            "num_heavy_atoms": reference.GetNumHeavyAtoms(),
            "num_bonds": reference.GetNumBonds(),
            "formal_charge": Chem.GetFormalCharge(reference),
            "inchikey": Chem.MolToInchiKey(reference),
        }
        for name, value in expected.items():
            if getattr(got, name) != value:
                differences.append(f"{smiles}: {name} {getattr(got, name)!r} != {value!r}")
        if atom_rows(got) != rdkit_atom_rows(reference):
            differences.append(f"{smiles}: atoms differ")
        if bond_rows(got) != rdkit_bond_rows(reference):
            differences.append(f"{smiles}: bonds differ")
    return differences, ours_refused, rdkit_refused


@pytest.mark.parametrize("name", VALENCE_FILES + STEREO_FILES + CHEMBL_FILES)
def test_corpus_agrees_with_rdkit(
    name: str,
    nextmove: Callable[[str], Corpus],
    rdkit_mol: Callable[[str], Chem.Mol | None],
) -> None:
    corpus = nextmove(name)
    differences, ours_refused, rdkit_refused = compare_with_rdkit(corpus, rdkit_mol)
    assert differences == []
    assert ours_refused == rdkit_refused
    assert len(ours_refused) < len(corpus)


@pytest.mark.parametrize("name", ["cornercases.smi", "smilesvalence.smi"])
def test_corpora_exercise_refusals(
    name: str,
    nextmove: Callable[[str], Corpus],
    rdkit_mol: Callable[[str], Chem.Mol | None],
) -> None:
    # These files hold SMILES RDKit refuses, so the comparison above covers refusals too.
    assert any(rdkit_mol(smiles) is None for smiles, _ in nextmove(name))


@pytest.mark.parametrize("name", STEREO_FILES)
def test_stereo_files_same_id_same_canonical_smiles(
    name: str, nextmove: Callable[[str], Corpus]
) -> None:
    by_id: dict[str, set[str]] = defaultdict(set)
    for smiles, ident in nextmove(name):
        by_id[ident].add(parse(smiles=smiles).canonical_smiles)
    assert all(len(forms) == 1 for forms in by_id.values()), dict(by_id)
    canonical = [next(iter(forms)) for forms in by_id.values()]
    assert len(set(canonical)) == len(canonical), "different ids must be different isomers"
    assert all(any(mark in form for mark in "@/\\") for form in canonical)


def test_selfies_round_trips(selfies_cases: list[str]) -> None:
    # FI(F)F is valid for RDKit but breaks SELFIES' default valence constraints (I: 1).
    cases = [*selfies_cases, "FI(F)F"]
    encoder_failures = 0
    for smiles in cases:
        try:
            first = parse(smiles=smiles)
        except InvalidArgument:
            continue  # RDKit refuses it; test_custom_cases_refused_like_rdkit checks those
        try:
            selfies.encoder(first.canonical_smiles)
        except selfies.EncoderError:
            encoder_failures += 1
            assert first.selfies == ""
            assert any("SELFIES" in warning for warning in first.warnings)
            continue
        again = parse(selfies=first.selfies)
        assert again.canonical_smiles == first.canonical_smiles, smiles
        assert again.selfies == first.selfies
    assert encoder_failures >= 1


def test_custom_cases_refused_like_rdkit(
    selfies_cases: list[str], rdkit_mol: Callable[[str], Chem.Mol | None]
) -> None:
    differences, ours_refused, rdkit_refused = compare_with_rdkit(
        [(smiles, "") for smiles in selfies_cases], rdkit_mol
    )
    assert differences == []
    assert ours_refused == rdkit_refused


def test_selfies_input_reads_like_the_smiles_it_decodes_to() -> None:
    got = parse(selfies="[C][C][=Branch1][C][=O][O]", id="acid")
    assert got.canonical_smiles == Chem.MolToSmiles(Chem.MolFromSmiles("CC(=O)O"))
    assert got.selfies == selfies.encoder(got.canonical_smiles)


def test_response_echoes_id_and_leaves_provenance_to_the_caller() -> None:
    request = molecule_pb2.ParseMoleculeRequest(smiles="CCO", id="item-7")
    response = parse_molecule(request, MoleculeLimits())
    assert response.id == "item-7"
    assert not response.HasField("provenance")
    assert not response.HasField("error")


@pytest.mark.parametrize(
    "smiles",
    [
        "C[C@H](F)Cl",
        "F/C=C/Cl",
        "C[C@@H]1CC[C@H](C)CC1",
        "[13CH3]C(=O)[O-].[Na+]",
        "[CH2]C",
        "C[Pt@SP1](F)(Cl)Br",
        "[NH3]->[Cu+2]",
    ],
)
def test_atoms_and_bonds_mirror_rdkit(
    smiles: str, rdkit_mol: Callable[[str], Chem.Mol | None]
) -> None:
    reference = rdkit_mol(smiles)
    assert reference is not None
    got = parse(smiles=smiles)
    assert [a.index for a in got.atoms] == list(range(reference.GetNumAtoms()))
    assert atom_rows(got) == rdkit_atom_rows(reference)
    assert bond_rows(got) == rdkit_bond_rows(reference)


def test_trans_bond_reports_e_and_its_reference_atoms() -> None:
    got = parse(smiles="F/C=C/F")
    double = next(b for b in got.bonds if b.order == molecule_pb2.BOND_ORDER_DOUBLE)
    assert double.stereo == molecule_pb2.BOND_STEREO_E
    assert sorted(double.stereo_atoms) == [0, 3]


@pytest.mark.parametrize(
    "smiles",
    [
        "C[C@H](F)Cl",
        "C[C@@H](O)[C@H](C)F",
        "C1C[C@H](C)[C@H](C)[C@H](C)C1",  # pseudo-asymmetric centre: lowercase "s"
        "CC(F)Cl",
        "C[C@H](F)CC(Cl)Br",
    ],
)
def test_stereocentres_and_cip_codes_follow_the_new_rdkit_perception(
    smiles: str, rdkit_mol: Callable[[str], Chem.Mol | None]
) -> None:
    reference = rdkit_mol(smiles)
    centres = Chem.FindMolChiralCenters(
        reference, includeUnassigned=True, useLegacyImplementation=False
    )
    got = parse(smiles=smiles)
    assert got.num_stereocenters == len(centres)
    assert got.num_unassigned_stereocenters == sum(label == "?" for _, label in centres)
    expected = {index: label for index, label in centres if label != "?"}
    assert {a.index: a.cip_code for a in got.atoms if a.cip_code} == expected


def test_counts_match_rdkit_for_a_ring_system(
    rdkit_mol: Callable[[str], Chem.Mol | None],
) -> None:
    smiles = "c1ccc2c(c1)cccc2C1CC1"
    reference = rdkit_mol(smiles)
    got = parse(smiles=smiles)
    assert got.num_rings == reference.GetRingInfo().NumRings() == 3
    assert got.num_aromatic_rings == rdMolDescriptors.CalcNumAromaticRings(reference) == 2


def test_mapping_tables_name_every_rdkit_value() -> None:
    # A value RDKit adds later falls back to OTHER/UNSPECIFIED; today's must all be mapped.
    assert set(molecules_module._CHIRALITY) == set(Chem.rdchem.ChiralType.values.values())
    assert set(molecules_module._BOND_STEREO) == set(Chem.rdchem.BondStereo.values.values())
    named = {name.removeprefix("BOND_ORDER_") for name in molecule_pb2.BondOrder.keys()}  # noqa: SIM118 (not a dict)
    mapped = {str(order) for order in molecules_module._BOND_ORDER}
    assert mapped == named - {"UNSPECIFIED"}


def test_other_notations_read_the_same_molecule() -> None:
    aspirin = Chem.MolFromSmiles("CC(=O)Oc1ccccc1C(=O)O")
    expected = Chem.MolToSmiles(aspirin)
    assert parse(molfile=Chem.MolToMolBlock(aspirin)).canonical_smiles == expected
    assert parse(molfile=Chem.MolToV3KMolBlock(aspirin)).canonical_smiles == expected
    from_inchi = parse(inchi=Chem.MolToInchi(aspirin))
    assert from_inchi.canonical_smiles == expected
    assert from_inchi.inchi == Chem.MolToInchi(aspirin)
    assert from_inchi.inchikey == Chem.MolToInchiKey(aspirin)


class TestErrors:
    def test_unbalanced_branch_points_at_the_open_parenthesis(self) -> None:
        error = refusal(smiles="CC(C")
        violation = error.violations[0]
        assert violation.field == "smiles"
        assert violation.reason == "INVALID_SMILES"
        assert "parenthes" in violation.description
        assert violation.position == 2  # 0-based: "CC(C"[2] == "("

    def test_position_is_rdkits_position_made_zero_based(self) -> None:
        smiles = "C" * 100 + "X" + "C" * 100
        violation = refusal(smiles=smiles).violations[0]
        assert violation.position == 100
        assert len(violation.description) < 200  # the long input is not echoed in full

    def test_unknown_element(self) -> None:
        violation = refusal(smiles="C[Xx]C").violations[0]
        assert (violation.field, violation.reason) == ("smiles", "INVALID_SMILES")
        assert violation.position is not None

    def test_valence_failure_is_a_chemistry_problem_with_rdkits_text(self) -> None:
        violation = refusal(smiles="CC(C)(C)(C)(C)C").violations[0]
        assert violation.reason == "CHEMISTRY_PROBLEM"
        assert "AtomValenceException" in violation.description
        assert "Explicit valence for atom # 1 C" in violation.description

    def test_bad_selfies(self) -> None:
        violation = refusal(selfies="[C][Xyz]").violations[0]
        assert (violation.field, violation.reason) == ("selfies", "INVALID_SELFIES")
        assert "[Xyz]" in violation.description

    def test_selfies_that_decodes_to_nothing(self) -> None:
        assert refusal(selfies="CCO").violations[0].field == "selfies"

    def test_bad_inchi(self) -> None:
        violation = refusal(inchi="InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H3x").violations[0]
        assert (violation.field, violation.reason) == ("inchi", "INVALID_INCHI")
        assert violation.description

    def test_molfile_with_a_wrong_counts_line_names_the_line(self) -> None:
        lines = Chem.MolToMolBlock(Chem.MolFromSmiles("CCO")).split("\n")
        lines[3] = "  5  2  0  0  0  0  0  0  0  0999 V2000"  # 5 atoms declared, 3 present
        violation = refusal(molfile="\n".join(lines)).violations[0]
        assert (violation.field, violation.reason) == ("molfile", "INVALID_MOLFILE")
        assert violation.line == 8  # the first bond line, read as a fourth atom
        assert "line 8" in violation.description

    def test_missing_input(self) -> None:
        assert refusal().violations[0].reason == "MISSING_INPUT"

    def test_error_becomes_a_status_with_field_and_position(self) -> None:
        status = refusal(smiles="CC)C").to_status()
        assert status.code == 3  # INVALID_ARGUMENT
        assert "smiles" in status.message
        assert "position 2" in status.message

    def test_rdkit_does_not_write_to_stderr(self, capfd: pytest.CaptureFixture[str]) -> None:
        refusal(smiles="CC(C")
        refusal(smiles="c1cccc1")
        refusal(molfile="garbage\n\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n")
        parse(smiles="C(C)(C)(C)(C)C", options=ParseOptions(sanitize=False))
        assert capfd.readouterr().err == ""

    def test_rdkit_log_goes_back_to_normal_outside_a_call(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        refusal(smiles="CC(C")
        with caplog.at_level("WARNING", logger="rdkit"):
            rdBase.LogWarningMsg("outside any capture")
        assert "outside any capture" in caplog.text


class TestLimits:
    SMALL = MoleculeLimits(
        max_smiles_length=40,
        max_atoms=10,
        max_branch_depth=3,
        max_selfies_tokens=12,
        max_inchi_length=30,
        max_molfile_bytes=400,
    )

    def over(self, limit: str, **request: object) -> None:
        violation = refusal(self.SMALL, **request).violations[0]
        assert violation.reason == "LIMIT_EXCEEDED"
        assert violation.field == next(iter(request))
        assert f"{limit}={getattr(self.SMALL, limit)}" in violation.description

    def test_smiles_length(self) -> None:
        forty = "[CH3]" + "[CH2]" * 6 + "[CH3]"  # 8 atoms in 40 characters
        assert parse(self.SMALL, smiles=forty).num_atoms == 8
        self.over("max_smiles_length", smiles=forty + "O")

    def over_in_text(self, smiles: str) -> None:
        self.over("max_atoms", smiles=smiles)
        # Counted in the text (before RDKit), not in the parsed molecule.
        assert "of the SMILES is 11" in refusal(self.SMALL, smiles=smiles).message

    def test_atoms_counted_in_the_text(self) -> None:
        self.over_in_text("ClCCCCCCCCCBr")  # 11 atoms in 13 characters
        assert parse(self.SMALL, smiles="ClCCCCCCCCBr").num_atoms == 10

    def test_atoms_counted_in_brackets_and_aromatic_rings(self) -> None:
        assert parse(self.SMALL, smiles="c1ccccc1[NH3+].[Cl-].[Na+].O").num_atoms == 10
        self.over_in_text("c1ccccc1[NH3+].[Cl-].[Na+].OC")
        self.over_in_text("[C][C][C][C][C][C][C][C][C][C][C]")

    def test_atoms_counted_after_parsing(self) -> None:
        # InChI has no text estimate: the parsed molecule is counted.
        limits = MoleculeLimits(max_atoms=10)
        violation = refusal(
            limits, inchi="InChI=1S/C11H24/c1-3-5-7-9-11-10-8-6-4-2/h3-11H2,1-2H3"
        ).violations[0]
        assert violation.reason == "LIMIT_EXCEEDED"
        assert violation.description == "atom count is 11, over the limit max_atoms=10"

    def test_branch_depth(self) -> None:
        self.over("max_branch_depth", smiles="C(C(C(C(C)C)C)C)C")
        parse(self.SMALL, smiles="C(C(C(C)C)C)C")

    def test_selfies_tokens(self) -> None:
        self.over("max_selfies_tokens", selfies="[C]" * 13)
        assert parse(self.SMALL, selfies="[C][C][C][C][O][O][O][O][=Branch1][C][=O][N]")

    def test_selfies_atoms(self) -> None:
        self.over("max_atoms", selfies="[C]" * 11)
        parse(self.SMALL, selfies="[C]" * 10)

    def test_inchi_length(self) -> None:
        self.over("max_inchi_length", inchi="InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H3")

    def test_molfile_bytes(self) -> None:
        molfile = Chem.MolToMolBlock(Chem.MolFromSmiles("CCO"))
        assert len(molfile) <= 400
        parse(self.SMALL, molfile=molfile)
        self.over("max_molfile_bytes", molfile=molfile + " " * (401 - len(molfile)))

    def test_molfile_bytes_count_utf8(self) -> None:
        molfile = Chem.MolToMolBlock(Chem.MolFromSmiles("CCO"))
        padded = molfile.replace("\n", "é\n", 1) + " " * (400 - len(molfile) - 1)
        self.over("max_molfile_bytes", molfile=padded)

    def test_molfile_declared_atoms(self) -> None:
        block = Chem.MolToV3KMolBlock(Chem.MolFromSmiles("C" * 11))
        violation = refusal(self.SMALL.__class__(max_atoms=10), molfile=block).violations[0]
        assert violation.reason == "LIMIT_EXCEEDED"
        assert violation.line == 6


class TestHostileInputs:
    """Inputs that crash, exhaust or stall RDKit or selfies are refused before they
    reach them (the process would not survive to raise otherwise)."""

    def test_long_chain(self) -> None:
        assert refusal(smiles="C" * 20_000).reason == "LIMIT_EXCEEDED"

    def test_deep_branches(self) -> None:
        deep = "C(" * 20_000 + "C" + ")" * 20_000
        assert refusal(smiles=deep).reason == "LIMIT_EXCEEDED"
        limits = MoleculeLimits(max_smiles_length=100_000, max_atoms=100_000)
        violation = refusal(limits, smiles=deep).violations[0]
        assert "max_branch_depth" in violation.description
        assert violation.position == 2 * 256 + 1  # the 257th "(" (each "C(" is 2 characters)

    def test_huge_ring(self) -> None:
        assert refusal(smiles="C1" + "C" * 9_998 + "C1").reason == "LIMIT_EXCEEDED"

    def test_endless_selfies(self) -> None:
        assert refusal(selfies="[C]" * 100_000).reason == "LIMIT_EXCEEDED"

    def test_unclosed_brackets(self) -> None:
        assert refusal(smiles="[" * 20_000).reason == "LIMIT_EXCEEDED"

    @pytest.mark.parametrize(
        ("smiles", "position"), [("[65536C]", 0), ("CC[70000CH2]C", 2), ("C[C+200]", 1)]
    )
    def test_values_rdkit_would_silently_change(self, smiles: str, position: int) -> None:
        violation = refusal(smiles=smiles).violations[0]
        assert (violation.field, violation.reason) == ("smiles", "VALUE_OUT_OF_RANGE")
        assert violation.position == position

    def test_selfies_decoding_to_an_out_of_range_isotope(self) -> None:
        violation = refusal(selfies="[C][65536C]").violations[0]
        assert (violation.field, violation.reason) == ("selfies", "VALUE_OUT_OF_RANGE")
        assert violation.position is None  # a SMILES position would mislead

    def test_largest_isotope_is_kept(self) -> None:
        assert parse(smiles="[65535C]").atoms[0].isotope == 65535

    def test_huge_isotope_digit_string(self) -> None:
        assert refusal(smiles="[" + "9" * 5_000 + "C]").reason == "VALUE_OUT_OF_RANGE"


class TestOptions:
    def test_defaults(self) -> None:
        assert parse_parameters(ParseOptions()) == {
            "sanitize": "true",
            "remove_hydrogens": "true",
            "strict": "false",
            "kekulize": "false",
            "isomeric": "true",
        }
        assert parse_parameters(ParseOptions(sanitize=False))["sanitize"] == "false"

    def test_unsanitized_overvalent_carbon_lists_the_problem(self) -> None:
        got = parse(smiles="C(C)(C)(C)(C)C", options=ParseOptions(sanitize=False))
        assert [p.type for p in got.problems] == ["AtomValenceException"]
        assert list(got.problems[0].atom_indices) == [0]
        assert "Explicit valence" in got.problems[0].message
        assert got.num_atoms == 6
        assert got.formula == "C6H15"

    def test_unsanitized_kekulize_problem_names_its_atoms(self) -> None:
        got = parse(smiles="c1cccc1", options=ParseOptions(sanitize=False, kekulize=True))
        assert [p.type for p in got.problems] == ["KekulizeException"]
        assert sorted(got.problems[0].atom_indices) == [0, 1, 2, 3, 4]
        # What needs a Kekulé form stays empty, with a warning each; the rest is filled.
        assert got.smiles == ""
        assert got.inchi == ""
        assert any("Kekul" in warning for warning in got.warnings)
        assert got.canonical_smiles == "c1cccc1"
        assert got.num_rings == 1

    def test_strict_refuses_a_problem(self) -> None:
        options = ParseOptions(sanitize=False, strict=True)
        error = refusal(smiles="C(C)(C)(C)(C)C", options=options)
        assert error.reason == "CHEMISTRY_PROBLEM"
        assert "AtomValenceException" in error.violations[0].description
        assert parse(smiles="CCO", options=options).canonical_smiles == "CCO"

    def test_kekulize_and_isomeric_change_smiles_only(self) -> None:
        smiles = "C[C@H](N)c1ccccc1"
        default = parse(smiles=smiles)
        kekule = parse(smiles=smiles, options=ParseOptions(kekulize=True))
        flat = parse(smiles=smiles, options=ParseOptions(isomeric=False))
        both = parse(smiles=smiles, options=ParseOptions(kekulize=True, isomeric=False))
        reference = Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
        assert default.canonical_smiles == default.smiles == reference
        assert kekule.canonical_smiles == flat.canonical_smiles == reference
        assert both.canonical_smiles == reference
        assert ("c" in kekule.smiles, "@" in kekule.smiles) == (False, True)
        assert ("c" in flat.smiles, "@" in flat.smiles) == (True, False)
        assert ("c" in both.smiles, "@" in both.smiles) == (False, False)
        assert Chem.MolToSmiles(Chem.MolFromSmiles(kekule.smiles)) == reference

    def test_isomeric_off_drops_isotopes(self) -> None:
        assert parse(smiles="[13CH4]", options=ParseOptions(isomeric=False)).smiles == "C"

    def test_remove_hydrogens_off_keeps_hydrogen_atoms(self) -> None:
        kept = parse(smiles="[H]OC([H])([H])[H]", options=ParseOptions(remove_hydrogens=False))
        assert kept.num_atoms == 6
        assert kept.num_heavy_atoms == 2
        assert parse(smiles="[H]OC([H])([H])[H]").num_atoms == 2


def test_importing_the_package_loads_neither_rdkit_nor_grpc() -> None:
    code = (
        "import sys, qulab.server.domain as d; d.MoleculeLimits();"
        "assert 'rdkit' not in sys.modules, 'rdkit';"
        "import qulab.server.domain.molecules, qulab.server.domain.molecule_features;"
        "assert 'grpc' not in sys.modules, 'grpc'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _atoms_and_bonds_one_by_one(mol: Chem.Mol) -> molecule_pb2.Molecule:
    """Atoms and bonds as one `add(**fields)` per item from RDKit's getters: the reference
    for the wire-level shortcut of `molecules._add_atoms_and_bonds`."""
    out = molecule_pb2.Molecule()
    ring_atoms = {index for ring in mol.GetRingInfo().AtomRings() for index in ring}
    ring_bonds = {index for ring in mol.GetRingInfo().BondRings() for index in ring}
    for bond in mol.GetBonds():
        stereo = molecules_module._BOND_STEREO.get(bond.GetStereo(), 0)
        added = out.bonds.add(
            begin_atom=bond.GetBeginAtomIdx(),
            end_atom=bond.GetEndAtomIdx(),
            order=molecules_module._BOND_ORDER.get(bond.GetBondType(), 0),
            aromatic=bond.GetIsAromatic(),
            in_ring=bond.GetIdx() in ring_bonds,
            stereo=stereo,
        )
        if stereo:
            added.stereo_atoms.extend(bond.GetStereoAtoms())
    for atom in mol.GetAtoms():
        out.atoms.add(
            index=atom.GetIdx(),
            symbol=atom.GetSymbol(),
            atomic_number=atom.GetAtomicNum(),
            formal_charge=atom.GetFormalCharge(),
            isotope=atom.GetIsotope(),
            aromatic=atom.GetIsAromatic(),
            total_hydrogens=atom.GetTotalNumHs(),
            chirality=molecules_module._CHIRALITY.get(
                atom.GetChiralTag(), molecule_pb2.CHIRALITY_OTHER
            ),
            radical_electrons=atom.GetNumRadicalElectrons(),
            degree=atom.GetDegree(),
            in_ring=atom.GetIdx() in ring_atoms,
        )
    return out


def _labelled_dummies() -> Chem.Mol:
    mol = Chem.MolFromSmiles("*C(*)[C@@H](F)[13CH2][O-]")
    mol.GetAtomWithIdx(0).SetProp("dummyLabel", "R1")
    mol.GetAtomWithIdx(2).SetProp("dummyLabel", "R12" * 500)  # an Atom of over 1 kB
    return mol


def _possible_centres(mol: Chem.Mol) -> set[int]:
    return {atom.GetIdx() for atom in mol.GetAtoms() if atom.HasProp("_ChiralityPossible")}


def _unsanitized(smiles: str) -> Chem.Mol:
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    mol.UpdatePropertyCache(strict=False)
    Chem.GetSymmSSSR(mol)
    return mol


class TestShortcuts:
    """The cheaper routes `parse_molecule` takes give what the straightforward ones give."""

    SPECIAL_MOLECULES: tuple[Callable[[], Chem.Mol], ...] = (
        # Indices past the tables of pre-serialized index fields, stereo at the far end.
        lambda: Chem.MolFromSmiles("C" * 1_100 + "[C@H](F)/C=C/[13CH2][N+](C)(C)C"),
        _labelled_dummies,
        lambda: Chem.MolFromSmiles("[NH3]->[Cu+2]"),
        lambda: Chem.MolFromSmiles("C[Pt@SP1](F)(Cl)Br"),
        lambda: Chem.MolFromSmiles("[CH2]C.[CH]C.[C]"),
        lambda: _unsanitized("[2H]C([2H])([2H])[H]"),
        lambda: _unsanitized("C(C)(C)(C)(C)C"),
        lambda: _unsanitized("c1cccc1"),
    )

    def test_atoms_and_bonds_are_the_messages_built_field_by_field(
        self, nextmove: Callable[[str], Corpus], rdkit_mol: Callable[[str], Chem.Mol | None]
    ) -> None:
        names = (*VALENCE_FILES, *STEREO_FILES, *CHEMBL_FILES)
        mols = [rdkit_mol(smiles) for name in names for smiles, _ in nextmove(name)[:500]]
        mols += [make() for make in self.SPECIAL_MOLECULES]
        checked = 0
        for mol in mols:
            if mol is None:
                continue
            got = molecule_pb2.Molecule()
            molecules_module._add_atoms_and_bonds(mol, got)
            expected = _atoms_and_bonds_one_by_one(mol)
            assert got == expected, Chem.MolToSmiles(mol)
            assert got.SerializeToString(deterministic=True) == expected.SerializeToString(
                deterministic=True
            )
            checked += 1
        assert checked > 1_000

    def test_stereocentres_are_those_find_mol_chiral_centers_reports(
        self, nextmove: Callable[[str], Corpus], rdkit_mol: Callable[[str], Chem.Mol | None]
    ) -> None:
        smiles = [s for name in STEREO_FILES for s, _ in nextmove(name)]
        smiles += [s for s, _ in nextmove(CHEMBL_FILES[1])[:300]]
        smiles += ["C1CC(C)C(C)C(C)C1", "C1C[C@H](C)[C@H](C)[C@H](C)C1", "CC(F)Cl"]
        legacy = Chem.GetUseLegacyStereoPerception()
        for text in smiles:
            mol = rdkit_mol(text)
            if mol is None:
                continue
            reference = Chem.Mol(mol)
            expected = Chem.FindMolChiralCenters(
                reference,
                includeUnassigned=True,
                includeCIP=False,
                useLegacyImplementation=False,
            )
            got = molecules_module._stereocentres(mol)
            assert got == [(index, label != "?") for index, label in expected], text
            # The same marks left on the molecule.
            assert _possible_centres(mol) == _possible_centres(reference), text
            assert Chem.GetUseLegacyStereoPerception() == legacy

    def test_rdkit_log_captures_nest(self) -> None:
        with rdkit_log() as outer:
            rdBase.LogWarningMsg("first")
            with rdkit_log() as inner:
                rdBase.LogWarningMsg("second")
            rdBase.LogWarningMsg("third")
        assert [line.strip() for line in outer] == ["first", "third"]
        assert [line.strip() for line in inner] == ["second"]
