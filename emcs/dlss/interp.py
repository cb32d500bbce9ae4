"""Classical interpolation from a regular sparse grid to the full scan.

Every method is separable: the full image is ``Wy @ sparse @ Wx.T`` where the
1-D weight matrices hold the kernel evaluated at the distance (in grid pitches)
between each full-resolution pixel and each sample. All kernels are
interpolating (1 at 0, 0 at the other integers), so the measured positions
are reproduced exactly; outside the sampled range the edge samples are
extended (clamped).

>>> import numpy as np
>>> from emcs.dlss.sampling import subsample
>>> x = np.random.default_rng(0).random((20, 23))
>>> y = upsample(subsample(x, 4), 4, (20, 23), "bilinear")
>>> bool(np.allclose(subsample(y, 4), subsample(x, 4)))
True
"""

from __future__ import annotations

import numpy as np

from emcs.dlss.sampling import grid_offset

METHODS = ("nearest", "bilinear", "bicubic", "lanczos")


def _kernel(method: str, t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    if method == "nearest":
        # half-open cell so that ties go to the earlier sample, one sample per pixel
        return ((t > -0.5) & (t <= 0.5)).astype(np.float64)
    if method == "bilinear":
        return np.clip(1.0 - a, 0.0, None)
    if method == "bicubic":  # Keys, a = -0.5
        k = -0.5
        w = np.where(
            a <= 1,
            (k + 2) * a**3 - (k + 3) * a**2 + 1,
            np.where(a < 2, k * a**3 - 5 * k * a**2 + 8 * k * a - 4 * k, 0.0),
        )
        return w
    if method == "lanczos":  # Lanczos-3
        return np.where(a < 3, np.sinc(t) * np.sinc(t / 3.0), 0.0)
    raise ValueError(f"unknown interpolation method {method!r}; choose from {METHODS}")


def weight_matrix(
    n_full: int, n_sparse: int, factor: int, method: str, offset: int | None = None
) -> np.ndarray:
    """(n_full, n_sparse) matrix mapping samples to the full axis.

    Sample ``j`` sits at full-resolution index ``o + j*factor`` (``o`` =
    ``offset``, by default :func:`~emcs.dlss.sampling.grid_offset`); indices
    outside the sampled range are clamped to the nearest edge sample.
    """
    o = grid_offset(n_full, factor) if offset is None else int(offset)
    u = (np.arange(n_full) - o) / float(factor)  # position in sample units
    u = np.clip(u, 0.0, n_sparse - 1)
    support = {"nearest": 1, "bilinear": 1, "bicubic": 2, "lanczos": 3}[method]
    base = np.floor(u).astype(np.int64)
    w = np.zeros((n_full, n_sparse), np.float64)
    rows = np.arange(n_full)
    for k in range(-support + 1, support + 1):
        j = base + k
        val = _kernel(method, u - j)
        jc = np.clip(j, 0, n_sparse - 1)  # taps beyond the edge reuse the edge sample
        np.add.at(w, (rows, jc), val)
    # normalise (Lanczos/bicubic weights do not sum exactly to 1 near clamped edges)
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(np.float32)


def upsample(
    sparse: np.ndarray,
    factor: int,
    full_shape: tuple[int, int],
    method: str = "bilinear",
    offset: tuple[int, int] | None = None,
) -> np.ndarray:
    """Interpolate a sparse scan (..., h, w) onto the full grid (..., H, W), float32.

    Parameters
    ----------
    sparse : ndarray
        Measured values on the grid of pitch ``factor`` (see :mod:`emcs.dlss.sampling`).
    factor : int
        Grid pitch.
    full_shape : (int, int)
        Size of the full scan; must be consistent with ``sparse.shape``.
    method : str
        ``nearest``, ``bilinear``, ``bicubic`` (Keys, a=-0.5) or ``lanczos`` (3 lobes).
    offset : (int, int), optional
        Grid offset (oy, ox); default ``(N mod s)//2`` per axis.
    """
    oy, ox = (None, None) if offset is None else offset
    if method not in METHODS:
        raise ValueError(f"unknown interpolation method {method!r}; choose from {METHODS}")
    h, w = sparse.shape[-2:]
    wy = weight_matrix(full_shape[0], h, factor, method, oy)
    wx = weight_matrix(full_shape[1], w, factor, method, ox)
    x = np.asarray(sparse, np.float32)
    return np.matmul(np.matmul(wy, x), wx.T)
