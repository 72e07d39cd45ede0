"""Where answers go: a readable line per record, JSON lines or CSV rows, each carrying the
input's identity and either the result or the error; and the messages and progress bar
on stderr.

JSON rows are `{"source", "line", "id", "input", "ok", "result" | "error"}`, with the
answer in the proto3 JSON mapping (field names as in the protos); tensors keep their
dtype and shape and lose their data unless `--full`. CSV rows have the same identity
columns, the command's summary columns (one row per record: a CIF's data blocks, a
JCAMP file's blocks) and `error_*` columns.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]  # no type information

from qulab.cli._common import UsageError
from qulab.client.errors import QulabError
from qulab.v1 import common_pb2

__all__ = [
    "FORMATS",
    "Item",
    "Outcome",
    "Reporter",
    "Sink",
    "View",
    "describe",
    "error_fields",
    "join",
    "open_sink",
    "output_format",
    "proto_json",
    "summarise",
]

FORMATS = ("jsonl", "csv")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_TENSOR = common_pb2.Tensor.DESCRIPTOR.full_name
_TENSOR_KEYS = set(common_pb2.Tensor.DESCRIPTOR.fields_by_name)
_IDENTITY = ("source", "line", "id", "input", "ok")
_ERROR_COLUMNS = (
    "error_code",
    "error_message",
    "error_field",
    "error_reason",
    "error_line",
    "error_column",
    "error_position",
    "error_id",
)

ResponseT = TypeVar("ResponseT", bound=Message)


@dataclass(frozen=True, slots=True)
class Item:
    """One input: a molecule's text (with the file and line it came from), or a file."""

    source: str | None  # the file or folder named on the command line; None for a literal
    line: int | None  # 1-based line in `source` where the item starts, for text formats
    id: str  # the caller's label for it (a .smi name, a CSV id column), or ""
    input: str  # the molecule's text, or the path of the file

    def label(self) -> str:
        if self.line is not None:
            where = f"{self.source}:{self.line}"
            return f"{where} ({self.id})" if self.id else where
        return self.input


@dataclass(frozen=True, slots=True)
class Outcome:
    """An item and its answer or its error (exactly one is set)."""

    item: Item
    response: Message | None
    error: QulabError | None


@dataclass(frozen=True, slots=True)
class View(Generic[ResponseT]):
    """How a command shows its answers: CSV columns and the records that fill them, and
    one readable line per record."""

    columns: tuple[str, ...]
    records: Callable[[ResponseT], list[dict[str, Any]]]
    human: Callable[[ResponseT], list[str]]


def error_fields(error: QulabError) -> dict[str, Any]:
    """The error of an item as output fields: code, message, and where the input is wrong
    (the first field violation's field, reason, line, column, position)."""
    violation = error.field_violations[0] if error.field_violations else None
    return {
        "code": error.code().name,
        "message": error.message,
        "field": violation.field if violation else None,
        "reason": (violation.reason if violation else None) or error.reason,
        "line": violation.line if violation else None,
        "column": violation.column if violation else None,
        "position": violation.position if violation else None,
        "error_id": error.error_id,
    }


def describe(error: QulabError) -> str:
    """ "CODE: message", with the error id where the message does not already carry it (the
    server writes it into an INTERNAL error's message)."""
    text = str(error)
    if error.error_id and error.error_id not in error.message:
        text += f" (error id {error.error_id})"
    return text


def proto_json(message: Message, *, full: bool) -> dict[str, Any]:
    """`message` in the proto3 JSON mapping; without `full`, every Tensor keeps only its
    dtype and shape (its data is cleared in place)."""
    if not full:
        _drop_tensor_data(message)
    found = json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
        unquote_int64_if_possible=True,
    )
    return found if full else _without_empty_data(found)


def _without_empty_data(value: Any) -> Any:
    """Drop the `"data": ""` that printing every field gives a cleared Tensor."""
    if isinstance(value, list):
        return [_without_empty_data(v) for v in value]
    if not isinstance(value, dict):
        return value
    if value.keys() == _TENSOR_KEYS and value["data"] == "":
        return {"dtype": value["dtype"], "shape": value["shape"]}
    return {k: _without_empty_data(v) for k, v in value.items()}


def _drop_tensor_data(message: Message) -> None:
    for field, value in message.ListFields():
        kind = field.message_type
        if kind is None:
            continue
        if kind.GetOptions().map_entry:
            value_field = kind.fields_by_name["value"]
            children = list(value.values()) if value_field.message_type is not None else []
        elif field.is_repeated:
            children = list(value)
        else:
            children = [value]
        for child in children:
            if child.DESCRIPTOR.full_name == _TENSOR:
                child.ClearField("data")
            else:
                _drop_tensor_data(child)


class Sink(Protocol):
    def write(self, outcome: Outcome) -> None: ...

    def close(self) -> None: ...


class _HumanSink:
    """A readable line per record on stdout; errors go to stderr (the Reporter's)."""

    def __init__(self, stream: IO[str], view: View[Any]) -> None:
        self._stream = stream
        self._view = view

    def write(self, outcome: Outcome) -> None:
        if outcome.response is None:
            return
        label = outcome.item.label()
        lines = self._view.human(outcome.response)
        for line in lines or ["(nothing found)"]:
            self._stream.write(f"{label}: {line}\n")

    def close(self) -> None:
        self._stream.flush()


class _JsonSink:
    def __init__(self, stream: IO[str], *, full: bool) -> None:
        self._stream = stream
        self._full = full

    def write(self, outcome: Outcome) -> None:
        item = outcome.item
        row: dict[str, Any] = {
            "source": item.source,
            "line": item.line,
            "id": item.id,
            "input": item.input,
            "ok": outcome.error is None,
        }
        if outcome.error is not None:
            row["error"] = error_fields(outcome.error)
        elif outcome.response is not None:
            row["result"] = proto_json(outcome.response, full=self._full)
        self._stream.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._stream.flush()


class _CsvSink:
    def __init__(self, stream: IO[str], view: View[Any]) -> None:
        self._stream = stream
        self._view = view
        self._writer = csv.DictWriter(
            stream, fieldnames=[*_IDENTITY, *view.columns, *_ERROR_COLUMNS], lineterminator="\n"
        )
        self._writer.writeheader()

    def write(self, outcome: Outcome) -> None:
        item = outcome.item
        identity = {
            "source": item.source,
            "line": item.line,
            "id": item.id,
            "input": item.input,
            "ok": "false" if outcome.error else "true",
        }
        if outcome.error is not None:
            failed = error_fields(outcome.error)
            errors = {f"error_{k}" if k != "error_id" else k: v for k, v in failed.items()}
            self._writer.writerow(_cells({**identity, **errors}))
            return
        assert outcome.response is not None
        records = self._view.records(outcome.response)
        for record in records or [{}]:
            self._writer.writerow(_cells({**identity, **record}))

    def close(self) -> None:
        self._stream.flush()


def _cells(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells: empty for None and NaN, lowercase booleans."""
    cells: dict[str, Any] = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            cells[key] = ""
        elif isinstance(value, bool):
            cells[key] = "true" if value else "false"
        else:
            cells[key] = value
    return cells


def output_format(args: Any) -> str:
    """'human', 'jsonl' or 'csv', from --json, --format and --output's extension."""
    chosen: str | None = getattr(args, "format", None)
    if getattr(args, "json", False):
        if chosen not in (None, "jsonl"):
            raise UsageError(f"--json and --format {chosen} disagree")
        chosen = "jsonl"
    output: str | None = getattr(args, "output", None)
    if output is not None and output != "-" and chosen is None:
        suffix = Path(output).suffix.lower()
        if suffix == ".parquet":
            raise UsageError("Parquet output is not supported: write .jsonl or .csv")
        if suffix not in _EXTENSIONS:
            raise UsageError(
                f"cannot tell the format of {output} from its extension: "
                "name it .jsonl or .csv, or give --format jsonl|csv"
            )
        chosen = _EXTENSIONS[suffix]
    return chosen or "human"


def open_sink(args: Any, view: View[Any]) -> tuple[Sink, Callable[[], None]]:
    """The sink the flags ask for, and how to close it (and its file)."""
    kind = output_format(args)
    output: str | None = getattr(args, "output", None)
    if output is None or output == "-":
        stream: IO[str] = sys.stdout
        owned = False
    else:
        try:
            stream = open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as error:
            raise UsageError(f"cannot write {output}: {error.strerror}") from None
        owned = True
    sink: Sink
    if kind == "jsonl":
        sink = _JsonSink(stream, full=getattr(args, "full", False))
    elif kind == "csv":
        sink = _CsvSink(stream, view)
    else:
        sink = _HumanSink(stream, view)

    def close() -> None:
        sink.close()
        if owned:
            stream.close()

    return sink, close


class Reporter:
    """Per-item failures and the run's summary on stderr, around a progress bar that is
    drawn only when stderr is a terminal (and not with --no-progress)."""

    def __init__(self, *, show_progress: bool, total: int | None, unit: str) -> None:
        self._bar: Any = None
        if show_progress and sys.stderr.isatty():
            self._bar = tqdm(
                total=total, unit=f" {unit}", file=sys.stderr, dynamic_ncols=True, leave=False
            )

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def failed(self, outcome: Outcome) -> None:
        assert outcome.error is not None
        self.say(f"qulab: {outcome.item.label()}: {describe(outcome.error)}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def summarise(done: int, failed: int, destination: str | None) -> str:
    text = f"qulab: {done} item{'s' if done != 1 else ''}, {done - failed} OK, {failed} failed"
    return f"{text}; written to {destination}" if destination else text


def join(values: Sequence[str]) -> str:
    return "; ".join(values)
