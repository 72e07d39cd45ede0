"""The proto comments, read from the descriptor set `make proto` writes beside the generated
code (`qulab/v1/descriptors.binpb`, source info included), so tool descriptions and examples
come from the contract and cannot drift from it.

A comment's `Example: {...}` lines (one JSON object each; request messages have them) are
taken out of its text and kept as examples; the rest is unwrapped into paragraphs.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2

__all__ = ["EXAMPLE_PREFIX", "Comments"]

EXAMPLE_PREFIX = "Example:"
_DESCRIPTORS = "descriptors.binpb"

# Field numbers of the descriptor protos, as SourceCodeInfo paths use them.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_ONEOF = 2, 3, 4, 8
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

Path = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Comments:
    """Leading comments by full name (messages, fields, oneofs, enums, services, methods;
    an enum value as "<enum full name>.<VALUE>"), without their example lines, and the
    examples by full name."""

    text: Mapping[str, str]
    examples: Mapping[str, Sequence[dict[str, Any]]]

    @classmethod
    def load(cls) -> Comments:
        """From the descriptor set shipped in the `qulab.v1` package."""
        raw = importlib.resources.files("qulab.v1").joinpath(_DESCRIPTORS).read_bytes()
        return cls.from_descriptor_set(descriptor_pb2.FileDescriptorSet.FromString(raw))

    @classmethod
    def from_descriptor_set(cls, files: descriptor_pb2.FileDescriptorSet) -> Comments:
        text: dict[str, str] = {}
        examples: dict[str, list[dict[str, Any]]] = {}
        for file in files.file:
            names = dict(_names(file))
            for location in file.source_code_info.location:
                name = names.get(tuple(location.path))
                if name is None or not location.leading_comments:
                    continue
                prose, found = _split(location.leading_comments, name)
                text[name] = prose
                if found:
                    examples[name] = found
        return cls(text, examples)

    def of(self, full_name: str) -> str:
        return self.text.get(full_name, "")


def _names(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[Path, str]]:
    package = f"{file.package}." if file.package else ""
    for i, message in enumerate(file.message_type):
        yield from _message_names(message, (_FILE_MESSAGE, i), package + message.name)
    for i, enum in enumerate(file.enum_type):
        yield from _enum_names(enum, (_FILE_ENUM, i), package + enum.name)
    for i, service in enumerate(file.service):
        name = package + service.name
        yield (_FILE_SERVICE, i), name
        for j, method in enumerate(service.method):
            yield (_FILE_SERVICE, i, _SERVICE_METHOD, j), f"{name}.{method.name}"


def _message_names(
    message: descriptor_pb2.DescriptorProto, path: Path, name: str
) -> Iterator[tuple[Path, str]]:
    yield path, name
    for i, field in enumerate(message.field):
        yield (*path, _MESSAGE_FIELD, i), f"{name}.{field.name}"
    for i, oneof in enumerate(message.oneof_decl):
        yield (*path, _MESSAGE_ONEOF, i), f"{name}.{oneof.name}"
    for i, nested in enumerate(message.nested_type):
        yield from _message_names(nested, (*path, _MESSAGE_NESTED, i), f"{name}.{nested.name}")
    for i, enum in enumerate(message.enum_type):
        yield from _enum_names(enum, (*path, _MESSAGE_ENUM, i), f"{name}.{enum.name}")


def _enum_names(
    enum: descriptor_pb2.EnumDescriptorProto, path: Path, name: str
) -> Iterator[tuple[Path, str]]:
    yield path, name
    for i, value in enumerate(enum.value):
        # Keyed under the enum (protobuf scopes values beside it, where two enums' values
        # could only be told apart by their prefixes).
        yield (*path, _ENUM_VALUE, i), f"{name}.{value.name}"


def _split(comment: str, name: str) -> tuple[str, list[dict[str, Any]]]:
    """The comment's prose (hard-wrapped lines joined, paragraphs kept) and its examples."""
    paragraphs: list[list[str]] = [[]]
    examples = []
    for raw in comment.splitlines():
        line = raw.strip()
        if line.startswith(EXAMPLE_PREFIX):
            try:
                example = json.loads(line[len(EXAMPLE_PREFIX) :])
            except json.JSONDecodeError as exc:
                raise ValueError(f"{name}: an Example line is not JSON: {exc}") from None
            if not isinstance(example, dict):
                raise ValueError(f"{name}: an Example line must hold a JSON object")
            examples.append(example)
        elif line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    prose = "\n\n".join(" ".join(lines) for lines in paragraphs if lines)
    return prose, examples
