"""`qulab`, the command line, as people and scripts run it: the installed executable in a
subprocess against a real server, its answers checked against RDKit, gemmi, the JCAMP
files' own NPOINTS and pint, its exit codes for each kind of failure."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gemmi
import pint
import pytest
from rdkit import Chem, RDLogger
from rdkit.Chem import Descriptors, rdMolDescriptors

from tests.conftest import DATA, RunningServer
from tests.integration._certs import make_ca, make_client, make_server, subject
from tests.integration._credentials import auth_settings, write_roles

QULAB = Path(sys.executable).parent / "qulab"
SMILES = DATA / "smiles"
CIF = DATA / "cif"
JCAMP = DATA / "jcamp" / "lancashire"
ALICE_KEY = "qk_cli_alice_0123456789abcdef"
UNITS_KEY = "qk_cli_units_fedcba9876543210"

RDLogger.DisableLog("rdApp.*")  # the references below parse invalid SMILES on purpose


def qulab(
    *args: str | Path,
    address: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `qulab` with QULAB_ADDRESS set and no other QULAB_* variable."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QULAB_")}
    full_env["QULAB_ADDRESS"] = address
    full_env.update(env or {})
    return subprocess.run(
        [str(QULAB), *map(str, args)],
        env=full_env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line parsed as one JSON object: anything else fails the test."""
    lines = stdout.splitlines()
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_one_molecule_readable_and_json(server: RunningServer) -> None:
    smiles = "OC(=O)[C@@H](N)Cc1ccccc1"
    reference = Chem.MolFromSmiles(smiles)
    canonical = Chem.MolToSmiles(reference)
    formula = rdMolDescriptors.CalcMolFormula(reference)

    shown = qulab("molecule", smiles, address=server.address)
    assert shown.returncode == 0, shown.stderr
    (line,) = shown.stdout.splitlines()
    assert line.startswith(f"{smiles}: {canonical}  {formula}  ")
    assert f"{Descriptors.MolWt(reference):.3f} Da" in line
    assert Chem.MolToInchiKey(reference) in line

    done = qulab("molecule", smiles, "--json", address=server.address)
    assert done.returncode == 0, done.stderr
    (row,) = json_lines(done.stdout)
    assert row["input"] == smiles
    assert row["ok"] is True
    assert row["source"] is None
    molecule = row["result"]["molecule"]
    assert molecule["canonical_smiles"] == canonical
    assert molecule["formula"] == formula
    assert molecule["average_mass"] == pytest.approx(Descriptors.MolWt(reference))
    assert molecule["num_atoms"] == reference.GetNumAtoms()
    assert row["result"]["provenance"]["method"] == "/qulab.v1.MoleculeService/ParseMolecules"


def test_smi_file_reports_each_bad_line_and_goes_on(server: RunningServer, tmp_path: Path) -> None:
    """A .smi file whose middle lines RDKit refuses: every other line is answered, in
    order, stdout holds exactly one JSON object per line and nothing else, each failure
    names its line on stderr, and the exit status is 1."""
    source = SMILES / "nextmove" / "smilesvalence.smi"
    lines = source.read_text().splitlines()
    bad = {n for n, line in enumerate(lines, 1) if Chem.MolFromSmiles(line.split()[0]) is None}
    assert bad
    assert min(bad) > 1
    assert max(bad) < len(lines)

    done = qulab("molecule", source, "--json", address=server.address)
    assert done.returncode == 1, done.stderr
    rows = json_lines(done.stdout)
    assert [r["line"] for r in rows] == list(range(1, len(lines) + 1))
    assert {r["line"] for r in rows if not r["ok"]} == bad
    for row, line in zip(rows, lines, strict=True):
        text, name = line.split()
        assert (row["input"], row["id"], row["source"]) == (text, name, str(source))
        if row["ok"]:
            expected = Chem.MolToSmiles(Chem.MolFromSmiles(text))
            assert row["result"]["molecule"]["canonical_smiles"] == expected
        else:
            assert row["error"]["code"] == "INVALID_ARGUMENT"
            assert row["error"]["field"] == "smiles"
    reported = set(re.findall(rf"^qulab: {re.escape(str(source))}:(\d+) ", done.stderr, re.M))
    assert {int(n) for n in reported} == bad
    assert f"{len(lines)} items, {len(lines) - len(bad)} OK, {len(bad)} failed" in done.stderr

    # The same lines from stdin, into a CSV file: one row per line.
    piped = qulab(
        "molecule",
        "-",
        "-o",
        tmp_path / "out.csv",
        address=server.address,
        stdin=source.read_text(),
    )
    assert piped.returncode == 1
    assert piped.stdout == ""
    rows_csv = csv_rows((tmp_path / "out.csv").read_text())
    assert [int(r["line"]) for r in rows_csv] == list(range(1, len(lines) + 1))
    assert {int(r["line"]) for r in rows_csv if r["ok"] == "false"} == bad
    assert all(r["error_code"] == "INVALID_ARGUMENT" for r in rows_csv if r["ok"] == "false")


def test_csv_column_found_by_name_or_chosen(server: RunningServer, tmp_path: Path) -> None:
    corpus = SMILES / "selfies" / "custom_cases.csv"  # header "smiles"
    molecules = [row["smiles"] for row in csv_rows(corpus.read_text())]
    done = qulab("molecule", corpus, "--format", "csv", address=server.address)
    assert done.returncode == (1 if any(Chem.MolFromSmiles(m) is None for m in molecules) else 0)
    rows = csv_rows(done.stdout)
    assert [r["input"] for r in rows] == molecules
    for row, smiles in zip(rows, molecules, strict=True):
        reference = Chem.MolFromSmiles(smiles)
        assert (row["ok"] == "true") == (reference is not None), row
        if reference is not None:
            assert row["canonical_smiles"] == Chem.MolToSmiles(reference)
            assert row["formula"] == rdMolDescriptors.CalcMolFormula(reference)

    # Mixed-case headers, an id column, and a second molecule column chosen by name.
    table = tmp_path / "compounds.csv"
    table.write_text(
        "Name,SMILES,Parent_Smiles\n"
        'ethanol,CCO,"CC(=O)O"\n'
        "broken,C1CC,c1ccccc1\n"
        "benzoate,[O-]C(=O)c1ccccc1,CCN\n"
    )
    found = qulab("molecule", table, "--json", address=server.address)
    assert found.returncode == 1
    rows_json = json_lines(found.stdout)
    assert [(r["id"], r["input"], r["line"]) for r in rows_json] == [
        ("ethanol", "CCO", 2),
        ("broken", "C1CC", 3),
        ("benzoate", "[O-]C(=O)c1ccccc1", 4),
    ]
    assert [r["ok"] for r in rows_json] == [True, False, True]
    assert f"{table}:3 (broken): INVALID_ARGUMENT" in found.stderr

    chosen = qulab("molecule", table, "--column", "parent_smiles", "--json", address=server.address)
    assert chosen.returncode == 0, chosen.stderr
    expected = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in ("CC(=O)O", "c1ccccc1", "CCN")]
    assert [r["result"]["molecule"]["canonical_smiles"] for r in json_lines(chosen.stdout)] == (
        expected
    )


def _gemmi_cell(path: Path) -> gemmi.UnitCell | None:
    try:
        return gemmi.read_small_structure(str(path)).cell
    except (RuntimeError, ValueError):
        return None


def test_cif_folder_to_jsonl_and_csv(server: RunningServer, tmp_path: Path) -> None:
    files = sorted(p for p in CIF.rglob("*") if p.suffix in {".cif", ".mcif"})
    jsonl, table = tmp_path / "cif.jsonl", tmp_path / "cif.csv"
    as_json = qulab("structure", CIF, "-o", jsonl, address=server.address)
    as_csv = qulab("structure", CIF, "-o", table, "--no-progress", address=server.address)
    for done in (as_json, as_csv):
        assert done.returncode == 1, done.stderr  # the corpus holds broken files
        assert done.stdout == ""

    rows = json_lines(jsonl.read_text())
    assert [r["input"] for r in rows] == [str(p) for p in files]  # one row per file, sorted
    for row in rows:
        if not row["ok"]:
            assert row["error"]["code"] == "INVALID_ARGUMENT"
            assert f"qulab: {row['input']}: INVALID_ARGUMENT" in as_json.stderr
            continue
        for structure in row["result"]["structures"]:
            matrix = structure["lattice"]["matrix"]
            assert matrix == {"dtype": "DTYPE_FLOAT64", "shape": [3, 3]}  # no data without --full
    assert any(r["ok"] for r in rows)
    assert not all(r["ok"] for r in rows)

    records = csv_rows(table.read_text())
    by_file: dict[str, list[dict[str, str]]] = {}
    for record in records:
        by_file.setdefault(record["input"], []).append(record)
    assert list(by_file) == [str(p) for p in files]
    compared = 0
    for row in rows:
        found = by_file[row["input"]]
        if not row["ok"]:
            assert len(found) == 1
            assert found[0]["ok"] == "false"
            continue
        assert [f["block"] for f in found] == [s["name"] for s in row["result"]["structures"]]
        cell = _gemmi_cell(Path(row["input"]))
        if cell is None or len(found) != 1:
            continue
        got = found[0]
        for name in ("a", "b", "c", "alpha", "beta", "gamma"):
            assert float(got[name]) == pytest.approx(getattr(cell, name), rel=1e-9), name
        compared += 1
    assert compared >= 15
    multi = next(p for p in files if p.name == "2-entries-AMCSD-cifdata.cif")
    assert len(by_file[str(multi)]) == 2  # one CSV row per data block


def test_jcamp_folder_to_jsonl_and_csv(server: RunningServer, tmp_path: Path) -> None:
    files = sorted(p for p in JCAMP.rglob("*.jdx"))
    jsonl, _table = tmp_path / "jdx.jsonl", tmp_path / "jdx.csv"
    as_json = qulab("spectrum", JCAMP, "-o", jsonl, "--full", address=server.address)
    as_csv = qulab("spectrum", JCAMP, "--format", "csv", address=server.address)
    assert as_json.returncode == 0, as_json.stderr
    assert as_csv.returncode == 0, as_csv.stderr

    rows = json_lines(jsonl.read_text())
    assert [r["input"] for r in rows] == [str(p) for p in files]
    records = csv_rows(as_csv.stdout)
    assert sorted({r["input"] for r in records}) == [str(p) for p in files]
    for path, row in zip(files, rows, strict=True):
        declared = [
            int(n) for n in re.findall(rb"^##\s*NPOINTS\s*=\s*(\d+)", path.read_bytes(), re.M)
        ]
        blocks = row["result"]["blocks"]
        assert [b["declared_points"] for b in blocks if b["declared_points"]] == declared
        mine = [r for r in records if r["input"] == str(path)]
        assert [int(r["block"]) for r in mine] == [b["index"] for b in blocks]
        assert [int(r["declared_points"]) for r in mine if int(r["declared_points"])] == declared
        for record in mine:
            if int(record["declared_points"]):  # NPOINTS counts a peak table's peaks
                found = int(record["points"]) or int(record["peaks"])
                assert found == int(record["declared_points"]), record
        for block in blocks:
            if block["points"]:
                assert block["y"]["data"]  # --full keeps the tensors' data


def test_convert_matches_pint(server: RunningServer) -> None:
    registry = pint.UnitRegistry()
    with registry.context("spectroscopy"):
        expected = (500 * registry.nanometer).to(1 / registry.centimeter).magnitude
    assert expected == pytest.approx(20000)

    shown = qulab("convert", "500", "nm", "1/cm", address=server.address)
    assert shown.returncode == 0, shown.stderr
    value = re.fullmatch(r"500 nm = (\S+) 1/cm\n", shown.stdout)
    assert value is not None, shown.stdout
    assert float(value.group(1)) == pytest.approx(expected, rel=1e-12)

    done = qulab("convert", "500", "250", "nm", "1/cm", "--json", address=server.address)
    assert done.returncode == 0, done.stderr
    rows = json_lines(done.stdout)
    assert [r["input"] for r in rows] == [500, 250]
    assert rows[0]["value"] == pytest.approx(expected, rel=1e-12)
    assert rows[1]["value"] == pytest.approx(2 * expected, rel=1e-12)

    refused = qulab("convert", "1", "nm", "kg", "--context", "none", address=server.address)
    assert refused.returncode == 1
    assert "INVALID_ARGUMENT" in refused.stderr


def test_health(server: RunningServer) -> None:
    done = qulab("health", address=server.address)
    assert (done.returncode, done.stdout) == (0, "SERVING\n"), done.stderr
    service = "qulab.v1.MoleculeService"
    as_json = qulab("--json", "health", service, address=server.address)  # flag first
    assert json_lines(as_json.stdout) == [{"service": service, "status": "SERVING"}]


def test_address_flag_overrides_the_variable(server: RunningServer, closed_port: int) -> None:
    closed = f"127.0.0.1:{closed_port}"
    for args in (("--address", server.address, "health"), ("health", "--address", server.address)):
        done = qulab(*args, address=closed)
        assert (done.returncode, done.stdout) == (0, "SERVING\n"), done.stderr


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: an address whose server
    hangs, where only a deadline ends the wait."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


UNREACHABLE: dict[str, tuple[str, tuple[str, ...]]] = {
    # Connection refused: the channel fails fast, retries and the breaker stay bounded.
    "closed, health": ("closed", ("health",)),
    "closed, one molecule": ("closed", ("molecule", "CCO")),
    "closed, structure folder": ("closed", ("structure", str(CIF / "diffpy"))),
    "closed, convert": ("closed", ("convert", "1", "nm", "1/cm")),
    # A server that never answers: the first contact's deadline ends it, streams included.
    "silent, molecule file": ("silent", ("molecule", str(SMILES / "nextmove" / "cornercases.smi"))),
    "silent, spectrum file": ("silent", ("spectrum", str(JCAMP / "dupdec1.jdx"))),
    "silent, convert": ("silent", ("convert", "1", "nm", "1/cm")),
}


@pytest.mark.parametrize("case", UNREACHABLE)
def test_unreachable_server_exits_3_quickly(case: str, closed_port: int, silent_port: int) -> None:
    kind, command = UNREACHABLE[case]
    port = closed_port if kind == "closed" else silent_port
    started = time.monotonic()
    done = qulab("--timeout", "1", *command, address=f"127.0.0.1:{port}", timeout=30)
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    assert ("UNAVAILABLE" if kind == "closed" else "DEADLINE_EXCEEDED") in done.stderr
    assert f"(server 127.0.0.1:{port})" in done.stderr
    assert elapsed < 12, elapsed


@pytest.fixture(scope="module")
def secured_address(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("cli-auth")
    write_roles(tmp / "roles.json", {"units": {"methods": ["qulab.v1.UnitService/*"]}})
    keys = {ALICE_KEY: ("alice", ["user"]), UNITS_KEY: ("unit-bot", ["units"])}
    settings = {**auth_settings(tmp, keys), "roles_file": str(tmp / "roles.json")}
    running = RunningServer({f"QULAB_{k.upper()}": v for k, v in settings.items()})
    yield running.address
    assert running.stop() == 0


ONE, STREAM = ("molecule", "CCO"), ("molecule", "-")
AUTH_CASES: dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[str, str], int]] = {
    "no key": (ONE, (), {}, 4),
    "no key, stream": (STREAM, (), {}, 4),
    "wrong key flag": (ONE, ("--api-key", "qk_wrong_key"), {}, 4),
    "wrong key variable, stream": (STREAM, (), {"QULAB_API_KEY": "qk_wrong_key"}, 4),
    "role without the method": (ONE, ("--api-key", UNITS_KEY), {}, 4),
    "key flag": (ONE, ("--api-key", ALICE_KEY), {}, 0),
    "key variable, stream": (STREAM, (), {"QULAB_API_KEY": ALICE_KEY}, 0),
    "flag over variable": (ONE, ("--api-key", ALICE_KEY), {"QULAB_API_KEY": "qk_wrong_key"}, 0),
}


@pytest.mark.parametrize("case", AUTH_CASES)
def test_credentials_and_exit_4(secured_address: str, case: str) -> None:
    command, flags, env, expected = AUTH_CASES[case]
    done = qulab(*command, *flags, address=secured_address, env=env, stdin="CCO ethanol\n")
    assert done.returncode == expected, done.stderr
    if expected == 4:
        assert re.search(r"UNAUTHENTICATED|PERMISSION_DENIED", done.stderr)
        assert done.stdout == ""
    else:
        assert "CCO  C2H6O" in done.stdout
    for secret in (ALICE_KEY, UNITS_KEY, "qk_wrong_key"):
        assert secret not in done.stdout + done.stderr


def test_units_role_reaches_convert_only(secured_address: str) -> None:
    allowed = qulab(
        "convert", "1", "nm", "angstrom", "--api-key", UNITS_KEY, address=secured_address
    )
    assert allowed.returncode == 0, allowed.stderr
    denied = qulab(
        "structure", CIF / "diffpy" / "PbTe.cif", "--api-key", UNITS_KEY, address=secured_address
    )
    assert denied.returncode == 4
    assert "PERMISSION_DENIED" in denied.stderr


def test_mtls_from_flags_and_variables(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    ca = make_ca(tmp_path, "ca")
    server_pair = make_server(ca, tmp_path)
    alice = make_client(ca, tmp_path, subject("alice"), "alice")
    secured = start_server(
        tls_cert_file=str(server_pair.cert_file),
        tls_key_file=str(server_pair.key_file),
        tls_client_ca_file=str(ca.cert_file),
    )
    flags = (
        "--ca-file",
        ca.cert_file,
        "--cert-file",
        alice.cert_file,
        "--key-file",
        alice.key_file,
    )
    done = qulab("molecule", "CCO", "--json", *flags, address=secured.address)
    assert done.returncode == 0, done.stderr
    (row,) = json_lines(done.stdout)
    assert row["result"]["provenance"]["principal"] == "CN=alice,O=QuLab Tests"

    variables = {
        "QULAB_CA_FILE": str(ca.cert_file),
        "QULAB_CLIENT_CERT_FILE": str(alice.cert_file),
        "QULAB_CLIENT_KEY_FILE": str(alice.key_file),
    }
    assert qulab("health", address=secured.address, env=variables).returncode == 0
    # Without a client certificate the handshake fails: the server cannot be reached.
    refused = qulab("--timeout", "2", "health", "--ca-file", ca.cert_file, address=secured.address)
    assert refused.returncode == 3, refused.stderr
    assert alice.key_pem.decode() not in refused.stderr


USAGE: dict[str, Callable[[Path], tuple[str, ...]]] = {
    "no command": lambda tmp: (),
    "unknown flag": lambda tmp: ("molecule", "CCO", "--no-such-flag"),
    "missing file": lambda tmp: ("molecule", str(tmp / "absent.smi")),
    "empty folder": lambda tmp: ("spectrum", str(tmp)),
    "unknown column": lambda tmp: (
        "molecule",
        str(SMILES / "selfies" / "custom_cases.csv"),
        "--column",
        "nope",
    ),
    "no molecule column": lambda tmp: ("molecule", str(_write(tmp / "t.csv", "a,b\n1,2\n"))),
    "output extension": lambda tmp: ("molecule", "CCO", "-o", str(tmp / "out.xml")),
    "json and csv": lambda tmp: ("molecule", "CCO", "--json", "--format", "csv"),
    "bad number": lambda tmp: ("convert", "five", "nm", "1/cm"),
    "bad timeout": lambda tmp: ("--timeout", "0", "health"),
    "certificate without key": lambda tmp: (
        "--cert-file",
        str(_write(tmp / "c.pem", "x")),
        "health",
    ),
    "unreadable CA": lambda tmp: ("--ca-file", str(tmp / "absent.pem"), "health"),
    "key in clear to a remote host": lambda tmp: (
        "--address",
        "192.0.2.1:50051",
        "--api-key",
        "k",
        "health",
    ),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", USAGE)
def test_usage_errors_exit_2(case: str, tmp_path: Path, closed_port: int) -> None:
    (tmp_path / "empty").mkdir()
    args = USAGE[case](tmp_path / "empty" if case == "empty folder" else tmp_path)
    done = qulab(*args, address=f"127.0.0.1:{closed_port}")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "error" in done.stderr


def test_progress_on_a_terminal_stays_off_stdout(server: RunningServer) -> None:
    """With stderr a terminal the bar is drawn there, and stdout still holds only the
    JSON objects; --no-progress draws nothing."""
    source = SMILES / "nextmove" / "tetrahedral.smi"
    count = sum(1 for line in source.read_text().splitlines() if line.strip())

    def run(*extra: str) -> tuple[int, str, str]:
        leader, follower = pty.openpty()
        # A terminal of 24 x 80 (a new pseudo-terminal has no size, and tqdm draws nothing).
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("QULAB_")}
        process = subprocess.Popen(
            [str(QULAB), "molecule", str(source), "--json", *extra],
            env={**env, "QULAB_ADDRESS": server.address},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        drawn = bytearray()

        def drain() -> None:
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the terminal's other end closed
                    return
                if not chunk:
                    return
                drawn.extend(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        stdout, _ = process.communicate(timeout=60)
        reader.join(10)
        os.close(leader)
        return process.returncode, stdout.decode(), drawn.decode(errors="replace")

    status, stdout, terminal = run()
    assert status == 0, terminal
    assert len(json_lines(stdout)) == count
    assert "molecules" in terminal
    assert "\r" in terminal
    status, stdout, terminal = run("--no-progress")
    assert status == 0
    assert len(json_lines(stdout)) == count
    assert "molecules" not in terminal


def test_the_command_line_needs_neither_rdkit_nor_the_server() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, qulab.cli; print([m for m in sys.modules "
            "if m.split('.')[0] == 'rdkit' or m.startswith('qulab.server')])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert loaded.stdout == "[]\n"
