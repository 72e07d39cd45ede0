from buf.validate import validate_pb2 as _validate_pb2
from google.rpc import status_pb2 as _status_pb2
from qulab.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Chirality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHIRALITY_UNSPECIFIED: _ClassVar[Chirality]
    CHIRALITY_TETRAHEDRAL_CW: _ClassVar[Chirality]
    CHIRALITY_TETRAHEDRAL_CCW: _ClassVar[Chirality]
    CHIRALITY_OTHER: _ClassVar[Chirality]
    CHIRALITY_TETRAHEDRAL: _ClassVar[Chirality]
    CHIRALITY_ALLENE: _ClassVar[Chirality]
    CHIRALITY_SQUARE_PLANAR: _ClassVar[Chirality]
    CHIRALITY_TRIGONAL_BIPYRAMIDAL: _ClassVar[Chirality]
    CHIRALITY_OCTAHEDRAL: _ClassVar[Chirality]

class BondOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BOND_ORDER_UNSPECIFIED: _ClassVar[BondOrder]
    BOND_ORDER_SINGLE: _ClassVar[BondOrder]
    BOND_ORDER_DOUBLE: _ClassVar[BondOrder]
    BOND_ORDER_TRIPLE: _ClassVar[BondOrder]
    BOND_ORDER_QUADRUPLE: _ClassVar[BondOrder]
    BOND_ORDER_AROMATIC: _ClassVar[BondOrder]
    BOND_ORDER_DATIVE: _ClassVar[BondOrder]

class BondStereo(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BOND_STEREO_UNSPECIFIED: _ClassVar[BondStereo]
    BOND_STEREO_ANY: _ClassVar[BondStereo]
    BOND_STEREO_Z: _ClassVar[BondStereo]
    BOND_STEREO_E: _ClassVar[BondStereo]
    BOND_STEREO_CIS: _ClassVar[BondStereo]
    BOND_STEREO_TRANS: _ClassVar[BondStereo]
    BOND_STEREO_ATROP_CW: _ClassVar[BondStereo]
    BOND_STEREO_ATROP_CCW: _ClassVar[BondStereo]

class MoleculeEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MOLECULE_ENCODING_UNSPECIFIED: _ClassVar[MoleculeEncoding]
    MOLECULE_ENCODING_MORGAN: _ClassVar[MoleculeEncoding]
    MOLECULE_ENCODING_FEATURE_MORGAN: _ClassVar[MoleculeEncoding]
    MOLECULE_ENCODING_MACCS: _ClassVar[MoleculeEncoding]
    MOLECULE_ENCODING_ATOM_PAIR: _ClassVar[MoleculeEncoding]
    MOLECULE_ENCODING_TOPOLOGICAL_TORSION: _ClassVar[MoleculeEncoding]
    MOLECULE_ENCODING_RDKIT_DESCRIPTORS: _ClassVar[MoleculeEncoding]
CHIRALITY_UNSPECIFIED: Chirality
CHIRALITY_TETRAHEDRAL_CW: Chirality
CHIRALITY_TETRAHEDRAL_CCW: Chirality
CHIRALITY_OTHER: Chirality
CHIRALITY_TETRAHEDRAL: Chirality
CHIRALITY_ALLENE: Chirality
CHIRALITY_SQUARE_PLANAR: Chirality
CHIRALITY_TRIGONAL_BIPYRAMIDAL: Chirality
CHIRALITY_OCTAHEDRAL: Chirality
BOND_ORDER_UNSPECIFIED: BondOrder
BOND_ORDER_SINGLE: BondOrder
BOND_ORDER_DOUBLE: BondOrder
BOND_ORDER_TRIPLE: BondOrder
BOND_ORDER_QUADRUPLE: BondOrder
BOND_ORDER_AROMATIC: BondOrder
BOND_ORDER_DATIVE: BondOrder
BOND_STEREO_UNSPECIFIED: BondStereo
BOND_STEREO_ANY: BondStereo
BOND_STEREO_Z: BondStereo
BOND_STEREO_E: BondStereo
BOND_STEREO_CIS: BondStereo
BOND_STEREO_TRANS: BondStereo
BOND_STEREO_ATROP_CW: BondStereo
BOND_STEREO_ATROP_CCW: BondStereo
MOLECULE_ENCODING_UNSPECIFIED: MoleculeEncoding
MOLECULE_ENCODING_MORGAN: MoleculeEncoding
MOLECULE_ENCODING_FEATURE_MORGAN: MoleculeEncoding
MOLECULE_ENCODING_MACCS: MoleculeEncoding
MOLECULE_ENCODING_ATOM_PAIR: MoleculeEncoding
MOLECULE_ENCODING_TOPOLOGICAL_TORSION: MoleculeEncoding
MOLECULE_ENCODING_RDKIT_DESCRIPTORS: MoleculeEncoding

class ParseOptions(_message.Message):
    __slots__ = ("sanitize", "remove_hydrogens", "strict", "kekulize", "isomeric")
    SANITIZE_FIELD_NUMBER: _ClassVar[int]
    REMOVE_HYDROGENS_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    KEKULIZE_FIELD_NUMBER: _ClassVar[int]
    ISOMERIC_FIELD_NUMBER: _ClassVar[int]
    sanitize: bool
    remove_hydrogens: bool
    strict: bool
    kekulize: bool
    isomeric: bool
    def __init__(self, sanitize: _Optional[bool] = ..., remove_hydrogens: _Optional[bool] = ..., strict: _Optional[bool] = ..., kekulize: _Optional[bool] = ..., isomeric: _Optional[bool] = ...) -> None: ...

class MoleculeInput(_message.Message):
    __slots__ = ("smiles", "selfies", "inchi", "molfile")
    SMILES_FIELD_NUMBER: _ClassVar[int]
    SELFIES_FIELD_NUMBER: _ClassVar[int]
    INCHI_FIELD_NUMBER: _ClassVar[int]
    MOLFILE_FIELD_NUMBER: _ClassVar[int]
    smiles: str
    selfies: str
    inchi: str
    molfile: str
    def __init__(self, smiles: _Optional[str] = ..., selfies: _Optional[str] = ..., inchi: _Optional[str] = ..., molfile: _Optional[str] = ...) -> None: ...

class ParseMoleculeRequest(_message.Message):
    __slots__ = ("smiles", "selfies", "inchi", "molfile", "options", "id")
    SMILES_FIELD_NUMBER: _ClassVar[int]
    SELFIES_FIELD_NUMBER: _ClassVar[int]
    INCHI_FIELD_NUMBER: _ClassVar[int]
    MOLFILE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    smiles: str
    selfies: str
    inchi: str
    molfile: str
    options: ParseOptions
    id: str
    def __init__(self, smiles: _Optional[str] = ..., selfies: _Optional[str] = ..., inchi: _Optional[str] = ..., molfile: _Optional[str] = ..., options: _Optional[_Union[ParseOptions, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class Atom(_message.Message):
    __slots__ = ("index", "symbol", "atomic_number", "formal_charge", "isotope", "aromatic", "total_hydrogens", "chirality", "cip_code", "radical_electrons", "degree", "in_ring")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ATOMIC_NUMBER_FIELD_NUMBER: _ClassVar[int]
    FORMAL_CHARGE_FIELD_NUMBER: _ClassVar[int]
    ISOTOPE_FIELD_NUMBER: _ClassVar[int]
    AROMATIC_FIELD_NUMBER: _ClassVar[int]
    TOTAL_HYDROGENS_FIELD_NUMBER: _ClassVar[int]
    CHIRALITY_FIELD_NUMBER: _ClassVar[int]
    CIP_CODE_FIELD_NUMBER: _ClassVar[int]
    RADICAL_ELECTRONS_FIELD_NUMBER: _ClassVar[int]
    DEGREE_FIELD_NUMBER: _ClassVar[int]
    IN_RING_FIELD_NUMBER: _ClassVar[int]
    index: int
    symbol: str
    atomic_number: int
    formal_charge: int
    isotope: int
    aromatic: bool
    total_hydrogens: int
    chirality: Chirality
    cip_code: str
    radical_electrons: int
    degree: int
    in_ring: bool
    def __init__(self, index: _Optional[int] = ..., symbol: _Optional[str] = ..., atomic_number: _Optional[int] = ..., formal_charge: _Optional[int] = ..., isotope: _Optional[int] = ..., aromatic: _Optional[bool] = ..., total_hydrogens: _Optional[int] = ..., chirality: _Optional[_Union[Chirality, str]] = ..., cip_code: _Optional[str] = ..., radical_electrons: _Optional[int] = ..., degree: _Optional[int] = ..., in_ring: _Optional[bool] = ...) -> None: ...

class Bond(_message.Message):
    __slots__ = ("begin_atom", "end_atom", "order", "aromatic", "in_ring", "stereo", "stereo_atoms")
    BEGIN_ATOM_FIELD_NUMBER: _ClassVar[int]
    END_ATOM_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    AROMATIC_FIELD_NUMBER: _ClassVar[int]
    IN_RING_FIELD_NUMBER: _ClassVar[int]
    STEREO_FIELD_NUMBER: _ClassVar[int]
    STEREO_ATOMS_FIELD_NUMBER: _ClassVar[int]
    begin_atom: int
    end_atom: int
    order: BondOrder
    aromatic: bool
    in_ring: bool
    stereo: BondStereo
    stereo_atoms: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, begin_atom: _Optional[int] = ..., end_atom: _Optional[int] = ..., order: _Optional[_Union[BondOrder, str]] = ..., aromatic: _Optional[bool] = ..., in_ring: _Optional[bool] = ..., stereo: _Optional[_Union[BondStereo, str]] = ..., stereo_atoms: _Optional[_Iterable[int]] = ...) -> None: ...

class ChemistryProblem(_message.Message):
    __slots__ = ("type", "message", "atom_indices")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATOM_INDICES_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    atom_indices: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., atom_indices: _Optional[_Iterable[int]] = ...) -> None: ...

class Molecule(_message.Message):
    __slots__ = ("canonical_smiles", "smiles", "selfies", "inchi", "inchikey", "formula", "average_mass", "monoisotopic_mass", "formal_charge", "num_atoms", "num_heavy_atoms", "num_bonds", "num_rings", "num_aromatic_rings", "num_stereocenters", "num_unassigned_stereocenters", "atoms", "bonds", "problems", "warnings")
    CANONICAL_SMILES_FIELD_NUMBER: _ClassVar[int]
    SMILES_FIELD_NUMBER: _ClassVar[int]
    SELFIES_FIELD_NUMBER: _ClassVar[int]
    INCHI_FIELD_NUMBER: _ClassVar[int]
    INCHIKEY_FIELD_NUMBER: _ClassVar[int]
    FORMULA_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_MASS_FIELD_NUMBER: _ClassVar[int]
    MONOISOTOPIC_MASS_FIELD_NUMBER: _ClassVar[int]
    FORMAL_CHARGE_FIELD_NUMBER: _ClassVar[int]
    NUM_ATOMS_FIELD_NUMBER: _ClassVar[int]
    NUM_HEAVY_ATOMS_FIELD_NUMBER: _ClassVar[int]
    NUM_BONDS_FIELD_NUMBER: _ClassVar[int]
    NUM_RINGS_FIELD_NUMBER: _ClassVar[int]
    NUM_AROMATIC_RINGS_FIELD_NUMBER: _ClassVar[int]
    NUM_STEREOCENTERS_FIELD_NUMBER: _ClassVar[int]
    NUM_UNASSIGNED_STEREOCENTERS_FIELD_NUMBER: _ClassVar[int]
    ATOMS_FIELD_NUMBER: _ClassVar[int]
    BONDS_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    canonical_smiles: str
    smiles: str
    selfies: str
    inchi: str
    inchikey: str
    formula: str
    average_mass: float
    monoisotopic_mass: float
    formal_charge: int
    num_atoms: int
    num_heavy_atoms: int
    num_bonds: int
    num_rings: int
    num_aromatic_rings: int
    num_stereocenters: int
    num_unassigned_stereocenters: int
    atoms: _containers.RepeatedCompositeFieldContainer[Atom]
    bonds: _containers.RepeatedCompositeFieldContainer[Bond]
    problems: _containers.RepeatedCompositeFieldContainer[ChemistryProblem]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, canonical_smiles: _Optional[str] = ..., smiles: _Optional[str] = ..., selfies: _Optional[str] = ..., inchi: _Optional[str] = ..., inchikey: _Optional[str] = ..., formula: _Optional[str] = ..., average_mass: _Optional[float] = ..., monoisotopic_mass: _Optional[float] = ..., formal_charge: _Optional[int] = ..., num_atoms: _Optional[int] = ..., num_heavy_atoms: _Optional[int] = ..., num_bonds: _Optional[int] = ..., num_rings: _Optional[int] = ..., num_aromatic_rings: _Optional[int] = ..., num_stereocenters: _Optional[int] = ..., num_unassigned_stereocenters: _Optional[int] = ..., atoms: _Optional[_Iterable[_Union[Atom, _Mapping]]] = ..., bonds: _Optional[_Iterable[_Union[Bond, _Mapping]]] = ..., problems: _Optional[_Iterable[_Union[ChemistryProblem, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ParseMoleculeResponse(_message.Message):
    __slots__ = ("id", "molecule", "provenance", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    MOLECULE_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    molecule: Molecule
    provenance: _common_pb2.Provenance
    error: _status_pb2.Status
    def __init__(self, id: _Optional[str] = ..., molecule: _Optional[_Union[Molecule, _Mapping]] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class FingerprintOptions(_message.Message):
    __slots__ = ("radius", "n_bits", "counts", "include_chirality")
    RADIUS_FIELD_NUMBER: _ClassVar[int]
    N_BITS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CHIRALITY_FIELD_NUMBER: _ClassVar[int]
    radius: int
    n_bits: int
    counts: bool
    include_chirality: bool
    def __init__(self, radius: _Optional[int] = ..., n_bits: _Optional[int] = ..., counts: _Optional[bool] = ..., include_chirality: _Optional[bool] = ...) -> None: ...

class EncodeMoleculeRequest(_message.Message):
    __slots__ = ("molecules", "encoding", "fingerprint", "parse_options")
    MOLECULES_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PARSE_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    molecules: _containers.RepeatedCompositeFieldContainer[MoleculeInput]
    encoding: MoleculeEncoding
    fingerprint: FingerprintOptions
    parse_options: ParseOptions
    def __init__(self, molecules: _Optional[_Iterable[_Union[MoleculeInput, _Mapping]]] = ..., encoding: _Optional[_Union[MoleculeEncoding, str]] = ..., fingerprint: _Optional[_Union[FingerprintOptions, _Mapping]] = ..., parse_options: _Optional[_Union[ParseOptions, _Mapping]] = ...) -> None: ...

class EncodeMoleculeResponse(_message.Message):
    __slots__ = ("features", "feature_names", "item_status", "provenance")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    ITEM_STATUS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    features: _common_pb2.Tensor
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    item_status: _containers.RepeatedCompositeFieldContainer[_status_pb2.Status]
    provenance: _common_pb2.Provenance
    def __init__(self, features: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., feature_names: _Optional[_Iterable[str]] = ..., item_status: _Optional[_Iterable[_Union[_status_pb2.Status, _Mapping]]] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ...) -> None: ...
