"""JSON Schema (draft 2020-12) of a request message, from its descriptor, its protovalidate
rules and its proto comments: the arguments a tool takes, in the proto3 JSON mapping.

    scalars       number / integer (with the type's range) / boolean / string; 64-bit
                  integers as an integer or a decimal string, as the JSON mapping writes them
    bytes         base64 text (`contentEncoding`), either alphabet, padding optional
    enums         by name; `defined_only`, `in`, `not_in`, `const` narrow the names
    repeated      arrays (`min_items`, `max_items`, `unique`, and the items' own rules)
    maps          objects (`min_pairs`, `max_pairs`, the keys' and values' rules)
    messages      `$defs` entries, referenced by full name; well-known types inline
                  (Timestamp, Duration, Struct, Value, ListValue, wrappers, FieldMask, Any)
    oneofs        at most one member; exactly one with `(buf.validate.oneof).required`
    required      a field protovalidate refuses when it is absent: `required`, or an
                  implicit-presence field whose zero value breaks its rules (asked of
                  protovalidate itself, on an empty message, so the two cannot disagree)
    strings       `min_len`, `max_len`, `len`, `max_bytes`, `pattern`, `prefix`, `suffix`,
                  `contains`, `not_contains`, `in`, `not_in`, `const`, and the well-known
                  formats JSON Schema names (email, hostname, ip, uri, uuid)
    numbers       `gt`, `gte`, `lt`, `lte`, `const`, `in`, `not_in`

Every object has `additionalProperties: false` and lists the JSON names (lowerCamelCase);
the proto field names protobuf's JSON parser also accepts are normalised by the caller
(`_arguments`). Rules the schema cannot say (CEL expressions, an int64 bound on the string
form) are left to protovalidate, which still checks every request: the schema is never
stricter than the rules, only sometimes looser.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import protovalidate
from buf.validate import validate_pb2
from google.protobuf import descriptor, descriptor_pb2, message_factory
from google.protobuf.message import Message

from qulab.server.tools._source import Comments

__all__ = ["DIALECT", "SchemaBuilder", "escape_pattern"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_DEFS = "#/$defs/"
_FD = descriptor.FieldDescriptor
_INT64_PATTERN = "^-?[0-9]+$"
_UINT64_PATTERN = "^[0-9]+$"
_BASE64_PATTERN = "^[A-Za-z0-9+/_-]*={0,2}$"
_DURATION_PATTERN = "^-?[0-9]+(\\.[0-9]{1,9})?s$"
_REGEX_SPECIALS = set("\\^$.|?*+()[]{}/")
_STRING_FORMATS = {
    "email": "email",
    "hostname": "hostname",
    "ip": None,
    "ipv4": "ipv4",
    "ipv6": "ipv6",
    "uri": "uri",
    "uri_ref": "uri-reference",
    "uuid": "uuid",
}

# Integer ranges of the proto types, and the protovalidate rules message of each.
_INTEGERS: dict[int, tuple[int, int, str]] = {
    _FD.TYPE_INT32: (-(2**31), 2**31 - 1, "int32"),
    _FD.TYPE_SINT32: (-(2**31), 2**31 - 1, "sint32"),
    _FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1, "sfixed32"),
    _FD.TYPE_UINT32: (0, 2**32 - 1, "uint32"),
    _FD.TYPE_FIXED32: (0, 2**32 - 1, "fixed32"),
    _FD.TYPE_INT64: (-(2**63), 2**63 - 1, "int64"),
    _FD.TYPE_SINT64: (-(2**63), 2**63 - 1, "sint64"),
    _FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1, "sfixed64"),
    _FD.TYPE_UINT64: (0, 2**64 - 1, "uint64"),
    _FD.TYPE_FIXED64: (0, 2**64 - 1, "fixed64"),
}
_WIDE = {
    _FD.TYPE_INT64,
    _FD.TYPE_SINT64,
    _FD.TYPE_SFIXED64,
    _FD.TYPE_UINT64,
    _FD.TYPE_FIXED64,
}
_WRAPPERS = {
    "google.protobuf.DoubleValue": (_FD.TYPE_DOUBLE, "double"),
    "google.protobuf.FloatValue": (_FD.TYPE_FLOAT, "float"),
    "google.protobuf.Int64Value": (_FD.TYPE_INT64, "int64"),
    "google.protobuf.UInt64Value": (_FD.TYPE_UINT64, "uint64"),
    "google.protobuf.Int32Value": (_FD.TYPE_INT32, "int32"),
    "google.protobuf.UInt32Value": (_FD.TYPE_UINT32, "uint32"),
    "google.protobuf.BoolValue": (_FD.TYPE_BOOL, "bool"),
    "google.protobuf.StringValue": (_FD.TYPE_STRING, "string"),
    "google.protobuf.BytesValue": (_FD.TYPE_BYTES, "bytes"),
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": _DURATION_PATTERN},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
    },
}

Schema = dict[str, Any]
Rules = Any  # a buf.validate rules message (FieldRules, StringRules, ...)


def escape_pattern(text: str) -> str:
    """`text` as a regular expression matching itself, in the syntax ECMA-262 and
    Python's `re` share (no escapes that either would refuse)."""
    return "".join(f"\\{c}" if c in _REGEX_SPECIALS else c for c in text)


class SchemaBuilder:
    """Schemas of request messages; message schemas are built once and shared."""

    def __init__(self, comments: Comments) -> None:
        self._comments = comments
        self._objects: dict[str, Schema] = {}
        self._uses: dict[str, set[str]] = {}  # the messages each message's fields refer to

    def request(self, message: descriptor.Descriptor) -> Schema:
        """The schema of `message` as a document of its own: the object itself, with the
        messages its fields reach under `$defs`."""
        root = dict(self._object(message))
        defs = self._defs(self._uses[message.full_name])
        if defs:
            root["$defs"] = defs
        return {"$schema": DIALECT, **root}

    def batch(self, message: descriptor.Descriptor, max_items: int) -> Schema:
        """The schema of `{"items": [message, ...]}`, 1 to `max_items` of them."""
        items: Schema = {
            "type": "array",
            "items": self.reference(message),
            "minItems": 1,
            "maxItems": max_items,
            "description": "The requests, answered in order, each on its own.",
        }
        return {
            "$schema": DIALECT,
            "type": "object",
            "properties": {"items": items},
            "additionalProperties": False,
            "required": ["items"],
            "$defs": self._defs({message.full_name}),
        }

    def _defs(self, names: set[str]) -> dict[str, Schema]:
        """The schemas of `names` and of every message they reach, by full name."""
        reached: set[str] = set()
        for name in names:
            reached |= self._closure(name)
        return {name: self._objects[name] for name in sorted(reached)}

    def reference(self, message: descriptor.Descriptor) -> Schema:
        """A `$ref` to `message` (built under `$defs` when first met), or a well-known
        type's schema inline."""
        name = message.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name in _WRAPPERS:
            kind, rules_name = _WRAPPERS[name]
            return self._scalar(kind, None, None, rules_name)
        self._object(message)
        return {"$ref": _DEFS + name}

    def reached(self, message: descriptor.Descriptor) -> set[str]:
        """Full names of the messages `message`'s schema refers to, itself included."""
        self._object(message)
        return self._closure(message.full_name)

    def _closure(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = [name]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self._uses.get(name, ()))
        return seen

    # -- messages ------------------------------------------------------------------------

    def _object(self, message: descriptor.Descriptor) -> Schema:
        name = message.full_name
        found = self._objects.get(name)
        if found is not None:
            return found
        schema: Schema = {"type": "object"}
        self._objects[name] = schema  # before the fields, so recursion ends here
        self._uses[name] = set()
        properties: dict[str, Schema] = {}
        for field in message.fields:
            properties[field.json_name] = self._field(field, name)
        oneofs = [o for o in message.oneofs if not _synthetic(message, o)]
        description = _join(self._comments.of(name), *(_oneof_note(o) for o in oneofs))
        if description:
            schema["description"] = description
        schema["properties"] = properties
        schema["additionalProperties"] = False
        required = _required(message)
        if required:
            schema["required"] = required
        constraints = [_oneof_constraint(o) for o in oneofs]
        if len(constraints) == 1:
            schema.update(constraints[0])
        elif constraints:
            schema["allOf"] = constraints
        return schema

    def _field(self, field: descriptor.FieldDescriptor, owner: str) -> Schema:
        rules = _rules(field)
        if _is_map(field):
            schema = self._map(field, rules, owner)
        elif field.is_repeated:
            schema = self._array(field, rules, owner)
        else:
            schema = self._single(field, rules, owner)
        description = self._comments.of(field.full_name)
        if field.enum_type is not None:
            description = _join(description, self._enum_note(field.enum_type, schema))
        if description:
            schema["description"] = description
        return schema

    def _single(self, field: descriptor.FieldDescriptor, rules: Rules, owner: str) -> Schema:
        kind, enum = field.message_type, field.enum_type
        if kind is not None:
            wrapped = _WRAPPERS.get(kind.full_name)
            if wrapped is not None:  # a wrapper takes the rules of the type it wraps
                return self._scalar(wrapped[0], rules, None, wrapped[1])
            schema = self.reference(kind)
            if "$ref" in schema:
                self._uses[owner].add(kind.full_name)
            return schema
        if enum is not None:
            return _enum(enum, rules)
        return self._scalar(field.type, rules, None, None)

    def _array(self, field: descriptor.FieldDescriptor, rules: Rules, owner: str) -> Schema:
        repeated = _kind(rules, "repeated")
        items_rules = (
            repeated.items if repeated is not None and repeated.HasField("items") else None
        )
        schema: Schema = {"type": "array", "items": self._single(field, items_rules, owner)}
        if repeated is not None:
            _copy(repeated, schema, min_items="minItems", max_items="maxItems")
            if repeated.unique:
                schema["uniqueItems"] = True
        return schema

    def _map(self, field: descriptor.FieldDescriptor, rules: Rules, owner: str) -> Schema:
        entry = field.message_type
        assert entry is not None  # a map field's type is its entry message
        key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
        pairs = _kind(rules, "map")
        key_rules = pairs.keys if pairs is not None and pairs.HasField("keys") else None
        value_rules = pairs.values if pairs is not None and pairs.HasField("values") else None
        # Map keys are JSON strings whatever their proto type.
        names = self._scalar(_FD.TYPE_STRING, key_rules, None, None)
        if key.type in _INTEGERS:
            names = {"pattern": _UINT64_PATTERN if _INTEGERS[key.type][0] == 0 else _INT64_PATTERN}
        elif key.type == _FD.TYPE_BOOL:
            names = {"enum": ["true", "false"]}
        names.pop("type", None)
        schema: Schema = {
            "type": "object",
            "propertyNames": names,
            "additionalProperties": self._single(value, value_rules, owner),
        }
        if pairs is not None:
            _copy(pairs, schema, min_pairs="minProperties", max_pairs="maxProperties")
        return schema

    def _enum_note(self, enum: descriptor.EnumDescriptor, schema: Schema) -> str:
        allowed = schema.get("enum") or schema.get("items", {}).get("enum") or ()
        lines = []
        for name in allowed:
            text = self._comments.of(f"{enum.full_name}.{name}")
            lines.append(f"{name}: {text}" if text else name)
        return "\n".join(lines)

    # -- scalars -------------------------------------------------------------------------

    def _scalar(self, kind: int, rules: Rules, kind_rules: Rules, rules_name: str | None) -> Schema:
        """A scalar of proto type `kind`; its rules come from `rules` (FieldRules), or are
        `kind_rules` directly (a wrapper's)."""
        if kind_rules is None and rules is not None:
            kind_rules = _kind(rules, rules_name or _rules_name(kind))
        if kind in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
            schema: Schema = {"type": "number"}
            _numeric(kind_rules, schema, float)
        elif kind in _INTEGERS:
            low, high, _ = _INTEGERS[kind]
            schema = {"type": "integer", "minimum": low, "maximum": high}
            if kind in _WIDE:
                # The JSON mapping writes these as decimal strings; their range is left to
                # protobuf, as JSON numbers (doubles) cannot state it exactly.
                schema = {"type": ["integer", "string"], "pattern": _INT64_PATTERN}
                if low == 0:
                    schema.update(pattern=_UINT64_PATTERN, minimum=0)
            _numeric(kind_rules, schema, int)
        elif kind == _FD.TYPE_BOOL:
            schema = {"type": "boolean"}
            if kind_rules is not None and kind_rules.HasField("const"):
                schema["const"] = kind_rules.const
        elif kind == _FD.TYPE_STRING:
            schema = {"type": "string"}
            _string(kind_rules, schema)
        elif kind == _FD.TYPE_BYTES:
            schema = {"type": "string", "contentEncoding": "base64", "pattern": _BASE64_PATTERN}
            _bytes(kind_rules, schema)
        else:
            raise ValueError(f"no JSON Schema for proto field type {kind}")
        return schema


def _rules_name(kind: int) -> str:
    if kind in _INTEGERS:
        return _INTEGERS[kind][2]
    return {
        _FD.TYPE_DOUBLE: "double",
        _FD.TYPE_FLOAT: "float",
        _FD.TYPE_BOOL: "bool",
        _FD.TYPE_STRING: "string",
        _FD.TYPE_BYTES: "bytes",
    }[kind]


def _rules(field: descriptor.FieldDescriptor) -> Rules:
    options = field.GetOptions()
    if not options.HasExtension(validate_pb2.field):
        return None
    rules = options.Extensions[validate_pb2.field]
    return None if rules.ignore == validate_pb2.IGNORE_ALWAYS else rules


def _kind(rules: Rules, name: str) -> Rules:
    """The `name` part of FieldRules (`string`, `repeated`...), or None."""
    if rules is None or rules.WhichOneof("type") != name:
        return None
    return getattr(rules, name)


def _copy(rules: Rules, schema: Schema, **keywords: str) -> None:
    for rule, keyword in keywords.items():
        if rules.HasField(rule):
            schema[keyword] = getattr(rules, rule)


def _numeric(rules: Rules, schema: Schema, cast: Callable[[Any], Any]) -> None:
    if rules is None:
        return
    low = rules.gt if rules.HasField("gt") else rules.gte if rules.HasField("gte") else None
    high = rules.lt if rules.HasField("lt") else rules.lte if rules.HasField("lte") else None
    if low is not None and high is not None and low > high:
        return  # protovalidate's "outside the range" form: left to protovalidate
    if rules.HasField("gt"):
        schema["exclusiveMinimum"] = cast(rules.gt)
        schema.pop("minimum", None)
    elif rules.HasField("gte"):
        schema["minimum"] = max(cast(rules.gte), schema.get("minimum", -math.inf))
    if rules.HasField("lt"):
        schema["exclusiveMaximum"] = cast(rules.lt)
        schema.pop("maximum", None)
    elif rules.HasField("lte"):
        schema["maximum"] = min(cast(rules.lte), schema.get("maximum", math.inf))
    if rules.HasField("const"):
        schema["const"] = cast(rules.const)
    if len(getattr(rules, "in")):
        schema["enum"] = [cast(v) for v in getattr(rules, "in")]
    if len(rules.not_in):
        schema["not"] = {"enum": [cast(v) for v in rules.not_in]}


def _string(rules: Rules, schema: Schema) -> None:
    if rules is None:
        return
    if rules.HasField("len"):
        schema["minLength"] = schema["maxLength"] = rules.len
    _copy(rules, schema, min_len="minLength", max_len="maxLength")
    if rules.HasField("max_bytes"):  # a character is at least one byte
        schema["maxLength"] = min(rules.max_bytes, schema.get("maxLength", rules.max_bytes))
    patterns = []
    if rules.HasField("pattern"):
        patterns.append(rules.pattern)
    if rules.HasField("prefix"):
        patterns.append("^" + escape_pattern(rules.prefix))
    if rules.HasField("suffix"):
        patterns.append(escape_pattern(rules.suffix) + "$")
    if rules.HasField("contains"):
        patterns.append(escape_pattern(rules.contains))
    _patterns(schema, patterns)
    if rules.HasField("not_contains"):
        schema["not"] = {"pattern": escape_pattern(rules.not_contains)}
    if rules.HasField("const"):
        schema["const"] = rules.const
    if len(getattr(rules, "in")):
        schema["enum"] = list(getattr(rules, "in"))
    if len(rules.not_in):
        schema.setdefault("allOf", []).append({"not": {"enum": list(rules.not_in)}})
    well_known = rules.WhichOneof("well_known")
    if well_known is not None and getattr(rules, well_known) is True:
        found = _STRING_FORMATS.get(well_known)
        if found is not None:
            schema["format"] = found


def _bytes(rules: Rules, schema: Schema) -> None:
    if rules is None:
        return
    low = rules.len if rules.HasField("len") else rules.min_len if rules.HasField("min_len") else 0
    high = (
        rules.len if rules.HasField("len") else rules.max_len if rules.HasField("max_len") else None
    )
    if low:  # n bytes are at least ceil(4n/3) base64 characters (without padding)
        schema["minLength"] = -(-4 * low // 3)
    if high is not None:  # and at most 4 * ceil(n/3) (with it)
        schema["maxLength"] = 4 * -(-high // 3)


def _patterns(schema: Schema, patterns: list[str]) -> None:
    if "pattern" in schema:
        patterns.insert(0, schema.pop("pattern"))
    if len(patterns) == 1:
        schema["pattern"] = patterns[0]
    elif patterns:
        schema.setdefault("allOf", []).extend({"pattern": p} for p in patterns)


def _enum(enum: descriptor.EnumDescriptor, rules: Rules) -> Schema:
    names = [value.name for value in enum.values]
    numbers = {value.name: value.number for value in enum.values}
    if rules is not None and rules.required:  # an enum "set" is one that is not 0
        names = [n for n in names if numbers[n] != 0]
    enum_rules = _kind(rules, "enum")
    if enum_rules is not None:
        if enum_rules.HasField("const"):
            names = [n for n in names if numbers[n] == enum_rules.const]
        if len(getattr(enum_rules, "in")):
            allowed = set(getattr(enum_rules, "in"))
            names = [n for n in names if numbers[n] in allowed]
        refused = set(enum_rules.not_in)
        names = [n for n in names if numbers[n] not in refused]
    return {"type": "string", "enum": names}


# -- oneofs, presence, required ----------------------------------------------------------


def _synthetic(message: descriptor.Descriptor, oneof: descriptor.OneofDescriptor) -> bool:
    """Whether `oneof` is the one protoc makes for a proto3 `optional` field."""
    proto = _proto(message)
    if len(oneof.fields) != 1:
        return False
    return bool(proto.field[oneof.fields[0].index].proto3_optional)


_PROTOS: dict[str, descriptor_pb2.DescriptorProto] = {}


def _proto(message: descriptor.Descriptor) -> descriptor_pb2.DescriptorProto:
    found = _PROTOS.get(message.full_name)
    if found is None:
        found = _PROTOS[message.full_name] = descriptor_pb2.DescriptorProto()
        message.CopyToProto(found)
    return found


def _oneof_rules(oneof: descriptor.OneofDescriptor) -> bool:
    options = oneof.GetOptions()
    return (
        options.HasExtension(validate_pb2.oneof) and options.Extensions[validate_pb2.oneof].required
    )


def _oneof_note(oneof: descriptor.OneofDescriptor) -> str:
    names = ", ".join(f"`{f.json_name}`" for f in oneof.fields)
    how = "exactly one" if _oneof_rules(oneof) else "at most one"
    return f"Give {how} of {names}."


def _oneof_constraint(oneof: descriptor.OneofDescriptor) -> Schema:
    members = [f.json_name for f in oneof.fields]
    if _oneof_rules(oneof):
        return {"oneOf": [{"required": [m]} for m in members]}
    pairs = [{"required": [a, b]} for a, b in itertools.combinations(members, 2)]
    return {"not": {"anyOf": pairs}} if pairs else {}


def _required(message: descriptor.Descriptor) -> list[str]:
    """JSON names of the fields protovalidate refuses when absent: validate an empty
    message and see which of its own fields are named."""
    empty: Message = message_factory.GetMessageClass(message)()
    try:
        protovalidate.validate(empty)
    except protovalidate.ValidationError as exc:
        named = {_top_field(v) for v in exc.violations}
    else:
        return []
    return [f.json_name for f in message.fields if f.name in named]


def _top_field(violation: protovalidate.Violation) -> str:
    path = violation.proto.field
    elements = path.elements if path is not None else ()
    return elements[0].field_name if elements else ""


def _is_map(field: descriptor.FieldDescriptor) -> bool:
    entry = field.message_type
    return field.is_repeated and entry is not None and entry.GetOptions().map_entry


def _join(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)
