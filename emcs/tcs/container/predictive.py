"""Mask-aware predictive coding of TCS measurements (``emcs encode --pack predictive``).

To an image codec a TCS measurement ``Y = sum_b C_b X_b`` looks like noise: at
each pixel a random number ``S = sum_b C_b`` of the B frames was open, so ``Y``
jumps between 0 and B times the brightness from one pixel to the next, and
lossless JPEG XL spends ~5 bits per pixel on that jumping. The decoder knows
the masks, hence ``S``. This codec predicts every value from already-coded
neighbours after dividing the mask out, in the Anscombe domain where shot
noise has unit variance::

    a = 2 sqrt(Y + 3/8)          (or the quantization code times its step)
    t = a / sqrt(S)              ~ 2 sqrt(mean intensity of the open frames)
    prediction = t_hat * sqrt(S)  with t_hat the S-weighted mean of the neighbours' t

Values are visited coarse to fine (an interlaced pyramid: a grid of stride
2^L, then at each level the cell centres from their 4 diagonal neighbours and
the edge midpoints from their 4 axis neighbours), so coder and decoder are
vectorised numpy, chunk-pure (one measurement and its mask sum in, bytes
out) and need no per-pixel loop. The integer residuals are entropy-coded with
pcodec (tANS). Lossless: the decoder recomputes every prediction from the
same integers with the same elementwise float64 operations (no reductions),
so it gets bit-identical predictions and the exact values back.

Measured (``benchmarks/pack.md``): ~0.6x the bytes of lossless JPEG XL for
Anscombe codes at step 1, ~0.75x for raw counts.
"""

from __future__ import annotations

import math
import struct

import numpy as np

MAGIC = b"EMP\x01"
_HEADER = struct.Struct("<4sBIId")  # magic, residual itemsize, H, W, step (NaN: raw counts)
#: coarsest grid: at most this many values per row and column are coded without a spatial prediction
_TOP = 8


def _zero_value(step: float | None) -> int:
    """The stored value of a pixel where no mask was open (Y = 0)."""
    return int(np.rint(2.0 * math.sqrt(0.375) / step)) if step else 0


def _t(v: np.ndarray, s: np.ndarray, step: float | None) -> np.ndarray:
    """Mask-normalised Anscombe value ``a / sqrt(S)`` (0 where S = 0)."""
    if step:
        a = v.astype(np.float64) * step
    else:
        a = 2.0 * np.sqrt(np.maximum(v, 0).astype(np.float64) + 0.375)
    return np.where(s > 0, a / np.sqrt(np.maximum(s, 1).astype(np.float64)), 0.0)


def _predict(t_hat: np.ndarray, s: np.ndarray, step: float | None, zero: int) -> np.ndarray:
    a = t_hat * np.sqrt(s.astype(np.float64))
    p = np.rint(a / step) if step else np.rint(np.maximum(a * a * 0.25 - 0.375, 0.0))
    return np.where(s > 0, p, zero).astype(np.int64)


def _gather(A: np.ndarray, r0: int, c0: int, st: int, n_r: int, n_c: int) -> np.ndarray:
    """``A[r0 + st*i, c0 + st*j]`` for i < n_r, j < n_c; 0 outside ``A``."""
    H, W = A.shape
    out = np.zeros((n_r, n_c), A.dtype)
    i0 = 0 if r0 >= 0 else -(r0 // st)
    j0 = 0 if c0 >= 0 else -(c0 // st)
    i1 = min(n_r, (H - 1 - r0) // st + 1) if r0 <= H - 1 else 0
    j1 = min(n_c, (W - 1 - c0) // st + 1) if c0 <= W - 1 else 0
    if i1 > i0 and j1 > j0:
        out[i0:i1, j0:j1] = A[r0 + st * i0 : r0 + st * (i1 - 1) + 1 : st,
                              c0 + st * j0 : c0 + st * (j1 - 1) + 1 : st]
    return out


def _top_stride(H: int, W: int) -> int:
    """Stride of the coarsest grid: the smallest power of two giving at most _TOP values per row and column."""
    st = 1
    while -(-H // st) > _TOP or -(-W // st) > _TOP:
        st *= 2
    return st


def _phases(H: int, W: int):
    """Yield (r0, c0, stride, neighbour offsets) in coding order, coarse to fine."""
    st = _top_stride(H, W)
    while st > 1:
        h = st // 2
        diag = ((-h, -h), (-h, h), (h, -h), (h, h))
        axis = ((-h, 0), (h, 0), (0, -h), (0, h))
        yield h, h, st, diag
        yield 0, h, st, axis
        yield h, 0, st, axis
        st = h


def _traverse(S: np.ndarray, step: float | None, values: np.ndarray | None = None,
              residuals: np.ndarray | None = None) -> np.ndarray:
    """Shared walk of coder and decoder: values -> residuals, or residuals -> values."""
    encoding = values is not None
    H, W = S.shape
    zero = _zero_value(step)
    v = np.asarray(values, np.int64) if encoding else np.empty((H, W), np.int64)
    T = np.zeros((H, W))   # t of the pixels known so far, 0 elsewhere
    Wt = np.zeros((H, W))  # their weight S (inverse noise variance of t), 0 elsewhere
    out: list[np.ndarray] = []
    pos = 0

    # the coarsest grid: raster DPCM
    st0 = _top_stride(H, W)
    sel = (slice(0, H, st0), slice(0, W, st0))
    s_top = S[sel]
    if encoding:
        flat = v[sel].ravel()
        out.append(flat - np.concatenate(([zero], flat[:-1])))
    else:
        n = s_top.size
        v[sel] = (zero + np.cumsum(residuals[:n])).reshape(s_top.shape)
        pos = n
    T[sel], Wt[sel] = _t(v[sel], s_top, step), s_top
    # fallback where no neighbour was open: the grid's mean t, from exact integer sums
    open_ = s_top > 0
    s_sum = int(s_top[open_].astype(np.int64).sum())
    vt = v[sel][open_]
    if step:
        a2 = float(int((vt * vt).sum())) * step * step
    else:
        a2 = 4.0 * float(int(np.maximum(vt, 0).sum())) + 1.5 * int(vt.size)
    t_fallback = math.sqrt(a2 / s_sum) if s_sum else 0.0

    for r0, c0, st, offsets in _phases(H, W):
        n_r, n_c = len(range(r0, H, st)), len(range(c0, W, st))
        if n_r == 0 or n_c == 0:
            continue
        num = np.zeros((n_r, n_c))
        den = np.zeros((n_r, n_c))
        for dr, dc in offsets:
            w = _gather(Wt, r0 + dr, c0 + dc, st, n_r, n_c)
            num = num + _gather(T, r0 + dr, c0 + dc, st, n_r, n_c) * w
            den = den + w
        t_hat = np.where(den > 0, num / np.where(den > 0, den, 1.0), t_fallback)
        sel = (slice(r0, H, st), slice(c0, W, st))
        s = S[sel]
        pred = _predict(t_hat, s, step, zero)
        if encoding:
            out.append((v[sel] - pred).ravel())
        else:
            n = pred.size
            v[sel] = pred + residuals[pos : pos + n].reshape(pred.shape)
            pos += n
        T[sel], Wt[sel] = _t(v[sel], s, step), s
    if encoding:
        return np.concatenate(out)
    if pos != residuals.size:
        raise ValueError(f"{residuals.size} residuals for {pos} values")
    return v


def encode_predictive(values: np.ndarray, S: np.ndarray, step: float | None = None) -> bytes:
    """Losslessly code one (H, W) integer measurement given its mask sum ``S``.

    Parameters
    ----------
    values : ndarray of int
        The stored measurement: raw sums of counts (``step=None``) or their
        Anscombe quantization codes (:func:`emcs.tcs.container.codecs.anscombe_codes`).
    S : ndarray of int, same shape
        Open masks per pixel (:func:`emcs.tcs.operator.open_count` of the masks used for
        this measurement).
    step : float, optional
        The Anscombe step the codes were made with (None: raw counts).

    Returns
    -------
    bytes

    Examples
    --------
    >>> from emcs.tcs.operator import open_count
    >>> rng = np.random.default_rng(0)
    >>> C = rng.random((10, 32, 48)) < 0.5
    >>> y = (rng.poisson(50, (10, 32, 48)) * C).sum(0)
    >>> data = encode_predictive(y, open_count(C))
    >>> bool((decode_predictive(data, open_count(C), None, y.shape) == y).all())
    True
    """
    import imagecodecs

    values = np.asarray(values)
    S = np.asarray(S)
    if values.ndim != 2 or values.shape != S.shape:
        raise ValueError(f"measurement {values.shape} and mask sum {S.shape} must be the same 2-D shape")
    if values.dtype.kind not in "iub":
        raise ValueError(f"predictive coding needs integer values, got {values.dtype}")
    r = _traverse(S, step, values=values)
    narrow = r.size == 0 or (int(r.min()) >= -(2**31) and int(r.max()) < 2**31)
    r = r.astype(np.int32 if narrow else np.int64)
    H, W = values.shape
    head = _HEADER.pack(MAGIC, r.itemsize, H, W, float("nan") if step is None else float(step))
    return head + (bytes(imagecodecs.pcodec_encode(r, level=8)) if r.size else b"")


def decode_predictive(data: bytes, S: np.ndarray, step: float | None, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`encode_predictive`: the (H, W) int64 values.

    Raises ValueError when the data are corrupt or were coded for another
    shape or step.
    """
    import imagecodecs

    if len(data) < _HEADER.size:
        raise ValueError("truncated predictive-coded measurement")
    magic, itemsize, H, W, st = _HEADER.unpack_from(data)
    if magic != MAGIC or itemsize not in (4, 8):
        raise ValueError("not a predictive-coded measurement")
    if (H, W) != tuple(shape) or np.shape(S) != (H, W):
        raise ValueError(f"coded for {(H, W)}, expected {tuple(shape)}")
    if not (math.isnan(st) if step is None else st == float(step)):
        raise ValueError(f"coded with step {st:g}, expected {step}")
    if H * W == 0:
        return np.zeros((H, W), np.int64)
    rtype = np.dtype(np.int32 if itemsize == 4 else np.int64)
    try:
        r = np.asarray(imagecodecs.pcodec_decode(data[_HEADER.size :], shape=(H * W,), dtype=rtype))
    except Exception as exc:  # the codec raises its own error types
        raise ValueError(str(exc) or type(exc).__name__) from exc
    if r.dtype != rtype or r.size != H * W:
        raise ValueError(f"decoded {r.size} {r.dtype} residuals, expected {H * W}")
    return _traverse(np.asarray(S), step, residuals=r.astype(np.int64).ravel())


__all__ = ["decode_predictive", "encode_predictive"]
