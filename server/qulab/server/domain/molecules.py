"""ParseMolecule: one molecule in, its canonical forms, properties, atoms and bonds out.

Pure functions of protobuf messages, run in worker processes; no gRPC here. Bad input
raises `InvalidArgument` (see `_molecule_reader` for the reasons); a value RDKit cannot
compute for a molecule it did read is left empty with an entry in `Molecule.warnings`.

Choices the proto leaves open:
- Stereocentres come from RDKit's new stereo perception
  (`FindMolChiralCenters(useLegacyImplementation=False)`), and CIP labels from the new CIP
  labeller (`rdCIPLabeler.AssignCIPLabels`, a true CIP ranking, unlike the legacy
  approximation the SMILES reader applies), run on the assigned stereocentres only and
  bounded so that highly symmetric molecules cannot stall a worker.
- InChIKey is derived from the InChI string (`InchiToInchiKey`) rather than by
  `MolToInchiKey`, which would run the InChI algorithm a second time; the key is the same.
"""

from __future__ import annotations

from typing import Any, Final

import selfies
from rdkit import Chem
from rdkit.Chem import Descriptors, rdCIPLabeler, rdinchi, rdMolDescriptors

from qulab.server.domain._molecule_limits import MoleculeLimits
from qulab.server.domain._molecule_reader import Reading, input_of, read_molecule
from qulab.server.domain._rdkit_log import rdkit_log
from qulab.server.domain.options import ParseSettings, parse_parameters, parse_settings
from qulab.v1 import molecule_pb2

__all__ = ["MoleculeLimits", "parse_molecule", "parse_parameters"]

# RDKit's generated stubs leave out the names Descriptors defines at import time.
_DESCRIPTORS: Any = Descriptors
_ChiralType = Chem.rdchem.ChiralType
_BondType = Chem.rdchem.BondType
_BondStereo = Chem.rdchem.BondStereo

_CHIRALITY: Final[dict[Any, int]] = {
    _ChiralType.CHI_UNSPECIFIED: molecule_pb2.CHIRALITY_UNSPECIFIED,
    _ChiralType.CHI_TETRAHEDRAL_CW: molecule_pb2.CHIRALITY_TETRAHEDRAL_CW,
    _ChiralType.CHI_TETRAHEDRAL_CCW: molecule_pb2.CHIRALITY_TETRAHEDRAL_CCW,
    _ChiralType.CHI_OTHER: molecule_pb2.CHIRALITY_OTHER,
    _ChiralType.CHI_TETRAHEDRAL: molecule_pb2.CHIRALITY_TETRAHEDRAL,
    _ChiralType.CHI_ALLENE: molecule_pb2.CHIRALITY_ALLENE,
    _ChiralType.CHI_SQUAREPLANAR: molecule_pb2.CHIRALITY_SQUARE_PLANAR,
    _ChiralType.CHI_TRIGONALBIPYRAMIDAL: molecule_pb2.CHIRALITY_TRIGONAL_BIPYRAMIDAL,
    _ChiralType.CHI_OCTAHEDRAL: molecule_pb2.CHIRALITY_OCTAHEDRAL,
}
# Orders the proto does not name (ionic, hydrogen, "one and a half", zero, the directed
# dative variants...) fall back to BOND_ORDER_UNSPECIFIED.
_BOND_ORDER: Final[dict[Any, int]] = {
    _BondType.SINGLE: molecule_pb2.BOND_ORDER_SINGLE,
    _BondType.DOUBLE: molecule_pb2.BOND_ORDER_DOUBLE,
    _BondType.TRIPLE: molecule_pb2.BOND_ORDER_TRIPLE,
    _BondType.QUADRUPLE: molecule_pb2.BOND_ORDER_QUADRUPLE,
    _BondType.AROMATIC: molecule_pb2.BOND_ORDER_AROMATIC,
    _BondType.DATIVE: molecule_pb2.BOND_ORDER_DATIVE,
}
_BOND_STEREO: Final[dict[Any, int]] = {
    _BondStereo.STEREONONE: molecule_pb2.BOND_STEREO_UNSPECIFIED,
    _BondStereo.STEREOANY: molecule_pb2.BOND_STEREO_ANY,
    _BondStereo.STEREOZ: molecule_pb2.BOND_STEREO_Z,
    _BondStereo.STEREOE: molecule_pb2.BOND_STEREO_E,
    _BondStereo.STEREOCIS: molecule_pb2.BOND_STEREO_CIS,
    _BondStereo.STEREOTRANS: molecule_pb2.BOND_STEREO_TRANS,
    _BondStereo.STEREOATROPCW: molecule_pb2.BOND_STEREO_ATROP_CW,
    _BondStereo.STEREOATROPCCW: molecule_pb2.BOND_STEREO_ATROP_CCW,
}
_UNKNOWN_CHIRALITY = molecule_pb2.CHIRALITY_OTHER
_UNKNOWN_ORDER = molecule_pb2.BOND_ORDER_UNSPECIFIED
_UNKNOWN_STEREO = molecule_pb2.BOND_STEREO_UNSPECIFIED
# RDKit's documentation: 1,250,000 comparisons take about a second, and most molecules
# need fewer than 10,000.
_CIP_MAX_ITERATIONS = 1_250_000
_UNASSIGNED = "?"


def parse_molecule(
    request: molecule_pb2.ParseMoleculeRequest, limits: MoleculeLimits
) -> molecule_pb2.ParseMoleculeResponse:
    """Read the request's molecule and describe it.

    The response echoes `id` and carries `molecule`; provenance and `error` are the
    caller's to set. Raises `InvalidArgument` naming the input field ("smiles",
    "selfies", "inchi" or "molfile") when the input is over a limit or unreadable.
    """
    settings = parse_settings(request.options)
    kind, text = input_of(request)
    reading = read_molecule(kind, text, settings, limits, field_path=kind)
    response = molecule_pb2.ParseMoleculeResponse(id=request.id)
    _describe(reading, settings, response.molecule)
    return response


def _describe(reading: Reading, settings: ParseSettings, out: molecule_pb2.Molecule) -> None:
    """Fill `out` from a molecule `read_molecule` returned. May change the molecule's
    stereo bookkeeping (CIP labels), so derive nothing else from it afterwards."""
    mol = reading.mol
    warnings = reading.warnings
    with rdkit_log() as log:
        canonical = _computed(warnings, "canonical SMILES", Chem.MolToSmiles, mol) or ""
        out.canonical_smiles = canonical
        out.smiles = _written_smiles(mol, settings, canonical, warnings)
        out.selfies = _selfies(canonical, warnings)
        out.inchi, out.inchikey = _inchi(mol, warnings)
        out.formula = _computed(warnings, "formula", rdMolDescriptors.CalcMolFormula, mol) or ""
        out.average_mass = _computed(warnings, "average mass", _DESCRIPTORS.MolWt, mol) or 0.0
        out.monoisotopic_mass = (
            _computed(warnings, "monoisotopic mass", _DESCRIPTORS.ExactMolWt, mol) or 0.0
        )
        out.formal_charge = Chem.GetFormalCharge(mol)
        out.num_atoms = mol.GetNumAtoms()
        out.num_heavy_atoms = mol.GetNumHeavyAtoms()
        out.num_bonds = mol.GetNumBonds()
        out.num_rings = mol.GetRingInfo().NumRings()
        out.num_aromatic_rings = (
            _computed(warnings, "aromatic rings", rdMolDescriptors.CalcNumAromaticRings, mol) or 0
        )
        _add_atoms_and_bonds(mol, out)
        _add_stereocentres(mol, out, warnings)
    for line in log:
        # RDKit often logs the reason of an exception already turned into a warning.
        if line.strip() and not any(line.strip() in known for known in warnings):
            warnings.append(line.strip())
    out.problems.extend(reading.problems)
    out.warnings.extend(dict.fromkeys(warnings))


def _computed(warnings: list[str], what: str, compute: Any, *args: Any, **kwargs: Any) -> Any:
    """`compute(*args, **kwargs)`, or None with a warning when RDKit refuses (which only
    happens for molecules read without sanitization)."""
    try:
        return compute(*args, **kwargs)
    except (RuntimeError, ValueError) as exc:
        warnings.append(f"{what} could not be computed: {exc}")
        return None


def _kekule_smiles(mol: Any, isomeric: bool) -> str:
    kekule = Chem.Mol(mol)
    Chem.Kekulize(kekule, clearAromaticFlags=True)
    return str(Chem.MolToSmiles(kekule, isomericSmiles=isomeric))


def _written_smiles(mol: Any, settings: ParseSettings, canonical: str, warnings: list[str]) -> str:
    if settings.kekulize:
        return _computed(warnings, "Kekulé SMILES", _kekule_smiles, mol, settings.isomeric) or ""
    if settings.isomeric:
        return canonical
    return _computed(warnings, "SMILES", Chem.MolToSmiles, mol, isomericSmiles=False) or ""


def _selfies(canonical: str, warnings: list[str]) -> str:
    if not canonical:
        return ""
    try:
        return str(selfies.encoder(canonical))
    except selfies.EncoderError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "encoder error"
        warnings.append(f"SELFIES cannot express this molecule: {reason}")
        return ""


def _inchi(mol: Any, warnings: list[str]) -> tuple[str, str]:
    # rdinchi rather than Chem.MolToInchi: it returns the InChI library's return code and
    # message instead of writing them to RDKit's log.
    try:
        inchi, code, message, _, _ = rdinchi.MolToInchi(mol, "/AuxNone")
    except (RuntimeError, ValueError) as exc:
        warnings.append(f"InChI could not be computed: {exc}")
        return "", ""
    # 0 is success and 1 success with a warning; anything else is an error.
    if code not in (0, 1) or not inchi:
        warnings.append(
            f"InChI cannot express this molecule: {message or f'InChI return code {code}'}"
        )
        return "", ""
    if message:
        warnings.append(f"InChI: {message}")
    return str(inchi), str(rdinchi.InchiToInchiKey(inchi))


def _add_atoms_and_bonds(mol: Any, out: molecule_pb2.Molecule) -> None:
    # The hot loop of a parse: every RDKit getter is a Boost.Python call, so what one call
    # on the ring information or the bond list can tell (ring membership, degree) is not
    # asked of each atom and bond, and atoms are fetched by index (iterating GetAtoms()
    # goes through a slower Python-level sequence).
    rings = mol.GetRingInfo()
    ring_atoms = {index for ring in rings.AtomRings() for index in ring}
    ring_bonds = {index for ring in rings.BondRings() for index in ring}
    degree = [0] * mol.GetNumAtoms()
    add_bond = out.bonds.add
    for index in range(mol.GetNumBonds()):
        bond = mol.GetBondWithIdx(index)
        begin, end = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        degree[begin] += 1
        degree[end] += 1
        stereo = _BOND_STEREO.get(bond.GetStereo(), _UNKNOWN_STEREO)
        added = add_bond(
            begin_atom=begin,
            end_atom=end,
            order=_BOND_ORDER.get(bond.GetBondType(), _UNKNOWN_ORDER),
            aromatic=bond.GetIsAromatic(),
            in_ring=index in ring_bonds,
            stereo=stereo,
        )
        if stereo != molecule_pb2.BOND_STEREO_UNSPECIFIED:
            added.stereo_atoms.extend(bond.GetStereoAtoms())
    add_atom = out.atoms.add
    for index, neighbours in enumerate(degree):
        atom = mol.GetAtomWithIdx(index)
        add_atom(
            index=index,
            symbol=atom.GetSymbol(),
            atomic_number=atom.GetAtomicNum(),
            formal_charge=atom.GetFormalCharge(),
            isotope=atom.GetIsotope(),
            aromatic=atom.GetIsAromatic(),
            total_hydrogens=atom.GetTotalNumHs(),
            chirality=_CHIRALITY.get(atom.GetChiralTag(), _UNKNOWN_CHIRALITY),
            radical_electrons=atom.GetNumRadicalElectrons(),
            degree=neighbours,
            in_ring=index in ring_atoms,
        )


def _add_stereocentres(mol: Any, out: molecule_pb2.Molecule, warnings: list[str]) -> None:
    centres = _computed(
        warnings,
        "stereocentres",
        Chem.FindMolChiralCenters,
        mol,
        includeUnassigned=True,
        includeCIP=False,
        useLegacyImplementation=False,
    )
    if not centres:
        return
    assigned = [index for index, label in centres if label != _UNASSIGNED]
    out.num_stereocenters = len(centres)
    out.num_unassigned_stereocenters = len(centres) - len(assigned)
    if not assigned:
        return
    atoms = [mol.GetAtomWithIdx(index) for index in assigned]
    for atom in atoms:
        # The SMILES reader's legacy perception may have left its own label here.
        atom.ClearProp("_CIPCode")
    try:
        rdCIPLabeler.AssignCIPLabels(
            mol,
            atomsToLabel=assigned,
            bondsToLabel=[],
            maxRecursiveIterations=_CIP_MAX_ITERATIONS,
        )
    except (RuntimeError, ValueError) as exc:
        warnings.append(f"CIP labels could not be assigned: {exc}")
        return
    for index, atom in zip(assigned, atoms, strict=True):
        if atom.HasProp("_CIPCode"):
            out.atoms[index].cip_code = atom.GetProp("_CIPCode")
