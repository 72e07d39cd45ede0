"""Regenerate the Python code for protos/ and lint the contract with buf.

    python scripts/proto.py            regenerate clients/python/{qulab/v1,buf/validate}
    python scripts/proto.py --check    regenerate into a scratch folder; exit 1 on drift
    python scripts/proto.py --lint     buf lint, and buf breaking against the contract as
                                       it was at the commit in protos/BREAKING_BASELINE

protovalidate's `buf/validate/validate.proto` is not fetched from the Buf registry (this
project reaches no registry but the language package managers): its descriptor is taken
from the pinned `protovalidate` wheel, so the rules we compile against are exactly the
rules the runtime validator enforces.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import (
    descriptor_pb2,
    duration_pb2,
    field_mask_pb2,
    timestamp_pb2,
)

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
BASELINE = PROTOS / "BREAKING_BASELINE"  # the commit whose contract must stay compatible
OUT = ROOT / "clients" / "python"
GENERATED_DIRS = ("qulab/v1", "buf/validate")
VALIDATE_PROTO = "buf/validate/validate.proto"


def _validate_descriptor_set(path: Path) -> None:
    """Write buf/validate/validate.proto (and its imports) as a FileDescriptorSet."""
    from protovalidate._gen.buf.validate import validate_pb  # the wheel's own descriptor

    fds = descriptor_pb2.FileDescriptorSet()
    for module in (descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2):
        fds.file.add().ParseFromString(module.DESCRIPTOR.serialized_pb)
    fds.file.add().ParseFromString(validate_pb._DESC.proto.to_binary())
    path.write_bytes(fds.SerializeToString())


def _googleapis_include() -> Path:
    """The folder holding google/rpc/status.proto (shipped by googleapis-common-protos)."""
    status = importlib.resources.files("google.rpc").joinpath("status.proto")
    return Path(str(status)).parent.parent.parent


def _own_protos(protos: Path = PROTOS) -> list[str]:
    return sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))


def _protoc(args: list[str], protos: Path = PROTOS) -> None:
    from grpc_tools import protoc

    well_known = importlib.resources.files("grpc_tools").joinpath("_proto")
    argv = ["protoc", f"-I{protos}", f"-I{_googleapis_include()}", f"-I{well_known}", *args]
    if protoc.main(argv) != 0:
        sys.exit(f"protoc failed: {' '.join(argv)}")


def generate(out: Path, scratch: Path) -> None:
    deps = scratch / "validate.binpb"
    _validate_descriptor_set(deps)
    # mypy-protobuf's stubs (typed enums, typed gRPC stubs) rather than protoc's --pyi_out.
    bin_dir = Path(sys.executable).parent
    plugins = [
        f"--plugin=protoc-gen-{p}={bin_dir / f'protoc-gen-{p}'}" for p in ("mypy", "mypy_grpc")
    ]
    _protoc(
        [
            f"--descriptor_set_in={deps}",
            *plugins,
            f"--python_out={out}",
            f"--mypy_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_grpc_out={out}",
            *_own_protos(),
        ]
    )
    _protoc(
        [
            f"--descriptor_set_in={deps}",
            *plugins,
            f"--python_out={out}",
            f"--mypy_out={out}",
            VALIDATE_PROTO,
        ]
    )
    for folder in GENERATED_DIRS:
        for package in [out / folder, *(out / folder).parents]:
            if package in (out, *out.parents) or package.name == "qulab":
                continue  # `qulab` is a namespace package shared with the server
            (package / "__init__.py").touch()
    for folder in GENERATED_DIRS:
        (out / folder / "py.typed").touch()  # the .pyi stubs are for type checkers (PEP 561)
    # grpc stubs import grpc; message modules must not, so workers can load them.
    for grpc_module in (out / "buf").rglob("*_grpc.py*"):
        grpc_module.unlink()


def image(path: Path, scratch: Path, protos: Path = PROTOS) -> None:
    """A buf image (FileDescriptorSet with source info) of the protos and their imports."""
    deps = scratch / "validate.binpb"
    _validate_descriptor_set(deps)
    _protoc(
        [
            f"--descriptor_set_in={deps}",
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={path}",
            *_own_protos(protos),
        ],
        protos,
    )


def _protos_at(commit: str, scratch: Path) -> Path:
    """The protos/ folder as it was at `commit`, extracted from git."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "protos"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive, check=True)
    return scratch / "protos"


def _drift(expected: Path, actual: Path) -> list[str]:
    diffs: list[str] = []
    for folder in GENERATED_DIRS:
        cmp = filecmp.dircmp(expected / folder, actual / folder, ignore=["__pycache__"])
        stack = [(folder, cmp)]
        while stack:
            name, c = stack.pop()
            diffs += [f"{name}/{f}" for f in c.left_only + c.right_only + c.diff_files]
            stack += [(f"{name}/{k}", v) for k, v in c.subdirs.items()]
    return diffs


def lint() -> None:
    buf = shutil.which("buf", path=str(Path(sys.executable).parent)) or "buf"
    cfg = (ROOT / "buf.yaml").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        current = scratch / "current.binpb"
        image(current, scratch)
        subprocess.run([buf, "lint", str(current), "--config", cfg, "--path", "qulab"], check=True)
        if BASELINE.exists():
            commit = BASELINE.read_text().strip()
            previous = scratch / "baseline.binpb"
            image(previous, scratch, _protos_at(commit, scratch))
            subprocess.run(
                [
                    buf,
                    "breaking",
                    str(current),
                    "--against",
                    str(previous),
                    "--config",
                    cfg,
                    "--path",
                    "qulab",
                ],
                check=True,
            )
            print(f"buf lint clean; no breaking change since {commit[:12]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if generated code drifted")
    parser.add_argument("--lint", action="store_true", help="run buf lint and buf breaking")
    parser.add_argument("--image", type=Path, help="write a buf image of the protos here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if args.image:
            image(args.image, scratch)
        elif args.lint:
            lint()
        elif args.check:
            fresh = scratch / "out"
            fresh.mkdir()
            generate(fresh, scratch)
            drift = _drift(OUT, fresh)
            if drift:
                sys.exit("generated code is out of date (run `make proto`): " + ", ".join(drift))
            print("generated code is up to date")
        else:
            for folder in GENERATED_DIRS:
                shutil.rmtree(OUT / folder, ignore_errors=True)
            generate(OUT, scratch)


if __name__ == "__main__":
    main()
