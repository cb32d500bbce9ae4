"""Fidelity metrics against a simulated ground truth.

The ground truth of a simulation has detail beyond any optical system. We
compare against the *ideal SIM image*: the truth filtered with an OTF-shaped
response of cut-off ``f_c + |k|`` (what a perfect 2-beam SIM could resolve,
``shared/refs/sim.md`` section 5, target (i)). Every image is first mapped to
the reference by a least-squares gain and offset (reconstructions have
arbitrary intensity units), then PSNR (data range of the reference) and SSIM
are computed on the interior (edges excluded).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from emcs.sim.otf import Optics, freq_grid, otf_profile


def sim_reference(truth: np.ndarray, optics: Optics, k_rel: float = 0.8) -> np.ndarray:
    """Truth (SR grid) band-limited like an ideal SIM reconstruction."""
    px = optics.pixel_nm / 2
    ky, kx = freq_grid(truth.shape, px)
    A = otf_profile(np.hypot(ky, kx) / (optics.cutoff * (1 + k_rel)))
    return sfft.ifft2(sfft.fft2(truth) * A).real.astype(np.float32)


def affine_fit(image: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``a * image + b`` with a, b minimising the squared error to ``ref``."""
    x = image.ravel().astype(np.float64)
    A = np.column_stack([x, np.ones_like(x)])
    (a, b), *_ = np.linalg.lstsq(A, ref.ravel().astype(np.float64), rcond=None)
    return (a * image + b).astype(np.float64)


def fidelity(image: np.ndarray, ref: np.ndarray, border: int = 16) -> dict:
    """PSNR (dB) and SSIM of ``image`` against ``ref`` after an affine intensity fit."""
    from skimage.metrics import structural_similarity

    sl = (slice(border, -border or None), slice(border, -border or None))
    im, rf = image[sl].astype(np.float64), ref[sl].astype(np.float64)
    fit = affine_fit(im, rf)
    rng = float(rf.max() - rf.min()) or 1.0
    mse = float(np.mean((fit - rf) ** 2))
    psnr = 10 * np.log10(rng**2 / mse) if mse > 0 else float("inf")
    ssim = float(structural_similarity(fit, rf, data_range=rng))
    return {"psnr": float(psnr), "ssim": ssim}


def bilinear_up(frame: np.ndarray) -> np.ndarray:
    """Bilinear 2x upsampling on the SR grid convention (SR pixel 2i = camera pixel i)."""
    from scipy.ndimage import map_coordinates

    H, W = frame.shape
    yy, xx = np.mgrid[0:2 * H, 0:2 * W] / 2.0
    return map_coordinates(frame.astype(np.float64), [yy, xx], order=1, mode="nearest").astype(np.float32)
