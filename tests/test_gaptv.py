"""GAP-TV: agrees with the reference TV denoiser, climbs in PSNR, beats the naive estimate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emcs.tcs.gaptv import gap_tv, naive_estimate, tv_denoise
from emcs.tcs.masks import make_masks


def _psnr(x, ref):
    return 10 * np.log10(1.0 / np.mean((np.clip(x, 0, 1) - ref) ** 2))


def _scene(B=8, size=64, seed=0):
    """A natural-image video: a photo crop drifting by (0.7, 1.5) px per frame, in [0, 1]."""
    from scipy.ndimage import shift
    from skimage import data

    img = data.camera().astype(np.float64) / 255
    frames = [shift(img, (0.7 * b, 1.5 * b), order=3, mode="reflect")[200 : 200 + size, 220 : 220 + size]
              for b in range(B)]
    return np.clip(np.stack(frames), 0, 1).astype(np.float32)


def test_tv_denoise_matches_scikit_image():
    from skimage.restoration import denoise_tv_chambolle

    rng = np.random.default_rng(0)
    x = rng.random((2, 20, 17)).astype(np.float32)
    ours = tv_denoise(torch.from_numpy(x), 0.3, 5).numpy()
    ref = np.stack([denoise_tv_chambolle(f, weight=0.3, max_num_iter=5, eps=0) for f in x])
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_naive_estimate_is_y_over_mask_sum():
    c = np.array([[[1, 0]], [[1, 0]], [[1, 1]]], bool)  # (3, 1, 2)
    y = np.array([[6.0, 2.0]])
    est = naive_estimate(y, c)
    assert est.shape == (3, 1, 2)
    np.testing.assert_allclose(est[:, 0, 0], 2.0)
    np.testing.assert_allclose(est[:, 0, 1], 2.0)


def test_psnr_climbs_and_beats_naive():
    x = _scene()
    c = make_masks(3, 8, 64, 64)
    y = (x * c).sum(0)
    naive = _psnr(naive_estimate(y, c), x)
    p = {it: _psnr(gap_tv(y, c, iters=it), x) for it in (2, 10, 40)}
    assert p[2] < p[10] < p[40] + 0.2
    assert p[40] > naive + 3.0, (naive, p)


def test_batched_tensor_and_tiled_agree():
    x = _scene(B=6, size=48)
    c = make_masks(5, 6, 48, 48)
    y = np.stack([(x * c).sum(0), (x[::-1] * c).sum(0)])
    full = gap_tv(y, c, iters=15)
    assert full.shape == (2, 6, 48, 48) and full.dtype == np.float32
    tens = gap_tv(torch.from_numpy(y), torch.from_numpy(c), iters=15)
    assert isinstance(tens, torch.Tensor)
    np.testing.assert_allclose(tens.numpy(), full, atol=1e-5)
    tiled = gap_tv(y, c, iters=15, max_elements=6 * 30 * 30, overlap=8)
    assert abs(_psnr(tiled[0], x) - _psnr(full[0], x)) < 0.5


def test_rejects_mismatched_masks():
    with pytest.raises(ValueError):
        gap_tv(np.zeros((2, 8, 8)), np.ones((3, 8, 9), bool))


def test_temporal_tv_matches_scikit_image_3d():
    from skimage.restoration import denoise_tv_chambolle

    x = np.random.default_rng(1).random((5, 12, 10)).astype(np.float32)
    ours = tv_denoise(torch.from_numpy(x), 0.2, 6, temporal=1.0).numpy()
    ref = denoise_tv_chambolle(x.astype(np.float64), weight=0.2, max_num_iter=6, eps=0)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_noisy_settings_beat_naive_on_a_shot_noise_movie():
    """Counts with Poisson noise: the 'high' noise settings must beat Y/sum(C) clearly."""
    from emcs.tcs.decode import GAPTV_SETTINGS

    clean = _scene(B=10, size=48) * 15 + 3  # expected counts 3 .. 18
    noisy = np.random.default_rng(0).poisson(clean).astype(np.float32)
    c = make_masks(2, 10, 48, 48)
    lo, hi = float(noisy.min()), float(noisy.max())
    y = ((noisy * c).sum(0) - lo * c.sum(0)) / (hi - lo)
    ref = (clean - lo) / (hi - lo)
    rng = float(ref.max() - ref.min())

    def score(x):
        return 10 * np.log10(rng**2 / np.mean((x - ref) ** 2))

    naive = score(naive_estimate(y, c))
    high = score(gap_tv(y, c, iters=20, **GAPTV_SETTINGS["high"]))
    assert high > naive + 1.0, (naive, high)


def test_operator_and_masks_give_the_same_reconstruction():
    from emcs.tcs.operator import TcsOperator

    op = TcsOperator.generated(6, 5, (40, 36))
    x = _scene(B=5, size=40)[:, :, :36]
    y = op.forward(x)[None]
    np.testing.assert_array_equal(gap_tv(y, op, iters=4), gap_tv(y, op.masks(), iters=4))
    np.testing.assert_array_equal(naive_estimate(y, op), naive_estimate(y, op.masks()))
    tiled = gap_tv(y, op, iters=4, max_elements=5 * 24 * 24, overlap=4)  # 4 tiles, blended
    assert np.abs(tiled - gap_tv(y, op, iters=4)).mean() < 0.01
    short = op.group(3)
    assert gap_tv(short.forward(x[:3])[None], short, iters=2).shape == (1, 3, 40, 36)

