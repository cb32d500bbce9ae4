"""Fast rendering helpers: point splatting, FFT convolution, normalisation.

Examples
--------
>>> import numpy as np
>>> from emcs.simulate.render import splat, gaussian_psf_fft
>>> img = splat(np.array([[4.5, 4.5]]), np.array([1.0]), (10, 10))
>>> round(float(img.sum()), 6)
1.0
"""

from __future__ import annotations

import numpy as np

__all__ = ["splat", "convolve_fft", "gaussian_psf_fft", "normalize", "disk_mask"]


def splat(points: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Deposit weighted points on a pixel grid with bilinear weights.

    Parameters
    ----------
    points : ndarray (N, 2)
        (row, col) positions in pixels; points outside the grid are dropped.
    weights : ndarray (N,)
        Weight of each point (sum is kept for points well inside the grid).
    shape : (int, int)
        Output (H, W).
    """
    h, w = shape
    points = np.asarray(points, dtype=np.float64)
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), (points.shape[0],))
    r0 = np.floor(points[:, 0]).astype(np.int64)
    c0 = np.floor(points[:, 1]).astype(np.int64)
    fr = points[:, 0] - r0
    fc = points[:, 1] - c0
    out = np.zeros(h * w, dtype=np.float64)
    for dr, dc, wt in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        r = r0 + dr
        c = c0 + dc
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        out += np.bincount(r[ok] * w + c[ok], weights=(weights * wt)[ok], minlength=h * w)
    return out.reshape(h, w).astype(np.float32)


def gaussian_psf_fft(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """The rfft2 transfer function of a unit-sum Gaussian of ``sigma`` pixels."""
    h, w = shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    return np.exp(-2 * (np.pi * sigma) ** 2 * (ky**2 + kx**2)).astype(np.float32)


def convolve_fft(image: np.ndarray, transfer: np.ndarray) -> np.ndarray:
    """Periodic convolution of ``image`` with a kernel given by its rfft2 ``transfer``."""
    h, w = image.shape
    return np.fft.irfft2(np.fft.rfft2(image) * transfer, s=(h, w)).astype(np.float32)


def normalize(image: np.ndarray, lo: float = 0.5, hi: float = 99.8) -> np.ndarray:
    """Map the ``lo``..``hi`` percentiles of ``image`` to 0..1 and clip (float32)."""
    a, b = np.percentile(image, [lo, hi])
    out = (image - a) / max(b - a, 1e-12)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def disk_mask(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    """Boolean disk."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2
