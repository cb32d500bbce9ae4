"""Mask generator: bit-exact reproducibility (golden hash), tiles, packing."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from emcs.tcs.masks import MASK_ALGORITHM, make_masks, pack_masks, unpack_masks

GOLDEN_SHA256 = "94d55fca90fe25f8d7ce16c7ce371ebb31ae6a8d1438b086a99f0d3fe22572b2"
MASK64 = (1 << 64) - 1


def _splitmix64_py(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def test_golden_hash():
    assert MASK_ALGORITHM == "splitmix64-bernoulli-v1"
    m = make_masks(seed=12345, B=10, H=64, W=48)
    assert m.shape == (10, 64, 48) and m.dtype == bool
    assert hashlib.sha256(m.tobytes()).hexdigest() == GOLDEN_SHA256


def test_matches_documented_formula_in_pure_python():
    seed, B, H, W, density = 12345, 10, 64, 48, 0.5
    m = make_masks(seed, B, H, W, density)
    thr = int(density * (1 << 53))
    rng = np.random.default_rng(0)
    for b, i, j in zip(rng.integers(0, B, 50), rng.integers(0, H, 50), rng.integers(0, W, 50), strict=True):
        counter = ((((seed << 32) + int(b)) * H + int(i)) * W + int(j)) & MASK64
        assert m[b, i, j] == ((_splitmix64_py(counter) >> 11) < thr)


def test_tiles_equal_the_full_mask():
    full = make_masks(99, 6, 37, 29, density=0.3)
    tile = make_masks(99, 6, 37, 29, density=0.3, frames=range(2, 5), rows=(5, 20), cols=(7, 29))
    np.testing.assert_array_equal(tile, full[2:5, 5:20, 7:29])


def test_density_and_seed_dependence():
    a = make_masks(1, 4, 64, 64, density=0.2)
    assert abs(a.mean() - 0.2) < 0.02
    assert not np.array_equal(make_masks(1, 4, 16, 16), make_masks(2, 4, 16, 16))
    with pytest.raises(ValueError):
        make_masks(1, 4, 8, 8, density=1.0)


def test_pack_round_trip():
    m = make_masks(5, 3, 7, 9)
    np.testing.assert_array_equal(unpack_masks(pack_masks(m), m.shape), m)
