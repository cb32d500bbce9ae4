"""Classical interpolation from a regular sparse grid to the full scan.

Every method is separable: the full image is ``Wy @ sparse @ Wx.T`` where the
1-D weight matrices hold the kernel evaluated at the distance (in grid pitches)
between each full-resolution pixel and each sample. The matrices are banded (2 to 6
samples per pixel), so :func:`upsample` applies them as a few gathers and weighted sums
per axis (:func:`taps`) rather than as dense products. All kernels are
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


def taps(
    n_full: int, n_sparse: int, factor: int, method: str, offset: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero band of :func:`weight_matrix`: sample indices and weights, each (n_full, K).

    Row ``i`` of the weight matrix is ``sum_k weights[i, k] * e[indices[i, k]]`` (taps beyond
    the sampled range reuse the edge sample, so an index may repeat); K = 2, 2, 4, 6 for
    nearest, bilinear, bicubic and Lanczos-3.
    """
    o = grid_offset(n_full, factor) if offset is None else int(offset)
    u = (np.arange(n_full) - o) / float(factor)  # position in sample units
    u = np.clip(u, 0.0, n_sparse - 1)
    support = {"nearest": 1, "bilinear": 1, "bicubic": 2, "lanczos": 3}[method]
    base = np.floor(u).astype(np.int64)
    ks = range(-support + 1, support + 1)
    idx = np.stack([np.clip(base + k, 0, n_sparse - 1) for k in ks], axis=1)
    val = np.stack([_kernel(method, u - (base + k)) for k in ks], axis=1)
    # normalise (Lanczos/bicubic weights do not sum exactly to 1 near clamped edges)
    val /= val.sum(axis=1, keepdims=True)
    return idx, val.astype(np.float32)


def weight_matrix(
    n_full: int, n_sparse: int, factor: int, method: str, offset: int | None = None
) -> np.ndarray:
    """(n_full, n_sparse) matrix mapping samples to the full axis.

    Sample ``j`` sits at full-resolution index ``o + j*factor`` (``o`` =
    ``offset``, by default :func:`~emcs.dlss.sampling.grid_offset`); indices
    outside the sampled range are clamped to the nearest edge sample.
    """
    idx, val = taps(n_full, n_sparse, factor, method, offset)
    w = np.zeros((n_full, n_sparse), np.float32)
    np.add.at(w, (np.repeat(np.arange(n_full), idx.shape[1]), idx.ravel()), val.ravel())
    return w


#: rows per block of the last-axis pass: small reused buffers instead of frame-sized temporaries
_ROWS = 64


def _apply_rows(x: np.ndarray, idx: np.ndarray, val: np.ndarray) -> np.ndarray:
    """``W @ x`` along the second-to-last axis for the banded W of (idx, val), float32."""
    shape = [1] * x.ndim
    shape[-2] = len(idx)
    out = np.take(x, idx[:, 0], axis=-2) * val[:, 0].reshape(shape)
    for k in range(1, idx.shape[1]):
        out += np.take(x, idx[:, k], axis=-2) * val[:, k].reshape(shape)
    return out


def _apply_cols(x: np.ndarray, idx: np.ndarray, val: np.ndarray) -> np.ndarray:
    """``x @ W.T`` along the last axis for the banded W of (idx, val), float32, in blocks of rows."""
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty((rows.shape[0], len(idx)), np.float32)
    buf = np.empty((min(_ROWS, rows.shape[0]), len(idx)), np.float32)
    for r0 in range(0, rows.shape[0], _ROWS):
        block, o = rows[r0:r0 + _ROWS], out[r0:r0 + _ROWS]
        b = buf[:len(block)]
        np.take(block, idx[:, 0], axis=1, out=o)
        o *= val[:, 0]
        for k in range(1, idx.shape[1]):
            np.take(block, idx[:, k], axis=1, out=b)
            b *= val[:, k]
            o += b
    return out.reshape(*x.shape[:-1], len(idx))


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
    x = np.asarray(sparse, np.float32)
    x = _apply_rows(x, *taps(full_shape[0], h, factor, method, oy))
    return _apply_cols(x, *taps(full_shape[1], w, factor, method, ox))
