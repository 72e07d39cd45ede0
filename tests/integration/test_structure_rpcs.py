"""StructureService through a real server: answers equal gemmi's and pymatgen's readings,
provenance names the libraries, errors carry the field, block, tag and line, files convert
both ways, encodings keep per-item errors, and hostile files are refused without harm."""

from __future__ import annotations

import importlib.metadata
import random
import warnings
from collections.abc import Iterator
from pathlib import Path

import gemmi
import grpc
import numpy as np
import pytest
from google.rpc import code_pb2

from qulab.client import Client, from_tensor
from qulab.v1 import structure_pb2
from tests.conftest import RunningServer
from tests.integration._status import failure_of, unpack_status

DATA = Path(__file__).parent.parent / "data"
PBTE = DATA / "cif" / "diffpy" / "PbTe.cif"
MULTI_BLOCK = DATA / "cif" / "cod-tools" / "2-entries-AMCSD-cifdata.cif"
FE3O4 = DATA / "poscar" / "pymatgen" / "POSCAR_Fe3O4"
CONTCAR_MD = DATA / "poscar" / "pymatgen" / "CONTCAR.MD"


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.address, timeout=60) as qulab:
        yield qulab


def _parse(client: Client, path: Path, **options: object) -> structure_pb2.ParseStructureResponse:
    return client.parse_structure(
        structure_pb2.ParseStructureRequest(
            content=path.read_bytes(), options=structure_pb2.StructureOptions(**options)
        )
    )


def _gemmi_cell_sites(path: Path) -> tuple[tuple[float, ...], list[tuple[str, float]]]:
    small = gemmi.read_small_structure(str(path))
    sites = sorted((s.element.name, round(s.occ, 6)) for s in small.get_all_unit_cell_sites())
    return small.cell.parameters, sites


def test_parse_cif_matches_gemmi(client: Client) -> None:
    answer = _parse(client, PBTE)
    (structure,) = answer.structures
    parameters, sites = _gemmi_cell_sites(PBTE)
    lattice = structure.lattice
    got = (lattice.a, lattice.b, lattice.c, lattice.alpha, lattice.beta, lattice.gamma)
    assert got == pytest.approx(parameters, abs=1e-9)
    assert sorted((s.element, round(s.occupancy, 6)) for s in structure.sites) == sites
    assert structure.volume == pytest.approx(gemmi.UnitCell(*parameters).volume, rel=1e-12)
    assert structure.declared_space_group.resolved_number == 225
    assert structure.detected_symmetry.number == 225
    frac = from_tensor(structure.fractional_coordinates)
    cart = from_tensor(structure.cartesian_coordinates)
    matrix = from_tensor(lattice.matrix)
    assert frac.shape == (len(structure.sites), 3)
    np.testing.assert_allclose(cart, frac @ matrix, atol=1e-12)
    np.testing.assert_allclose(frac[0], structure.sites[0].fractional)


def test_provenance_names_the_structure_libraries(client: Client) -> None:
    answer = _parse(client, PBTE, symmetry_tolerance=0.1)
    p = answer.provenance
    assert p.method == "/qulab.v1.StructureService/ParseStructure"
    assert p.library_versions["gemmi"] == importlib.metadata.version("gemmi")
    assert p.library_versions["spglib"] == importlib.metadata.version("spglib")
    assert p.parameters["symmetry_tolerance"] == "0.1"
    assert p.parameters["detect_symmetry"] == "true"
    assert p.worker_pid > 0 or p.cache_hit


def test_multi_block_cif_gives_every_structure(client: Client) -> None:
    answer = _parse(client, MULTI_BLOCK)
    names = [block.name for block in gemmi.cif.read(str(MULTI_BLOCK))]
    assert [s.name for s in answer.structures] == names
    only = client.parse_structure(
        structure_pb2.ParseStructureRequest(content=MULTI_BLOCK.read_bytes(), block=names[1])
    )
    assert [s.name for s in only.structures] == [names[1]]
    assert only.structures[0].formula == answer.structures[1].formula


def test_poscar_is_detected_and_keeps_velocities(client: Client) -> None:
    answer = _parse(client, CONTCAR_MD)
    (structure,) = answer.structures
    assert structure.source_format == structure_pb2.STRUCTURE_FORMAT_POSCAR
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pymatgen.io.vasp import Poscar

        reference = Poscar.from_file(str(CONTCAR_MD), check_for_potcar=False)
    assert len(structure.sites) == len(reference.structure)
    np.testing.assert_allclose(
        from_tensor(structure.velocities), np.array(reference.velocities), atol=1e-12
    )
    assert structure.volume == pytest.approx(reference.structure.volume, rel=1e-9)


def test_syntax_error_names_the_line(client: Client) -> None:
    broken = b"data_x\n_cell_length_a 5\n_cell_length_b 'unclosed\n"
    with pytest.raises(grpc.RpcError) as caught:
        client.parse_structure(structure_pb2.ParseStructureRequest(content=broken))
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in failure.violations] == ["content"]
    assert failure.info is not None
    assert failure.info.metadata["line"] == "3"


def test_missing_cell_names_block_and_tag(client: Client) -> None:
    text = PBTE.read_text().replace("_cell_length_b", "_cell_length_q")
    with pytest.raises(grpc.RpcError) as caught:
        client.parse_structure(structure_pb2.ParseStructureRequest(content=text.encode()))
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "data_LeadTelluride" in failure.message
    assert "_cell_length_b" in failure.message


def test_vasp4_without_species_is_refused_not_guessed(client: Client) -> None:
    lines = FE3O4.read_text().splitlines()
    # VASP 4: no species line, and neither the comment nor the coordinates name elements.
    coordinates = [" ".join(line.split()[:3]) for line in lines[8:22]]
    vasp4 = "\n".join(["no species here", *lines[1:5], *lines[6:8], *coordinates]) + "\n"
    request = structure_pb2.ParseStructureRequest(content=vasp4.encode())
    with pytest.raises(grpc.RpcError) as caught:
        client.parse_structure(request)
    assert failure_of(caught.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert "species" in failure_of(caught.value).message
    request.options.species.extend(["Fe", "O"])
    (structure,) = client.parse_structure(request).structures
    assert structure.formula == "Fe6 O8"


def test_write_converts_both_ways(client: Client) -> None:
    poscar = client.write_structure(
        structure_pb2.WriteStructureRequest(
            input=structure_pb2.StructureInput(content=PBTE.read_bytes()),
            output_format=structure_pb2.STRUCTURE_FORMAT_POSCAR,
        )
    ).text
    cif = client.write_structure(
        structure_pb2.WriteStructureRequest(
            input=structure_pb2.StructureInput(content=poscar.encode()),
            output_format=structure_pb2.STRUCTURE_FORMAT_CIF,
        )
    ).text
    original = _parse(client, PBTE).structures[0]
    for text in (poscar, cif):
        (again,) = client.parse_structure(
            structure_pb2.ParseStructureRequest(content=text.encode())
        ).structures
        assert again.formula == original.formula
        assert again.volume == pytest.approx(original.volume, rel=1e-12)
        assert again.detected_symmetry.number == original.detected_symmetry.number
    # pymatgen reads what we wrote: an independent check that the CIF is valid.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pymatgen.io.cif import CifParser

        (structure,) = CifParser.from_str(cif).parse_structures(primitive=False)
    assert structure.composition.as_dict() == {"Pb": 4.0, "Te": 4.0}


def test_write_a_parsed_structure_message(client: Client) -> None:
    (parsed,) = _parse(client, FE3O4).structures
    text = client.write_structure(
        structure_pb2.WriteStructureRequest(
            input=structure_pb2.StructureInput(structure=parsed),
            output_format=structure_pb2.STRUCTURE_FORMAT_POSCAR,
        )
    ).text
    (again,) = client.parse_structure(
        structure_pb2.ParseStructureRequest(content=text.encode())
    ).structures
    np.testing.assert_allclose(
        from_tensor(again.fractional_coordinates),
        from_tensor(parsed.fractional_coordinates),
        atol=1e-12,
    )
    bad = structure_pb2.Structure()
    bad.CopyFrom(parsed)
    bad.sites[3].element = "Qq"
    with pytest.raises(grpc.RpcError) as caught:
        client.write_structure(
            structure_pb2.WriteStructureRequest(
                input=structure_pb2.StructureInput(structure=bad),
                output_format=structure_pb2.STRUCTURE_FORMAT_CIF,
            )
        )
    assert [v.field for v in failure_of(caught.value).violations] == [
        "input.structure.sites[3].element"
    ]


def test_encode_keeps_per_item_errors(client: Client) -> None:
    items = [
        structure_pb2.StructureInput(content=PBTE.read_bytes()),
        structure_pb2.StructureInput(content=b"data_x\n_cell_length_a 'broken\n"),
        structure_pb2.StructureInput(content=FE3O4.read_bytes()),
    ]
    answer = client.encode_structure(structure_pb2.EncodeStructureRequest(structures=items))
    features = from_tensor(answer.features)
    assert features.shape == (3, len(answer.feature_names))
    assert features.dtype == np.float32
    codes = [s.code for s in answer.item_status]
    assert codes == [code_pb2.OK, code_pb2.INVALID_ARGUMENT, code_pb2.OK]
    assert unpack_status(answer.item_status[1]).violations[0].field == "structures[1].content"
    assert np.isnan(features[1]).all()
    assert np.isfinite(features[[0, 2]]).all()
    names = list(answer.feature_names)
    assert features[0, names.index("frac_Pb")] == pytest.approx(0.5)
    assert features[2, names.index("space_group_number")] == (
        _parse(client, FE3O4).structures[0].detected_symmetry.number
    )


def test_hostile_files_are_refused_and_the_server_lives(client: Client) -> None:
    junk = random.Random(3).randbytes(200_000)
    ops = "".join(f"'x,y,z+{k}/24'\n" for k in range(300))
    many_ops = "data_m\n_cell_length_a 5\n_cell_length_b 5\n_cell_length_c 5\n" + (
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        f"loop_\n_symmetry_equiv_pos_as_xyz\n{ops}"
        "loop_\n_atom_site_label\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
        "C1 0.1 0.2 0.3\n"
    )
    for content in (junk, many_ops.encode(), b"\x00" * 1000, b"1.0\n" * 10):
        with pytest.raises(grpc.RpcError) as caught:
            client.parse_structure(structure_pb2.ParseStructureRequest(content=content))
        assert failure_of(caught.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert _parse(client, PBTE).structures[0].formula == "Pb4 Te4"


@pytest.fixture(scope="module")
def limited() -> Iterator[Client]:
    server = RunningServer({"QULAB_MAX_STRUCTURE_BYTES": "4096", "QULAB_MAX_STRUCTURE_SITES": "50"})
    try:
        with Client(server.address, timeout=60) as qulab:
            yield qulab
    finally:
        server.stop()


def test_structure_limits_are_settings(limited: Client) -> None:
    oversized = PBTE.read_bytes()
    assert len(oversized) > 4096
    with pytest.raises(grpc.RpcError) as caught:
        limited.parse_structure(structure_pb2.ParseStructureRequest(content=oversized))
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (failure.violations[0].field, failure.violations[0].reason) == (
        "content",
        "LIMIT_EXCEEDED",
    )
    # One atom on a general position of F m -3 m: 192 sites after expansion, limit 50.
    exploding = (
        "data_x\n_cell_length_a 10\n_cell_length_b 10\n_cell_length_c 10\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_symmetry_space_group_name_H-M 'F m -3 m'\n"
        "loop_\n_atom_site_label\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
        "C1 0.11 0.23 0.37\n"
    )
    with pytest.raises(grpc.RpcError) as caught:
        limited.parse_structure(structure_pb2.ParseStructureRequest(content=exploding.encode()))
    failure = failure_of(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "192 sites after symmetry expansion; the limit is 50" in failure.message
