"""numpy arrays to and from `qulab.v1.Tensor`, the wire form of every array QuLab returns.

Kept free of grpc so the server's worker processes can use it too.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from qulab.v1 import common_pb2

__all__ = ["from_tensor", "to_tensor"]

_TO_NUMPY: dict[common_pb2.DType.ValueType, np.dtype[np.generic]] = {
    common_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    common_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
    common_pb2.DTYPE_INT32: np.dtype("<i4"),
    common_pb2.DTYPE_INT64: np.dtype("<i8"),
    common_pb2.DTYPE_UINT8: np.dtype("u1"),
    common_pb2.DTYPE_INT8: np.dtype("i1"),
    common_pb2.DTYPE_UINT32: np.dtype("<u4"),
    common_pb2.DTYPE_FLOAT16: np.dtype("<f2"),
    common_pb2.DTYPE_BOOL: np.dtype("?"),
}
_FROM_NUMPY = {dtype.newbyteorder("<"): code for code, dtype in _TO_NUMPY.items()}


def to_tensor(array: npt.ArrayLike) -> common_pb2.Tensor:
    """Pack an array (any byte order or memory layout) as a little-endian C-order Tensor."""
    arr = np.asarray(array)
    code = _FROM_NUMPY.get(arr.dtype.newbyteorder("<"))
    if code is None:
        raise TypeError(f"no Tensor dtype for numpy dtype {arr.dtype}")
    wire = np.ascontiguousarray(arr, dtype=_TO_NUMPY[code])
    return common_pb2.Tensor(dtype=code, shape=wire.shape, data=wire.tobytes())


def from_tensor(tensor: common_pb2.Tensor) -> npt.NDArray[np.generic]:
    """A read-only numpy view of a Tensor's bytes (no copy), shaped as the Tensor says."""
    dtype = _TO_NUMPY.get(tensor.dtype)
    if dtype is None:
        raise ValueError(f"unknown Tensor dtype {tensor.dtype}")
    shape = tuple(tensor.shape)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(tensor.data) != expected:
        raise ValueError(
            f"Tensor data has {len(tensor.data)} bytes; shape {shape} of {dtype} needs {expected}"
        )
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
