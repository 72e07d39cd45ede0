"""Encode calls over many items, spread across the worker pool in chunks: one place for the
chunking, the batch-size limit and the merge of the chunks' feature matrices.

An Encode*Request has one repeated field of items and a few option fields; its response
has `features` ([n, d] Tensor), `feature_names` and `item_status`. Each chunk is the request
with a slice of the items, prefixed with the index of its first item (`jobs.encode_chunk`)
so per-item errors name the caller's field path.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, TypeVar

import numpy as np
from google.protobuf.message import Message
from google.rpc import status_pb2

from qulab.server.errors import FieldViolation, InvalidArgument, QulabError, Reported
from qulab.server.services._rpc import Call, Rpc
from qulab.server.workers.jobs import encode_chunk
from qulab.server.workers.pool import ItemResult
from qulab.tensors import from_tensor, to_tensor

__all__ = ["encode_in_chunks"]

ResponseT = TypeVar("ResponseT", bound=Message)


async def encode_in_chunks(
    rpc: Rpc,
    call: Call,
    op: str,
    request: Message,
    items_field: str,
    response_type: type[ResponseT],
    parameters: dict[str, str],
    *,
    chunk_size: int,
    per_item: tuple[str, ...] = (),
) -> bytes:
    """Run an encode request through the pool in chunks of at most `chunk_size` items (fewer
    when that spreads the call over more workers) and answer with the merged response.
    `per_item` names the response's other repeated fields with one entry per item."""
    items: Any = getattr(request, items_field)
    count = len(items)
    limit = rpc.settings.max_batch_items
    if count > limit:
        raise InvalidArgument(
            FieldViolation(
                field=items_field,
                reason="LIMIT_EXCEEDED",
                description=f"{count} items in one call; the limit is {limit}",
            )
        )
    size = min(chunk_size, math.ceil(count / rpc.pool.size))
    template = type(request)()
    template.CopyFrom(request)
    template.ClearField(items_field)
    payloads = []
    for start in range(0, count, size):
        chunk = type(request)()
        chunk.CopyFrom(template)
        getattr(chunk, items_field).extend(items[start : start + size])
        payloads.append(encode_chunk(start, chunk))
    results = await asyncio.gather(
        *(rpc.compute(call, op, p) for p in payloads), return_exceptions=True
    )
    sizes = [min(size, count - s) for s in range(0, count, size)]
    body = _merge(results, sizes, response_type, per_item).SerializeToString()
    record = rpc.provenance(
        call,
        request.SerializeToString(deterministic=True),
        [r for r in results if isinstance(r, ItemResult)],
        parameters,
        len(body),
    )
    return rpc.respond(call, body, record, response_type)


def _merge(
    results: list[ItemResult | BaseException],
    sizes: list[int],
    response_type: type[ResponseT],
    per_item: tuple[str, ...],
) -> ResponseT:
    """One response from the chunks' responses. A chunk that failed as a whole (its worker
    crashed) gives each of its items that error and a blank row; when every chunk failed,
    the call fails."""
    parts: list[Any] = []
    for result in results:
        if isinstance(result, QulabError):
            parts.append(result.to_status())
        elif isinstance(result, BaseException):
            raise result
        elif not result.ok:
            parts.append(status_pb2.Status.FromString(result.body))
        else:
            parts.append(response_type.FromString(result.body))
    good = [p for p in parts if isinstance(p, response_type)]
    if not good:
        raise Reported(parts[0])
    first: Any = good[0]
    template = from_tensor(first.features)
    merged: Any = response_type(feature_names=first.feature_names)
    rows = []
    for part, size in zip(parts, sizes, strict=True):
        if isinstance(part, status_pb2.Status):
            blank = np.nan if template.dtype.kind == "f" else 0
            rows.append(np.full((size, template.shape[1]), blank, dtype=template.dtype))
            merged.item_status.extend([part] * size)
            for name in per_item:
                for _ in range(size):
                    getattr(merged, name).add()
        else:
            rows.append(from_tensor(part.features))
            merged.item_status.extend(part.item_status)
            for name in per_item:
                getattr(merged, name).extend(getattr(part, name))
    merged.features.CopyFrom(to_tensor(np.concatenate(rows)))
    return merged  # type: ignore[no-any-return]
