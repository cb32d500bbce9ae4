"""Rendering helpers shared by every generator: point splatting, FFT convolution, the one
smooth random field and the one percentile normalisation.

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

__all__ = ["add_points", "splat", "convolve_fft", "gaussian_psf_fft", "smooth_field", "percentile_range",
           "normalize", "disk_mask"]


def add_points(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> None:
    """Add weighted points to ``image`` (float64, in place) with bilinear weights.

    Parameters
    ----------
    image : ndarray (H, W) float64
        Modified in place; points outside it are dropped.
    rows, cols : ndarray (N,)
        Sub-pixel positions.
    weights : ndarray (N,)
        Weight of each point (its sum is kept for points well inside the image).
    """
    h, w = image.shape
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    fr = rows - r0
    fc = cols - c0
    flat = image.reshape(-1)
    for dr, dc, wt in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        r = r0 + dr
        c = c0 + dc
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        flat += np.bincount(r[ok] * w + c[ok], weights=(weights * wt)[ok], minlength=h * w)


def splat(points: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Deposit weighted points on a new pixel grid with bilinear weights (float32).

    Parameters
    ----------
    points : ndarray (N, 2)
        (row, col) positions in pixels; points outside the grid are dropped.
    weights : ndarray (N,)
        Weight of each point (sum is kept for points well inside the grid).
    shape : (int, int)
        Output (H, W).
    """
    points = np.asarray(points, dtype=np.float64)
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), (points.shape[0],))
    out = np.zeros(tuple(shape), dtype=np.float64)
    add_points(out, points[:, 0], points[:, 1], weights)
    return out.astype(np.float32)


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


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise (correlation length ``sigma`` pixels), zero mean, unit variance.

    Periodic (filtered in Fourier space); float32 (H, W). The one smooth random field of
    every generator (motion fields, thickness maps, textures).
    """
    h, w = shape
    noise = rng.standard_normal((h, w)).astype(np.float32)
    spec = np.fft.rfft2(noise)
    spec *= gaussian_psf_fft((h, w), sigma)
    out = np.fft.irfft2(spec, s=(h, w)).astype(np.float32)
    out -= out.mean()
    return out / (out.std() + 1e-12)


def percentile_range(image: np.ndarray, lo: float, hi: float, stride: int = 1):
    """The ``lo`` percentile of ``image`` and the span to its ``hi`` percentile (at least 1e-12).

    ``stride`` > 1 takes the percentiles of every ``stride``-th pixel along the last two axes.
    """
    a, b = np.percentile(image[..., ::stride, ::stride], [lo, hi])
    return a, max(b - a, 1e-12)  # numpy float64 scalars: the arithmetic with them runs in float64


def normalize(image: np.ndarray, lo: float = 0.5, hi: float = 99.8, stride: int = 1) -> np.ndarray:
    """Map the ``lo``..``hi`` percentiles of ``image`` to 0..1 and clip (float32)."""
    a, span = percentile_range(image, lo, hi, stride)
    return np.clip((image - a) / span, 0.0, 1.0).astype(np.float32)


def disk_mask(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    """Boolean disk."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2
