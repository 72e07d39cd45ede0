"""A tool's answer as JSON: the RPC's response in the proto3 JSON mapping (JSON names,
fields at their default left out), each `qulab.v1.Tensor` in it made readable.

By default a Tensor of at most `INLINE_ELEMENTS` elements is given as its `values` (nested
lists, NaN and infinities as the JSON mapping spells them), and a larger one as a summary:
dtype, shape, min, max and mean of its finite elements, how many are non-zero and how many
NaN, and `omitted: true`. With `full_tensors` each Tensor stays as the mapping writes it
(dtype, shape, base64 `data`), so the answer parses back into the response message.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf import json_format
from google.protobuf.message import Message

from qulab.tensors import from_tensor
from qulab.v1 import common_pb2

__all__ = ["INLINE_ELEMENTS", "result_json"]

INLINE_ELEMENTS = 32
_TENSOR = common_pb2.Tensor.DESCRIPTOR.full_name
_OURS = "qulab."  # messages of ours may hold Tensors; google.* ones never do


def result_json(message: Message, *, full_tensors: bool) -> dict[str, Any]:
    """`message` in the proto3 JSON mapping, its Tensors as `full_tensors` says."""
    found: dict[str, Any] = json_format.MessageToDict(message)
    return found if full_tensors else _readable(message, found)


def _readable(message: Message, found: dict[str, Any]) -> dict[str, Any]:
    """`found` (the mapping of `message`) with every Tensor under it made readable."""
    for field, value in message.ListFields():
        kind = field.message_type
        if kind is None or not kind.full_name.startswith(_OURS):  # map entries are ours too
            continue
        key = field.json_name
        if kind.GetOptions().map_entry:
            if kind.fields_by_name["value"].message_type is not None:
                for k, child in value.items():
                    found[key][str(k)] = _value(child, found[key][str(k)])
        elif field.is_repeated:
            found[key] = [_value(c, j) for c, j in zip(value, found[key], strict=True)]
        else:
            found[key] = _value(value, found[key])
    return found


def _value(message: Message, found: Any) -> Any:
    if message.DESCRIPTOR.full_name == _TENSOR:
        return summarise(message)  # type: ignore[arg-type]
    if message.DESCRIPTOR.full_name.startswith(_OURS):
        return _readable(message, found)
    return found


def summarise(tensor: common_pb2.Tensor) -> dict[str, Any]:
    """A Tensor as its values (small) or a summary (large); a malformed one as it is."""
    shape = [int(n) for n in tensor.shape]
    head: dict[str, Any] = {"dtype": common_pb2.DType.Name(tensor.dtype), "shape": shape}
    try:
        array = from_tensor(tensor)
    except ValueError as exc:
        return {**head, "omitted": True, "invalid": str(exc)}
    if array.size <= INLINE_ELEMENTS:
        return {**head, "values": _plain(array.tolist())}
    return {**head, **_stats(array), "omitted": True}


def _stats(array: npt.NDArray[Any]) -> dict[str, Any]:
    values = array.astype(np.float64) if array.dtype.kind in "biuf" else array
    finite = values[np.isfinite(values)]
    stats: dict[str, Any] = {
        "nonzero": int(np.count_nonzero(values)),
        "nan": int(np.count_nonzero(np.isnan(values))),
    }
    if finite.size:
        stats.update(
            min=_number(finite.min()), max=_number(finite.max()), mean=_number(finite.mean())
        )
    return stats


def _number(value: Any) -> float | int:
    number = float(value)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _plain(value: Any) -> Any:
    """Nested lists of numbers as JSON can hold them: NaN and infinities as the proto3 JSON
    mapping writes them ("NaN", "Infinity", "-Infinity")."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value
