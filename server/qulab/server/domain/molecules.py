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
from rdkit.Chem import Descriptors, rdCIPLabeler, rdinchi, rdMolDescriptors, rdqueries

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
_TETRAHEDRAL = Chem.StereoType.Atom_Tetrahedral


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


# Atoms and bonds reach the response as protobuf wire bytes merged in one call
# (`MergeFromString`, which parses in C) instead of one Python-level `add(**fields)` per atom
# and bond. Everything but an atom's index and a bond's two atom indices takes few distinct
# values, so those fields are serialized by protobuf itself once per distinct combination and
# the bytes reused; the index fields come from tables serialized by protobuf too. Only the
# framing of each Atom and Bond inside Molecule (field tag, length) is written here. Field
# order on the wire means nothing to a parser: the merged message is the one `add` built, and
# serializes to the same bytes.
def _varint(value: int) -> bytes:
    """A non-negative int as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_LENGTH_DELIMITED = 2
_ATOMS_TAG: Final = _varint(molecule_pb2.Molecule.ATOMS_FIELD_NUMBER << 3 | _LENGTH_DELIMITED)
_BONDS_TAG: Final = _varint(molecule_pb2.Molecule.BONDS_FIELD_NUMBER << 3 | _LENGTH_DELIMITED)
_TABLED = 1024  # indices (and lengths) below this come from the tables
_VARINTS: Final = tuple(_varint(n) for n in range(_TABLED))
_ATOM_INDEX: Final = tuple(molecule_pb2.Atom(index=n).SerializeToString() for n in range(_TABLED))
_BEGIN_ATOM: Final = tuple(
    molecule_pb2.Bond(begin_atom=n).SerializeToString() for n in range(_TABLED)
)
_END_ATOM: Final = tuple(molecule_pb2.Bond(end_atom=n).SerializeToString() for n in range(_TABLED))
# Serialized Atom and Bond messages without their index fields, by field values; cleared when
# full (a few hundred entries cover typical inputs).
_MAX_CACHED = 4096
_atom_bytes: dict[tuple[Any, ...], bytes] = {}
_bond_bytes: dict[tuple[Any, ...], bytes] = {}
# Element symbols by atomic number, as RDKit's `GetSymbol` returned them: RDKit takes the
# symbol of any atom but a dummy (atomic number 0, which may carry a label) from its periodic
# table, so its first answer for an atomic number is every answer.
_symbols: dict[int, str] = {}


def _unusual_atoms_query() -> Any:
    """A query matching the atoms with a chiral tag, a charge, an isotope or unpaired
    electrons: every other atom has the defaults (unspecified, 0, 0, 0) for those four."""
    query: Any = rdqueries.HasChiralTagQueryAtom()
    for other in (
        rdqueries.FormalChargeEqualsQueryAtom(0, negate=True),
        rdqueries.IsotopeEqualsQueryAtom(0, negate=True),
        rdqueries.NumRadicalElectronsEqualsQueryAtom(0, negate=True),
    ):
        query.ExpandQuery(other, Chem.rdchem.CompositeQueryType.COMPOSITE_OR)
    return query


_UNUSUAL_ATOMS: Final = _unusual_atoms_query()
# (formal charge, isotope, chirality, radical electrons) of an atom the query does not match.
_USUAL: Final = (0, 0, molecule_pb2.CHIRALITY_UNSPECIFIED, 0)


def _serialized(cache: dict[tuple[Any, ...], bytes], key: tuple[Any, ...], message: Any) -> bytes:
    body: bytes = message.SerializeToString()
    if len(cache) >= _MAX_CACHED:
        cache.clear()
    cache[key] = body
    return body


def _framed(tag: bytes, body: bytes) -> tuple[bytes, bytes, bytes]:
    """An embedded message on the wire: field tag, length, the message's bytes."""
    size = len(body)
    return tag, _VARINTS[size] if size < _TABLED else _varint(size), body


def _add_atoms_and_bonds(mol: Any, out: molecule_pb2.Molecule) -> None:
    # The hot loop of a parse. Every RDKit getter is a Boost.Python call (one returning an
    # enum costs as much as four others), so what one call can tell for the whole molecule is
    # not asked of each atom: whether it has rings at all, and which few atoms have a charge,
    # an isotope, unpaired electrons or a chiral tag. Degrees come from the bond list, atoms
    # and bonds are fetched by index (RDKit's Python-level sequences iterate slower), and ring
    # membership is asked per atom and bond (`IsInRing`: some ring of the ring information
    # holds it), which costs less than turning RDKit's ring lists into Python tuples.
    any_rings = mol.GetRingInfo().NumRings() > 0
    num_atoms = mol.GetNumAtoms()
    degree = [0] * num_atoms
    bond_wire: list[bytes] = []
    get_bond = mol.GetBondWithIdx
    for index in range(mol.GetNumBonds()):
        bond = get_bond(index)
        begin, end = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        degree[begin] += 1
        degree[end] += 1
        stereo = _BOND_STEREO.get(bond.GetStereo(), _UNKNOWN_STEREO)
        bond_key: tuple[Any, ...] = (
            _BOND_ORDER.get(bond.GetBondType(), _UNKNOWN_ORDER),
            bond.GetIsAromatic(),
            any_rings and bond.IsInRing(),
            stereo,
        )
        body = _bond_bytes.get(bond_key)
        if body is None:
            order, aromatic, in_ring, bond_stereo = bond_key
            body = _serialized(
                _bond_bytes,
                bond_key,
                molecule_pb2.Bond(
                    order=order, aromatic=aromatic, in_ring=in_ring, stereo=bond_stereo
                ),
            )
        if begin < _TABLED and end < _TABLED:
            body = _BEGIN_ATOM[begin] + _END_ATOM[end] + body
        else:
            body = molecule_pb2.Bond(begin_atom=begin, end_atom=end).SerializeToString() + body
        if stereo != molecule_pb2.BOND_STEREO_UNSPECIFIED:
            stereo_atoms = molecule_pb2.Bond(stereo_atoms=bond.GetStereoAtoms())
            body += stereo_atoms.SerializeToString()
        bond_wire += _framed(_BONDS_TAG, body)
    unusual: dict[int, tuple[int, int, int, int]] = {}
    found = mol.GetAtomsMatchingQuery(_UNUSUAL_ATOMS)
    for position in range(len(found)):  # indexing: iterating RDKit's sequence costs more
        atom = found[position]
        unusual[atom.GetIdx()] = (
            atom.GetFormalCharge(),
            atom.GetIsotope(),
            _CHIRALITY.get(atom.GetChiralTag(), _UNKNOWN_CHIRALITY),
            atom.GetNumRadicalElectrons(),
        )
    atom_wire: list[bytes] = []
    get_atom = mol.GetAtomWithIdx
    for index in range(num_atoms):
        atom = get_atom(index)
        number = atom.GetAtomicNum()
        symbol = _symbols.get(number) if number else None
        if symbol is None:
            symbol = atom.GetSymbol()
            if number:
                _symbols[number] = symbol
        atom_key: tuple[Any, ...] = (
            symbol,
            number,
            atom.GetIsAromatic(),
            atom.GetTotalNumHs(),
            degree[index],
            any_rings and atom.IsInRing(),
            unusual.get(index, _USUAL),
        )
        body = _atom_bytes.get(atom_key)
        if body is None:
            _, _, aromatic, hydrogens, neighbours, in_ring, rare = atom_key
            charge, isotope, chirality, radicals = rare
            body = _serialized(
                _atom_bytes,
                atom_key,
                molecule_pb2.Atom(
                    symbol=symbol,
                    atomic_number=number,
                    formal_charge=charge,
                    isotope=isotope,
                    aromatic=aromatic,
                    total_hydrogens=hydrogens,
                    chirality=chirality,
                    radical_electrons=radicals,
                    degree=neighbours,
                    in_ring=in_ring,
                ),
            )
        if index < _TABLED:
            body = _ATOM_INDEX[index] + body
        else:
            body = molecule_pb2.Atom(index=index).SerializeToString() + body
        atom_wire += _framed(_ATOMS_TAG, body)
    # Appends to `atoms`, then to `bonds`, in index order: what one `add` per item did.
    out.MergeFromString(b"".join(atom_wire) + b"".join(bond_wire))


def _stereocentres(mol: Any) -> list[tuple[int, bool]]:
    """Tetrahedral stereocentres as `(atom index, assigned)`, in RDKit's order: what
    `FindMolChiralCenters(includeUnassigned=True, includeCIP=False,
    useLegacyImplementation=False)` reports (a label other than "?" for an assigned one),
    including its marking of unassigned centres, without its Python-level iteration over
    RDKit's result vector (indexing the vector is several times cheaper)."""
    legacy = Chem.GetUseLegacyStereoPerception()
    Chem.SetUseLegacyStereoPerception(False)
    try:
        found = Chem.FindPotentialStereo(mol)
        centres = []
        for position in range(len(found)):
            item = found[position]
            if item.type == _TETRAHEDRAL:
                index = item.centeredOn
                assigned = bool(item.specified)
                if not assigned:
                    mol.GetAtomWithIdx(index).SetIntProp("_ChiralityPossible", 1)
                centres.append((index, assigned))
    finally:
        Chem.SetUseLegacyStereoPerception(legacy)
    return centres


def _add_stereocentres(mol: Any, out: molecule_pb2.Molecule, warnings: list[str]) -> None:
    centres = _computed(warnings, "stereocentres", _stereocentres, mol)
    if not centres:
        return
    assigned = [index for index, is_assigned in centres if is_assigned]
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
