"""qulab.tensors: numpy <-> Tensor for every dtype, any byte order and layout."""

from __future__ import annotations

import numpy as np
import pytest

from qulab.tensors import from_tensor, to_tensor
from qulab.v1 import common_pb2


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<i4", ">i8", "u1", "i1", "<u4", "<f2", "?"])
def test_round_trip(dtype: str) -> None:
    rng = np.random.default_rng(7)
    array = (rng.random((3, 4, 5)) * 100).astype(dtype)
    tensor = to_tensor(array[:, ::2])  # a strided view, not C-contiguous
    back = from_tensor(tensor)
    assert back.dtype.byteorder in ("<", "|", "=")
    assert list(tensor.shape) == [3, 2, 5]
    np.testing.assert_array_equal(back, array[:, ::2])


def test_wire_bytes_are_little_endian_c_order() -> None:
    tensor = to_tensor(np.array([[1, 2], [3, 4]], dtype=">i4"))
    assert tensor.dtype == common_pb2.DTYPE_INT32
    assert tensor.data == b"".join(i.to_bytes(4, "little") for i in (1, 2, 3, 4))


def test_bad_tensors_are_refused() -> None:
    with pytest.raises(ValueError, match="needs 24"):
        from_tensor(common_pb2.Tensor(dtype=common_pb2.DTYPE_FLOAT64, shape=[3], data=b"x"))
    with pytest.raises(ValueError, match="unknown"):
        from_tensor(common_pb2.Tensor(shape=[0]))
    with pytest.raises(TypeError):
        to_tensor(np.array(["a"]))
