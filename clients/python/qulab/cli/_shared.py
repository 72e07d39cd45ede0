"""Flags and helpers the item commands (molecule, structure, spectrum) share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from google.protobuf.message import Message

from qulab.cli._batch import run as run_batch
from qulab.cli._batch import unary_outcomes
from qulab.cli._common import ExitCode, UsageError, connect, require_serving, timeout_of
from qulab.cli._inputs import files_in
from qulab.cli._output import FORMATS, Item, Reporter, View, open_sink, output_format
from qulab.client import Client

__all__ = ["add_file_flags", "add_output_flags", "run_files", "show_progress"]

ResponseT = TypeVar("ResponseT", bound=Message)


def add_output_flags(parser: argparse.ArgumentParser, *, tensors: bool) -> None:
    group = parser.add_argument_group("results")
    group.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the results to FILE (.jsonl or .csv; - for stdout) instead of showing them",
    )
    group.add_argument(
        "--format",
        choices=FORMATS,
        help="jsonl or csv (default: from --output's extension; readable lines on stdout)",
    )
    if tensors:
        group.add_argument(
            "--full",
            action="store_true",
            help="keep tensor data in JSON (base64, as the proto3 JSON mapping writes bytes); "
            "by default each tensor shows its dtype and shape only",
        )


def add_file_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        default=4,
        metavar="N",
        help="files in flight at once (default: 4)",
    )


def show_progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def run_files(
    args: argparse.Namespace,
    *,
    wanted: Callable[[Path], bool],
    kind: str,
    call: Callable[[Client, Item, bytes], ResponseT],
    view: View[ResponseT],
) -> ExitCode:
    """Files and folders of files, one unary call per file, `--jobs` at a time."""
    output_format(args)  # a bad --format or --output stops the run before any call
    found = files_in(args.inputs, wanted, kind)
    if sum(1 for argument, _ in found if argument == "-") > 1:
        raise UsageError("- (stdin) can be named once")
    items = [Item(source=argument, line=None, id="", input=str(path)) for argument, path in found]
    progress = show_progress(args)
    with connect(args) as client:
        require_serving(client, timeout_of(args))

        def one(item: Item) -> ResponseT:
            return call(client, item, _read(item))

        sink, close = open_sink(args, view)
        reporter = Reporter(show_progress=progress, total=len(items), unit="files")
        return run_batch(
            unary_outcomes(items, one, jobs=args.jobs),
            sink,
            close,
            reporter,
            summary=len(items) > 1 or any(Path(a).is_dir() for a in args.inputs),
            destination=args.output,
        )


def _read(item: Item) -> bytes:
    if item.input == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(item.input).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {item.input}: {error.strerror}") from None
