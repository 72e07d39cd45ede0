"""close_pairs: the cell-list search finds exactly the pairs a brute-force search over the 27
neighbouring cells finds, in orthogonal, skewed and tiny cells."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from qulab.server.domain import _geometry
from qulab.server.domain._geometry import close_pairs


def _brute_force(fractional: np.ndarray, lattice: np.ndarray, cutoff: float) -> dict:
    """Every pair's shortest distance over all 27 images: independent of the rounding
    shortcut close_pairs uses."""
    found = {}
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3)), float)
    for i, j in itertools.combinations(range(len(fractional)), 2):
        delta = fractional[i] - fractional[j] + shifts
        distance = float(np.linalg.norm(delta @ lattice, axis=1).min())
        if distance < cutoff:
            found[(i, j)] = distance
    return found


CELLS = {
    "cubic": np.diag([9.0, 9.0, 9.0]),
    "skewed": np.array([[8.0, 0.0, 0.0], [2.5, 7.5, 0.0], [1.0, 1.5, 9.0]]),
    "tiny": np.diag([1.2, 1.3, 40.0]),  # fewer than 3 bins on two axes
}


@pytest.mark.parametrize("dense_up_to", [0, 10**6], ids=["cell-list", "dense"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_close_pairs_equal_brute_force(
    cell: str, dense_up_to: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_geometry, "_DENSE_UP_TO", dense_up_to)
    rng = np.random.default_rng(7)
    fractional = rng.random((120, 3)) * 1.4 - 0.2  # outside [0, 1) too
    lattice = CELLS[cell]
    cutoff = 1.1
    i, j, distance = close_pairs(fractional, lattice, cutoff)
    found = dict(zip(zip(i.tolist(), j.tolist(), strict=True), distance.tolist(), strict=True))
    expected = _brute_force(fractional, lattice, cutoff)
    assert expected, "the sample must contain close pairs to test anything"
    assert found.keys() == expected.keys()
    for pair, value in expected.items():
        assert found[pair] == pytest.approx(value, abs=1e-9)
