"""The DLSS training source of atomic-resolution lattice scenes (:mod:`emcs.simulate.lattices`)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from emcs.simulate.lattices import (
    SCENES,
    SPACING,
    lattice_columns,
    lattice_pair,
    lattice_scene,
    random_cell,
    scan_record,
)


def test_random_cells_have_unit_nearest_spacing():
    rng = np.random.default_rng(0)
    for _ in range(30):
        cell, basis = random_cell(rng)
        pts = np.array([u * cell[0] + v * cell[1] + i * cell[0] + j * cell[1]
                        for u, v, _ in basis for i in range(-2, 3) for j in range(-2, 3)])
        d, _ = cKDTree(pts).query(pts, k=2)
        assert d[:, 1].min() == pytest.approx(1.0, abs=1e-6)
        assert all(w > 0 for _, _, w in basis)


def test_columns_sit_at_the_drawn_spacing():
    rng = np.random.default_rng(1)
    cell, basis = random_cell(rng, ["hexagonal"])
    pts, wts = lattice_columns(rng, cell, basis, 9.0, 0.4, (0, 0, 200, 200))
    assert pts.shape == (len(wts), 2) and (wts >= 0).all()
    assert pts.min() >= 0 and pts.max() < 200
    d, _ = cKDTree(pts).query(pts, k=2)
    assert np.median(d[:, 1]) == pytest.approx(9.0, rel=0.05)  # within the 3 % homogeneous strain
    assert len(pts) == pytest.approx(200 * 200 / (9.0**2 * np.sqrt(3) / 2), rel=0.15)


@pytest.mark.parametrize("kind", list(SCENES))
def test_every_scene_kind_renders(kind):
    rng = np.random.default_rng(2)
    canvas, info = lattice_scene(rng, 64, kind)
    assert canvas.shape == (96, 96) and np.isfinite(canvas).all() and canvas.min() >= 0
    assert info["kind"] == kind and SPACING[0] <= info["spacing_px"] <= SPACING[1]
    again, _ = lattice_scene(np.random.default_rng(2), 64, kind)
    np.testing.assert_array_equal(canvas, again)  # reproducible from the seed


def test_scene_shows_columns_at_the_lattice_period():
    """A bare crystal's spectrum peaks near 1 / column spacing."""
    for seed in range(40):
        rng = np.random.default_rng(seed)
        canvas, info = lattice_scene(rng, 192, "crystal")
        if 6 <= info["spacing_px"] <= 12:
            break
    spec = np.abs(np.fft.fft2(canvas - canvas.mean()))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(canvas.shape[0]), np.fft.fftfreq(canvas.shape[1]), indexing="ij"))
    peak = f.ravel()[np.argmax(np.where(f > 1 / 60, spec, 0))]
    assert 1 / (2.2 * info["spacing_px"]) < peak < 1.2 / info["spacing_px"]


def test_scan_record_target_is_noise_free_and_the_scan_unbiased():
    rng = np.random.default_rng(3)
    canvas, _ = lattice_scene(rng, 128, "crystal")
    noisy, target = scan_record(rng, canvas, 128)
    assert noisy.shape == target.shape == (128, 128) and noisy.dtype == target.dtype == np.float32
    assert 0.0 <= target.min() and target.max() <= 1.2
    assert np.std(noisy - target) > 0.01  # noise was added
    assert abs(float(np.mean(noisy - target))) < 0.05  # shot noise, read noise and offsets are zero-mean


def test_lattice_pairs_are_fast_and_vary():
    import time

    rng = np.random.default_rng(4)
    t = time.perf_counter()
    pairs = [lattice_pair(rng, 96) for _ in range(8)]
    assert time.perf_counter() - t < 8.0  # ~20 ms each at 192^2 on one core
    assert len({round(float(p[1].mean()), 4) for p in pairs}) == 8
