"""Regenerate the Python code for protos/ and lint the contract with buf.

    python scripts/proto.py            regenerate clients/python/{qulab/v1,buf/validate}
    python scripts/proto.py --check    regenerate into a scratch folder; exit 1 on drift
    python scripts/proto.py --lint     buf lint (and buf breaking against --against IMAGE)

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


def _own_protos() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def _protoc(args: list[str]) -> None:
    from grpc_tools import protoc

    well_known = importlib.resources.files("grpc_tools").joinpath("_proto")
    argv = ["protoc", f"-I{PROTOS}", f"-I{_googleapis_include()}", f"-I{well_known}", *args]
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
    # grpc stubs import grpc; message modules must not, so workers can load them.
    for grpc_module in (out / "buf").rglob("*_grpc.py*"):
        grpc_module.unlink()


def image(path: Path, scratch: Path) -> None:
    """A buf image (FileDescriptorSet with source info) of our protos and their imports."""
    deps = scratch / "validate.binpb"
    _validate_descriptor_set(deps)
    _protoc(
        [
            f"--descriptor_set_in={deps}",
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={path}",
            *_own_protos(),
        ]
    )


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


def lint(against: Path | None) -> None:
    buf = shutil.which("buf", path=str(Path(sys.executable).parent)) or "buf"
    with tempfile.TemporaryDirectory() as tmp:
        img = Path(tmp) / "image.binpb"
        image(img, Path(tmp))
        cfg = (ROOT / "buf.yaml").read_text()
        subprocess.run([buf, "lint", str(img), "--config", cfg, "--path", "qulab"], check=True)
        if against is not None:
            subprocess.run(
                [
                    buf,
                    "breaking",
                    str(img),
                    "--against",
                    str(against),
                    "--config",
                    cfg,
                    "--path",
                    "qulab",
                ],
                check=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if generated code drifted")
    parser.add_argument("--lint", action="store_true", help="run buf lint")
    parser.add_argument("--against", type=Path, help="buf image of the previous contract")
    parser.add_argument("--image", type=Path, help="write a buf image of the protos here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if args.image:
            image(args.image, scratch)
        elif args.lint:
            lint(args.against)
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
