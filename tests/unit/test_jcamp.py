"""read_jcamp on the conformance corpus (tests/data/jcamp/SOURCES.md) and hostile input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from qulab.server.domain._jcamp import JcampLimits, read_jcamp
from qulab.server.errors import InvalidArgument

DATA = Path(__file__).resolve().parent.parent / "data" / "jcamp"

# file -> (blocks, pages, points over all pages, peak rows, assignments, failed check names)
EXPECTED = {
    "isas/BRUKAFFN.DX": (1, 1, 16384, 0, 0, []),
    "isas/BRUKDIF.DX": (1, 1, 16384, 0, 0, []),
    "isas/BRUKER1.JCM": (1, 1, 3735, 0, 0, []),
    "isas/BRUKNTUP.DX": (1, 2, 32768, 0, 0, []),
    "isas/BRUKPAC.DX": (1, 1, 16384, 0, 0, []),
    "isas/BRUKSQZ.DX": (1, 1, 16384, 0, 0, []),
    "isas/ISAS_CDX.DX": (3, 0, 0, 0, 16, []),
    "isas/ISAS_MS1.DX": (1, 0, 0, 26, 0, []),
    "isas/ISAS_MS2.DX": (1, 1, 346, 0, 0, []),
    "isas/ISAS_MS3.DX": (1, 3, 70, 0, 0, []),
    "isas/LABCALC.DX": (1, 1, 3435, 0, 0, []),
    "isas/PE1800.DX": (1, 1, 3301, 0, 0, []),
    "isas/SPECFILE.DX": (1, 1, 1801, 0, 0, ["X_CHECK", "Y_CHECKPOINT"]),
    "isas/TEST32.DX": (1, 1, 16384, 0, 0, []),
    "isas/TESTFID.DX": (1, 2, 32768, 0, 0, []),
    "isas/TESTNTUP.DX": (1, 2, 32768, 0, 0, []),
    "jcamp-data-test/cytisine_1h_molecule.jdx": (
        7,
        1,
        65536,
        198,
        14,
        ["FIRSTX", "LASTX", "X_CHECK"],
    ),
    "jcamp-data-test/nanalysis_1h.jdx": (1, 2, 4096, 0, 0, []),
    "jcamp-data-test/nanalysis_pseudoT1.jdx": (1, 16, 32768, 0, 0, []),
    "jcamp-data-test/oxford_1h.jdx": (1, 2, 65536, 0, 0, ["LASTX", "X_CHECK"]),
    "jcamp-data-test/qmagnetics_ibuprofen.jdx": (1, 2, 80000, 0, 0, []),
    "jcampconverter/compression-small/jcamp-difdup.dx": (1, 1, 30, 0, 0, []),
    "jcampconverter/compression-small/jcamp-fix.dx": (1, 1, 8, 0, 0, []),
    "jcampconverter/compression-small/jcamp-packed.dx": (1, 1, 30, 0, 0, []),
    "jcampconverter/compression-small/jcamp-squeezed.dx": (1, 1, 38, 0, 0, []),
    "jcampconverter/cosyPPM.jdx": (1, 1024, 1048576, 0, 0, ["LASTX", "X_CHECK"]),
    "jcampconverter/gcms.jdx": (1, 2420, 215475, 0, 0, []),
    "jcampconverter/jeol.dx": (1, 1, 16384, 0, 0, ["DELTAX", "FIRSTX", "LASTX", "X_CHECK"]),
    "jcampconverter/mestrec_jcamp-256.jdx": (1, 2, 512, 0, 0, ["X_CHECK"]),
    "jcampconverter/multivariable.jdx": (1, 2, 12, 0, 0, ["NPOINTS"]),
    "jcampconverter/nmr_13c_dept.dx": (4, 4, 131072, 0, 2, []),
    "jcampconverter/sameLabel.jdx": (1, 0, 0, 43, 0, ["NPOINTS"]),
    "jcampconverter/structure/assigned.jdx": (6, 0, 0, 5, 2, []),
    "jcampconverter/structure/noend.jdx": (1, 0, 0, 2, 0, []),
    "jcampconverter/structure/ntuples.jdx": (1, 4, 12, 0, 0, []),
    "jcampconverter/structure/reim.jdx": (1, 2, 6, 0, 0, []),
    "jcampconverter/structure/tree.jdx": (3, 2, 6, 2, 0, []),
    "jcampconverter/structure/two.jdx": (2, 0, 0, 4, 0, []),
    "lancashire/blckpac1.jdx": (6, 5, 880, 0, 0, []),
    "lancashire/coffhd.jdx": (1, 0, 0, 27, 0, []),
    "lancashire/compound.jdx": (6, 5, 13830, 0, 0, []),
    "lancashire/dupdec1.jdx": (1, 1, 3951, 0, 0, []),
    "lancashire/fixdec1.jdx": (1, 1, 3951, 0, 0, []),
    "lancashire/o05.jdx": (1, 1, 8192, 0, 0, []),
    "lancashire/o10.jdx": (1, 2, 16384, 0, 0, []),
    "lancashire/ofid4.jdx": (1, 2, 16384, 0, 0, ["LASTX", "X_CHECK"]),
    "lancashire/pacdec1.jdx": (1, 1, 3301, 0, 0, []),
    "lancashire/sqzdec1.jdx": (1, 1, 16384, 0, 0, []),
    "lancashire/sqzdupd1.jdx": (1, 1, 18669, 0, 0, []),
    "nzhagen/CH4_CI.jdx": (145, 145, 7235, 0, 0, []),
    "nzhagen/difdup_example.jdx": (1, 1, 53, 0, 0, []),
    "nzhagen/example_compound_file.jdx": (3, 2, 4148, 0, 0, []),
    "nzhagen/isopropanol_ASDF.jdx": (1, 1, 9541, 0, 0, []),
    "nzhagen/noencoding_example.jdx": (1, 1, 53, 0, 0, []),
    "nzhagen/raman_tannic_acid.jdx": (1, 1, 1949, 0, 0, []),
    "nzhagen/scientific_notation_example.jdx": (1, 1, 1867, 0, 0, []),
}

# Y values per spectrum that jcampconverter 10.0.2 returned (SOURCES.md, "observed"),
# where it read the whole file; compared page by page in file order.
JCAMPCONVERTER = {
    "isas/BRUKAFFN.DX": [16384],
    "isas/BRUKPAC.DX": [16384],
    "isas/BRUKSQZ.DX": [16384],
    "isas/BRUKDIF.DX": [16384],
    "isas/BRUKNTUP.DX": [16384, 16384],
    "isas/BRUKER1.JCM": [3735],
    "isas/PE1800.DX": [3301],
    "isas/SPECFILE.DX": [1801],
    "isas/LABCALC.DX": [3435],
    "isas/ISAS_MS2.DX": [346],
    "isas/ISAS_MS3.DX": [18, 26, 26],
    "lancashire/compound.jdx": [1976, 1976, 3951],
    "lancashire/blckpac1.jdx": [176, 176, 176],
    "lancashire/dupdec1.jdx": [3951],
    "lancashire/fixdec1.jdx": [3951],
    "lancashire/pacdec1.jdx": [3301],
    "lancashire/sqzdec1.jdx": [16384],
    "lancashire/sqzdupd1.jdx": [18669],
    "lancashire/o05.jdx": [8192],
    "lancashire/o10.jdx": [8192, 8192],
    "lancashire/ofid4.jdx": [8192, 8192],
    "nzhagen/difdup_example.jdx": [53],
    "nzhagen/noencoding_example.jdx": [53],
    "nzhagen/isopropanol_ASDF.jdx": [9541],
    "nzhagen/raman_tannic_acid.jdx": [1949],
    "nzhagen/CH4_CI.jdx": [50, 50, 50],
    "jcampconverter/compression-small/jcamp-fix.dx": [8],
    "jcampconverter/compression-small/jcamp-packed.dx": [30],
    "jcampconverter/compression-small/jcamp-squeezed.dx": [38],
    "jcampconverter/compression-small/jcamp-difdup.dx": [30],
    "jcampconverter/structure/reim.jdx": [3, 3],
    "jcampconverter/gcms.jdx": [78, 80, 84],
    "jcampconverter/nmr_13c_dept.dx": [32768, 32768, 32768],
    "jcampconverter/jeol.dx": [16384],
    "jcampconverter/mestrec_jcamp-256.jdx": [256, 256],
    "jcamp-data-test/nanalysis_1h.jdx": [2048, 2048],
    "jcamp-data-test/oxford_1h.jdx": [32768, 32768],
    "jcamp-data-test/qmagnetics_ibuprofen.jdx": [40000, 40000],
}


def _read(name: str, **options: object) -> list:  # type: ignore[type-arg]
    return read_jcamp((DATA / name).read_bytes(), **options)  # type: ignore[arg-type]


def test_every_corpus_file_is_listed() -> None:
    on_disk = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file()}
    assert on_disk - {"SOURCES.md"} == set(EXPECTED)
    assert len(EXPECTED) == 56


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file(name: str) -> None:
    blocks, pages, points, peaks, assignments, failed = EXPECTED[name]
    result = _read(name)
    got_pages = [p for b in result for p in b.pages]
    assert len(result) == blocks
    assert len(got_pages) == pages
    assert sum(p.y.size for p in got_pages) == points
    assert sum(len(b.peaks.values) for b in result if b.peaks is not None) == peaks
    assert sum(len(b.assignments) for b in result) == assignments
    assert sorted({c.name for b in result for c in b.checks if not c.passed}) == failed
    for block in result:
        assert block.index == result.index(block)
        for child in block.children:
            assert result[child].parent == block.index
        for page in block.pages:
            assert page.x.shape == page.y.shape
            assert page.x.dtype == page.y.dtype == np.float64
    if name in JCAMPCONVERTER:
        reference = JCAMPCONVERTER[name]
        assert [p.y.size for p in got_pages][: len(reference)] == reference


def _affn_table(name: str) -> list[list[float]]:
    """The data lines of the first XYDATA of an AFFN or PAC file, split by hand."""
    text = (DATA / name).read_text("latin-1")
    body = re.split(r"##XYDATA=[^\n]*\n", text)[1].split("##")[0]
    number = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
    return [[float(v) for v in number.findall(line)] for line in body.splitlines() if line.strip()]


def test_bruker_encodings_agree_point_for_point() -> None:
    pages = [_read(f"isas/BRUK{form}.DX")[0].pages[0] for form in ("AFFN", "PAC", "SQZ")]
    assert [p.encoding for p in pages] == ["AFFN", "PAC", "SQZ"]
    for page in pages[1:]:
        assert np.array_equal(page.y, pages[0].y)
        assert np.array_equal(page.x, pages[0].x)
    # SOURCES.md says 618201750; summing the AFFN file by hand gives 618201754 (YFACTOR=1).
    by_hand = sum(sum(row[1:]) for row in _affn_table("isas/BRUKAFFN.DX"))
    assert by_hand == 618201754
    assert float(pages[0].y.sum()) == by_hand
    assert pages[0].x[0] == 24038.5
    assert pages[0].x[-1] == 0.0


@pytest.mark.parametrize(
    "name", ["isas/BRUKAFFN.DX", "isas/LABCALC.DX", "lancashire/fixdec1.jdx", "isas/PE1800.DX"]
)
def test_affn_values_match_a_split_by_hand(name: str) -> None:
    (block,) = _read(name)
    page = block.pages[0]
    yfactor = float(next(v for k, v, _ in block.records if k == "YFACTOR"))
    rows = _affn_table(name)
    by_hand = [y for row in rows for y in row[1:]]
    assert page.y.size == len(by_hand)
    assert page.y[0] == pytest.approx(rows[0][1] * yfactor, rel=1e-12)
    assert page.y[len(rows[0]) - 2] == pytest.approx(rows[0][-1] * yfactor, rel=1e-12)
    assert page.y[-1] == pytest.approx(rows[-1][-1] * yfactor, rel=1e-12)
    assert np.allclose(page.y, np.array(by_hand) * yfactor, rtol=1e-12, atol=0)


def test_compression_small_first_eight_values_agree() -> None:
    expected = [-10247, 1201, -5196, 7245, -5777, 5015, -8583, -3100]
    for form in ("fix", "packed", "squeezed", "difdup"):
        (block,) = _read(f"jcampconverter/compression-small/jcamp-{form}.dx")
        assert block.pages[0].y[:8].tolist() == expected
        assert block.pages[0].x[1] == pytest.approx(5592.84116331095 - 0.341380770512785)


def test_brukdif_y_checks_and_last_checkpoint_line() -> None:
    (block,) = _read("isas/BRUKDIF.DX", strict=True)
    page = block.pages[0]
    assert page.encoding == "SQZ DIF DUP"
    checks = {c.name: c for c in block.checks}
    assert checks["Y_CHECKPOINT"].passed
    assert checks["NPOINTS"].passed
    # The file's last line "0 A513177 $$ checkpoint" only repeats the last point.
    assert page.y[-1] == 1513177
    assert page.y[0] == 2254931


def test_ntuples_pages() -> None:
    (block,) = _read("isas/BRUKNTUP.DX")
    real, imag = block.pages
    assert (real.name, real.y_symbol, imag.name, imag.y_symbol) == ("R", "R", "I", "I")
    assert (real.x_unit, real.form) == ("HZ", "(X++(R..R))")
    assert real.y[0] == 2254931
    assert imag.y[0] == -6966283
    assert real.y[-1] == 1513177
    assert imag.y[-1] == -7303022
    (fid,) = _read("isas/TESTFID.DX")
    assert fid.pages[0].x_unit == "SECONDS"
    assert fid.pages[0].y[0] == pytest.approx(2980, rel=1e-3)
    (nd,) = _read("jcampconverter/structure/ntuples.jdx")
    assert [p.name for p in nd.pages] == ["F1=0", "F1=1", "F1=2", "F1=3"]
    assert nd.pages[3].y.tolist() == [5, 6, 7]
    assert nd.pages[3].x.tolist() == [4, 5, 6]


def test_link_tree_and_assignments() -> None:
    blocks = _read("isas/ISAS_CDX.DX")
    assert [b.parent for b in blocks] == [-1, 0, 0]
    assert blocks[0].children == [1, 2]
    assert blocks[2].block_id == "2"
    assert blocks[2].version == "5.00"
    first = blocks[2].assignments[0]
    assert (first.x, first.y, first.multiplicity, first.assignment) == (27.0, 1.0, "", "7")
    assert np.isnan(first.width)
    tree = _read("jcamp-data-test/cytisine_1h_molecule.jdx")
    assert [b.parent for b in tree] == [-1, 0, 1, 1, 0, 4, 4]
    assert tree[6].peaks is not None
    assert tree[6].peaks.values.shape == (198, 3)


def test_records_and_labels() -> None:
    (block,) = _read("isas/TEST32.DX")
    labels = [label for label, _, _ in block.records]
    assert labels[:3] == ["TITLE", "JCAMPDX", "DATATYPE"]
    assert ("XYDATA", "(X++(Y..Y))", 30) in block.records
    assert block.version == "5.00"
    assert block.npoints == 16384
    assert block.first_x == 24038.5
    (oxford,) = _read("jcamp-data-test/oxford_1h.jdx")
    assert oxford.data_type == "NMR FID"
    assert "$RELAX" not in oxford.title


@pytest.mark.parametrize("name", ["jcampconverter/sameLabel.jdx", "isas/SPECFILE.DX"])
def test_failed_checks_are_errors_in_strict_mode(name: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        _read(name, strict=True)
    assert error.value.reason == "CHECK_FAILED"
    assert error.value.violations[0].line


def test_missing_end_is_a_warning_or_an_error() -> None:
    (block,) = _read("jcampconverter/structure/noend.jdx")
    assert any("no ##END=" in w for w in block.warnings)
    with pytest.raises(InvalidArgument, match="no ##END="):
        _read("jcampconverter/structure/noend.jdx", strict=True)


def test_tolerated_oddities() -> None:
    text = (
        "  ##title= odd\r\n ##JCAMP-DX= 4.24 $$ comment\r\n##DATATYPE= INFRARED\r\n"
        "##XUNITS=1/CM\r\n##FIRSTX= ?\r\n##NPOINTS=3\r\n##XYDATA=(X++(Y..Y))\r\n"
        "1\t10 ? 30 $$ gap\r\n##END=\r\ngarbage\r\n"
    )
    (block,) = read_jcamp(text.encode())
    assert block.title == "odd"
    assert block.version == "4.24"
    assert block.data_type == "INFRARED"
    y = block.pages[0].y
    assert y[0] == 10
    assert np.isnan(y[1])
    assert y[2] == 30
    assert any("ignored" in w for w in block.warnings)
    assert any("NaN" in w for w in block.warnings)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("content", "reason", "fragment"),
    [
        (bytes(range(256)) * 64, "INVALID_JCAMP", "not JCAMP-DX"),
        (
            b"##TITLE=a\n##XYDATA=(X++(Y..Y))\n1 A1S999999999999\n##END=\n",
            "LIMIT_EXCEEDED",
            "limit",
        ),
        (
            b"##TITLE=a\n##NPOINTS=1e15\n##XYDATA=(X++(Y..Y))\n1 2\n##END=\n",
            "LIMIT_EXCEEDED",
            "limit",
        ),
        (
            b"##TITLE=a\n##XYDATA=(X++(Y..Y))\n1 " + b"9" * 1_000_000 + b"\n",
            "INVALID_JCAMP",
            "longer",
        ),
        (b"##TITLE=a\n##DATA TYPE=LINK\n" * 5000, "LIMIT_EXCEEDED", "nested"),
        (b"##TITLE=a\n##END=\n" * 2000, "LIMIT_EXCEEDED", "blocks"),
        (b"##TITLE=a\n##XYDATA=(X++(Y..Y))\n1 2 \x00\x01\n##END=\n", "INVALID_JCAMP", "unexpected"),
        (b"##TITLE=a\n##XYDATA=(Q)\n1 2\n##END=\n", "INVALID_JCAMP", "form"),
    ],
)
def test_hostile_input_is_refused_fast(content: bytes, reason: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        read_jcamp(content)
    assert error.value.reason == reason
    assert fragment in error.value.message


def test_limits() -> None:
    content = (DATA / "isas/BRUKSQZ.DX").read_bytes()
    with pytest.raises(InvalidArgument, match="bytes"):
        read_jcamp(content, limits=JcampLimits(max_bytes=1000))
    with pytest.raises(InvalidArgument) as error:
        read_jcamp(content, limits=JcampLimits(max_points=1000))
    assert error.value.reason == "LIMIT_EXCEEDED"


def test_unterminated_nested_links_strict() -> None:
    content = b"##TITLE=a\n##DATA TYPE=LINK\n##TITLE=b\n##DATA TYPE=LINK\n##TITLE=c\n"
    blocks = read_jcamp(content)
    assert [b.parent for b in blocks] == [-1, 0, 1]
    with pytest.raises(InvalidArgument, match="no ##END="):
        read_jcamp(content, strict=True)


def test_failed_checks_and_warnings_are_capped_with_a_summary() -> None:
    # cosyPPM: 1024 pages, each with line abscissas off and LAST(X) off.
    (block,) = _read("jcampconverter/cosyPPM.jdx")
    failed = [c for c in block.checks if not c.passed]
    for name, total in (("X_CHECK", 2075), ("LASTX", 1024)):
        entries = [c for c in failed if c.name == name]
        assert len(entries) == 21
        summary = entries[-1]
        assert summary.message == f"and {total - 20} more lines"
        assert summary.line > entries[-2].line
    assert len(block.warnings) == 21
    assert block.warnings[-1] == f"and {2075 + 1024 - 20} more lines"
    assert len(block.pages) == 1024


def test_one_page_lists_at_most_twenty_failed_y_checks() -> None:
    lines = [f"{i} @J" for i in range(30)]
    content = "##TITLE=t\n##XYDATA=(X++(Y..Y))\n" + "\n".join(lines) + "\n##END=\n"
    (block,) = read_jcamp(content)
    y_checks = [c for c in block.checks if c.name == "Y_CHECKPOINT"]
    assert [c.passed for c in y_checks] == [False] * 21
    assert y_checks[-1].message == "and 9 more lines"
    assert y_checks[-1].line == 24
    assert block.warnings[-1] == "and 9 more lines"
    with pytest.raises(InvalidArgument) as error:
        read_jcamp(content, strict=True)
    assert error.value.violations[0].line == 4
