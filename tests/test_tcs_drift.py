"""The drift blend (emcs.tcs.drift): a rigidly drifting scene gains over the static blend, a local
change is not hurt, the output stays consistent with the measurement, strips and slices of groups
give the frames of one piece (also computed side by side in threads), the shifts are exact adjoints and the path is found."""

from __future__ import annotations

import numpy as np
import pytest
from test_tcs_static import DOSE, SIZE, _decode, _movie, _psnr, _scene

from emcs.tcs.drift import (
    DEFAULT_DRIFT,
    DriftSettings,
    blend_drifting,
    frame_path,
    path_scale,
    shift_from,
    shift_to,
)
from emcs.tcs.operator import TcsOperator
from emcs.tcs.static import blend_measurement, consistency


@pytest.fixture(scope="module")
def network():
    pytest.importorskip("torch")
    from emcs.tcs.decoders import select_decoder

    if select_decoder("auto", 20, 0.5)[0] == "gap-tv":
        pytest.skip("no network decoder installed")


def _blob(T: int, grow: float = 0.4) -> np.ndarray:
    """(T, SIZE, SIZE) a bright blob growing from radius 3 to 12 px (a local change that is no
    drift), in counts."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    d = np.hypot(yy - SIZE / 2, xx - SIZE / 2)
    r = 3 + 9 * np.arange(T)[:, None, None] / max(T - 1, 1)
    return grow * DOSE / (1 + np.exp((d[None] - r) / 1.2))


def test_drifting_movie_gains_over_the_static_blend(tmp_path, network):
    clean, counts = _movie(0.5, 20)
    on, _ = _decode(tmp_path, counts, 20, "static")
    drift, summary = _decode(tmp_path, counts, 20, "on")
    assert summary["static_blend"] == "on"
    gain = _psnr(drift, clean) - _psnr(on, clean)
    assert gain > 1.0, gain


def test_local_change_is_not_hurt(tmp_path, network):
    clean, _ = _movie(0.5, 20)
    clean = clean + _blob(20)
    counts = np.random.default_rng(8).poisson(clean).astype(np.uint8)
    on, _ = _decode(tmp_path, counts, 20, "static")
    drift, _ = _decode(tmp_path, counts, 20, "on")
    assert _psnr(drift, clean) >= _psnr(on, clean) - 0.1
    inside = np.s_[:, SIZE // 2 - 10:SIZE // 2 + 10, SIZE // 2 - 10:SIZE // 2 + 10]
    assert _psnr(drift[inside], clean[inside]) >= _psnr(on[inside], clean[inside]) - 0.1


def _drifting(truth_scene: np.ndarray, B: int, v: float) -> np.ndarray:
    """(B, SIZE, SIZE) crops of a scene moving by ``v`` px/frame along the rows (Fourier shift)."""
    f = np.fft.fft2(truth_scene)
    ky = np.fft.fftfreq(truth_scene.shape[0])[:, None]
    frames = [np.fft.ifft2(f * np.exp(-2j * np.pi * ky * v * b)).real[16:16 + SIZE, 16:16 + SIZE]
              for b in range(B)]
    return np.array(frames)


def test_output_stays_consistent_with_the_measurement():
    """A drifting scene, frames with flicker: the drift blend takes most of the flicker out and
    its forward model still matches Y within the noise."""
    rng = np.random.default_rng(0)
    B, sigma = 20, 0.05
    truth = _drifting(_scene(rng) * 0.8, B, 0.4)
    op = TcsOperator.generated(seed=5, B=B, frame_shape=(SIZE, SIZE))
    C = op.masks(B)
    y = (C * (truth + rng.normal(0, sigma, truth.shape))).sum(0)
    flicker = (truth + rng.normal(0, sigma / 2, truth.shape)).astype(np.float32)
    out, stats = blend_drifting(flicker.copy(), y, C, sigma)
    assert stats["mode"] == "drift" and abs(stats["shift_px"] - 0.4 * (B - 1) / 2) < 0.5
    assert np.mean((out - truth) ** 2) < 0.5 * np.mean((flicker - truth) ** 2)
    assert consistency(out, y, C, sigma) < 1.5


def test_path_of_a_rigid_drift():
    rng = np.random.default_rng(2)
    B = 10
    x = _drifting(_scene(rng), B, 0.7).astype(np.float32)
    d = frame_path(x, np.ones(B), DEFAULT_DRIFT)
    want = 0.7 * (np.arange(B) - (B - 1) / 2)
    np.testing.assert_allclose(d[:, 0], want, atol=0.15)
    np.testing.assert_allclose(d[:, 1], 0, atol=0.15)


@pytest.mark.parametrize("found", [1.0, 0.5, 0.4])
def test_path_scale_lengthens_a_short_path_from_the_measurement(found):
    """A path found at a fraction of the true motion (the network's frames lag it) is scaled back
    to the motion that predicts the measurement; a path found right is kept."""
    rng = np.random.default_rng(4)
    B = 10
    x = _drifting(_scene(rng), B, 0.6).astype(np.float32)
    C = TcsOperator.generated(seed=2, B=B, frame_shape=(SIZE, SIZE)).masks(B)
    y = (C * x).sum(0)
    true = np.stack([0.6 * (np.arange(B) - (B - 1) / 2), np.zeros(B)], axis=1)
    g = np.ones(B)
    c = path_scale(x, y, C, g, true * found, DriftSettings(max_path_scale=3.0))
    assert abs(c * found - 1.0) <= 0.25 * found + 1e-6
    assert path_scale(x, y, C, g, true * found, DriftSettings(max_path_scale=1.0)) == 1.0


@pytest.mark.parametrize("shape", [(12, 9), (75, 40)])  # 75 rows: three blocks of SHIFT_BLOCK
@pytest.mark.parametrize("d", [(0.0, 0.0), (0.3, -1.7), (-2.5, 0.5)])
def test_shift_to_is_the_adjoint_of_shift_from(d, shape):
    rng = np.random.default_rng(3)
    pad = 5
    canvas = rng.normal(size=(shape[0] + 2 * pad, shape[1] + 2 * pad)).astype(np.float32)
    frame = rng.normal(size=shape).astype(np.float32)
    lhs = float(np.sum(shift_from(canvas, d, pad, shape) * frame, dtype=np.float64))
    rhs = float(np.sum(canvas * shift_to(frame, d, pad, canvas.shape), dtype=np.float64))
    assert abs(lhs - rhs) < 1e-4 * (1 + abs(lhs))
    np.testing.assert_allclose(shift_from(canvas, (1.0, -2.0), pad, shape),
                               canvas[pad - 1:pad - 1 + shape[0], pad + 2:pad + 2 + shape[1]], atol=1e-6)


def test_strips_equal_one_piece():
    rng = np.random.default_rng(1)
    B, H, W = 10, 120, 48
    scene = rng.uniform(0.2, 0.8, (H + 40, W + 40))
    f = np.fft.fft2(scene)
    ky = np.fft.fftfreq(scene.shape[0])[:, None]
    kx = np.fft.fftfreq(scene.shape[1])[None, :]
    x = np.array([np.fft.ifft2(f * np.exp(-2j * np.pi * (ky * 0.6 * b - kx * 0.3 * b))).real[20:20 + H, 20:20 + W]
                  for b in range(B)], np.float32)
    op = TcsOperator.generated(seed=2, B=B, frame_shape=(H, W))
    y = (op.masks(B) * x).sum(0) + rng.normal(0, 0.1, (H, W))
    whole, stats = blend_drifting(x.copy(), y, op.masks(B), 0.05)
    strips, _ = blend_drifting(x.copy(), y, op, 0.05, rows=16)
    assert stats["mode"] == "drift"
    np.testing.assert_allclose(strips, whole, atol=1e-4)
    # strips side by side in threads: the same numbers, in both the drift and the static path
    threaded, tstats = blend_drifting(x.copy(), y, op, 0.05, rows=16, workers=2)
    assert tstats == _ and np.array_equal(threaded, strips)
    still = x[:1].repeat(B, 0)
    one, s1 = blend_measurement(still.copy(), y, op, 0.05, rows=16)
    two, s2 = blend_measurement(still.copy(), y, op, 0.05, rows=16, workers=2)
    assert s1 == s2 and np.array_equal(one, two)
