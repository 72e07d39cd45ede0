"""A tool's JSON arguments -> the request message, or InvalidArgument naming the JSON path
of what is wrong (`arguments.items[2].smiles`).

Three steps, each with its own failures:
1. names: the proto field names protobuf's JSON parser accepts beside the JSON names
   (`from_unit` for `fromUnit`) are renamed to the JSON names the schema lists; a field
   given under both names is refused.
2. schema: the tool's JSON Schema (draft 2020-12, formats checked) says what else is wrong,
   with the path of each error.
3. parse: `google.protobuf.json_format` makes the message; what the schema let through and
   the parser refuses is reported at `arguments`.
The target RPC's handler then checks its protovalidate rules as for any call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import jsonschema
from google.protobuf import descriptor, json_format
from google.protobuf.message import Message

from qulab.server.errors import FieldViolation, InvalidArgument

__all__ = ["ROOT", "from_proto_path", "json_path", "normalise", "parse", "violations"]

ROOT = "arguments"
_MAX_VIOLATIONS = 20
_MAX_SHOWN = 80  # characters of a bad value quoted back in a description
_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


def json_path(parts: Iterable[str | int], root: str = ROOT) -> str:
    """`arguments.items[2].smiles` from ("items", 2, "smiles")."""
    text = root
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def normalise(value: Any, message: descriptor.Descriptor, path: Sequence[str | int] = ()) -> Any:
    """`value` (the JSON of a `message`) with proto field names renamed to JSON names, all
    the way down. Anything that is not the expected shape is left for the schema to name."""
    if not isinstance(value, dict) or not message.full_name.startswith("qulab."):
        return value
    by_name = {f.name: f for f in message.fields}
    by_json = {f.json_name: f for f in message.fields}
    renamed: dict[str, Any] = {}
    for key, item in value.items():
        field = by_json.get(key) or by_name.get(key)
        if field is None:
            renamed[key] = item  # unknown: the schema names it
            continue
        name = field.json_name
        if name in renamed:
            raise InvalidArgument(
                FieldViolation(
                    field=json_path([*path, name]),
                    reason="schema.duplicate",
                    description=f"given twice, as `{field.name}` and as `{name}`",
                )
            )
        renamed[name] = _child(item, field, [*path, name])
    return renamed


def _child(value: Any, field: descriptor.FieldDescriptor, path: list[str | int]) -> Any:
    kind = field.message_type
    if kind is None:
        return value
    if kind.GetOptions().map_entry:
        inner = kind.fields_by_name["value"].message_type
        if inner is None or not isinstance(value, dict):
            return value
        return {k: normalise(v, inner, [*path, k]) for k, v in value.items()}
    if field.is_repeated and isinstance(value, list):
        return [normalise(v, kind, [*path, i]) for i, v in enumerate(value)]
    return normalise(value, kind, path)


def violations(
    validator: jsonschema.protocols.Validator, arguments: Any, at: Sequence[str | int] = ()
) -> list[FieldViolation]:
    """What the schema finds wrong in `arguments` (found at path `at`), one violation per
    error (the first `_MAX_VIOLATIONS`), each at its JSON path."""
    found: list[FieldViolation] = []
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(map(str, e.path)))
    for error in errors[:_MAX_VIOLATIONS]:
        parts, description = _describe(error)
        found.append(
            FieldViolation(
                field=json_path([*at, *error.absolute_path, *parts]),
                description=description,
                reason=f"schema.{error.validator}",
            )
        )
    return found


def parse(
    arguments: Mapping[str, Any], message_type: type[Message], at: Sequence[str | int] = ()
) -> Message:
    """The request message, from arguments (found at path `at`) the schema has accepted."""
    try:
        return json_format.ParseDict(dict(arguments), message_type())
    except json_format.ParseError as exc:
        raise InvalidArgument(
            FieldViolation(field=json_path(at), description=str(exc), reason="json.parse")
        ) from None


def _describe(error: jsonschema.ValidationError) -> tuple[list[str | int], str]:
    """The path below the error's instance that the error is about, and what is wrong,
    in words that never quote a long value back."""
    kind: Any = error.validator
    expected: Any = error.validator_value
    instance: Any = error.instance
    schema: Any = error.schema
    if kind == "required":
        missing = [k for k in expected if isinstance(instance, dict) and k not in instance]
        return missing[:1], "is required"
    if kind == "additionalProperties":
        known = set(schema.get("properties", {}))
        unknown = sorted(k for k in instance if k not in known)
        return unknown[:1], "is not a field of this message" + _others(unknown[1:])
    if kind == "oneOf" and all("required" in s for s in expected):
        members = [s["required"][0] for s in expected]
        given = [m for m in members if isinstance(instance, dict) and m in instance]
        return [], _choice("exactly one", members, given)
    if kind == "not" and "anyOf" in expected:
        members = sorted({m for s in expected["anyOf"] for m in s.get("required", ())})
        given = [m for m in members if isinstance(instance, dict) and m in instance]
        return [], _choice("at most one", members, given)
    if kind == "type":
        wanted = expected if isinstance(expected, str) else " or ".join(expected)
        return [], f"must be of type {wanted}, not {_JSON_TYPES.get(type(instance), 'that')}"
    if kind == "enum":
        return [], f"must be one of {', '.join(map(_shown, expected))}; got {_shown(instance)}"
    if kind == "pattern":
        return [], f"does not match the pattern {expected}"
    if kind in ("minLength", "maxLength", "minItems", "maxItems"):
        size = len(instance)
        unit = "characters" if kind.endswith("Length") else "items"
        bound = "at least" if kind.startswith("min") else "at most"
        return [], f"has {size} {unit}; {bound} {expected} allowed"
    bounds = {
        "minimum": ">=",
        "maximum": "<=",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
    }
    if kind in bounds:
        return [], f"must be {bounds[kind]} {expected}; got {_shown(instance)}"
    if kind == "format":
        return [], f"is not a valid {expected}"
    return [], error.message[: 2 * _MAX_SHOWN]


def _choice(how: str, members: list[str], given: list[str]) -> str:
    names = ", ".join(f"`{m}`" for m in members)
    got = ", ".join(f"`{m}`" for m in given) if given else "none"
    return f"give {how} of {names} (got {got})"


def _others(unknown: Iterator[str] | list[str]) -> str:
    rest = list(unknown)
    return f" (nor are {', '.join(rest)})" if rest else ""


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Struct arguments carry every number as a double
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def from_proto_path(path: str, message: descriptor.Descriptor, at: Sequence[str | int] = ()) -> str:
    """The JSON path of a field path as the server names it in errors (proto field names,
    `molecules[3].smiles`, `fingerprint.n_bits`) in a `message` found at `at`:
    `arguments.molecules[3].smiles`, `arguments.fingerprint.nBits`."""
    parts: list[str | int] = list(at)
    current: descriptor.Descriptor | None = message
    for segment in _segments(path):
        name, _, subscripts = segment.partition("[")
        field = current.fields_by_name.get(name) if current is not None else None
        parts.append(field.json_name if field is not None else name)
        for key in (subscripts and f"[{subscripts}".strip("[]").split("][")) or ():
            parts.append(int(key) if key.isdigit() else key.strip("'\""))
        current = _message_of(field) if field is not None else None
    return json_path(parts)


def _segments(path: str) -> Iterator[str]:
    """`path` split at the dots outside brackets."""
    depth, start = 0, 0
    for i, char in enumerate(path):
        depth += (char == "[") - (char == "]")
        if char == "." and depth == 0:
            yield path[start:i]
            start = i + 1
    if path[start:]:
        yield path[start:]


def _message_of(field: descriptor.FieldDescriptor) -> descriptor.Descriptor | None:
    kind = field.message_type
    if kind is not None and kind.GetOptions().map_entry:
        return kind.fields_by_name["value"].message_type
    return kind
