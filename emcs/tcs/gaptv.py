"""GAP-TV: the classical TCS decoder (no weights; any B, mask and frame size).

Generalized alternating projection (Liao, Li & Carin, SIAM J. Imaging Sci. 2014)
in its accelerated form with a total-variation denoiser (X. Yuan, "Generalized
alternating projection based total variation minimization for compressive
sensing", ICIP 2016), as in PnP-SCI (Yuan, Liu, Suo & Dai, CVPR 2020):

    theta_0 = Ybar (the normalized measurement, paper Eq. 2), y_acc = 0
    repeat `iters` times:
        y_hat  = A(theta)                        (A = forward model, Eq. 1)
        y_acc += y - y_hat                       (acceleration; plain GAP uses y)
        x      = theta + A^T((y_acc - y_hat) / R)     (R = sum_b C_b)
        theta  = TV-denoise(x, w_k)              (isotropic TV, Chambolle's
                                                  projection, 5 steps)

The defaults (accelerated, per-frame 2-D TV, w = 0.3, 40 iterations) are the
published PnP-SCI settings. For shot-noise-limited movies, plain GAP with a
spatio-temporal TV (``accelerate=False, temporal=1``) is far more robust; see
:data:`emcs.tcs.decode.GAPTV_SETTINGS` and ``benchmarks/encode.md``.

A, A^T and R are those of :mod:`emcs.tcs.operator` (the solver receives the
measurements and a :class:`~emcs.tcs.operator.TcsOperator`, or its masks).
All operations are elementwise or stencils in torch, batched over
measurements, on CPU or CUDA. Large frames are split into overlapping spatial
tiles (:func:`emcs.nn.tiling.tiled_apply`, blended linearly) so that memory
stays bounded. Values are in the scaled units of the caller (typically frames
in [0, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from emcs.nn.tiling import tiled_apply
from emcs.tcs.operator import TcsOperator, adjoint, forward, mask_sum, normalized_measurement

DEFAULT_ITERS = 40
DEFAULT_WEIGHT = 0.3
DEFAULT_FINAL_WEIGHT = None  # constant weight measured best on our test scenes
DEFAULT_TV_ITERS = 5
MAX_ELEMENTS = 1 << 23  # elements of one (n, B, H, W) work block before tiling (~0.4 GB of temporaries)
TILE_OVERLAP = 16
SMALL_BLOCK = 1 << 21  # below this many elements per block a single CPU thread is faster


def _torch():
    import torch

    return torch


def tv_denoise(x, weight: float, iters: int = DEFAULT_TV_ITERS, temporal: float = 0.0):
    """Isotropic TV denoising of the frames of ``x`` (…, B, H, W) (Chambolle 2004).

    Approximately solves ``min_u 0.5 ||u - x||^2 + weight * TV(u)`` with
    ``iters`` dual projection steps started from zero (the PnP-SCI /
    scikit-image recipe; the returned ``u`` uses the dual after ``iters - 1``
    updates, as scikit-image does). With ``temporal = 0`` the TV is 2-D, per
    frame (as in published GAP-TV); ``temporal = t > 0`` adds ``t`` times the
    difference between neighbouring frames (axis -3) to the gradient, a
    spatio-temporal TV that suppresses noise in slowly changing movies.

    Parameters
    ----------
    x : torch.Tensor
        (…, H, W) float tensor ((…, B, H, W) when ``temporal > 0``).
    weight : float
        Strength (larger = smoother), in the units of ``x``.
    iters : int
        Dual steps.
    temporal : float
        Weight of the temporal differences (0: per-frame 2-D TV).
    """
    torch = _torch()
    t = float(temporal)
    use_t = t > 0 and x.ndim >= 3 and x.shape[-3] > 1
    tau = 1.0 / (2.0 * (2.0 + (t * t if use_t else 0.0)))
    p0 = torch.zeros_like(x)
    p1 = torch.zeros_like(x)
    p2 = torch.zeros_like(x) if use_t else None
    out = x
    for i in range(iters):
        if i > 0:
            # out = x - K^T p, K = forward differences (rows, cols, t * frames)
            d = -(p0 + p1)
            d[..., 1:, :] += p0[..., :-1, :]
            d[..., :, 1:] += p1[..., :, :-1]
            if use_t:
                d -= t * p2
                d[..., 1:, :, :] += t * p2[..., :-1, :, :]
            out = x + d
        g0 = torch.zeros_like(x)
        g1 = torch.zeros_like(x)
        g0[..., :-1, :] = out[..., 1:, :] - out[..., :-1, :]
        g1[..., :, :-1] = out[..., :, 1:] - out[..., :, :-1]
        sq = g0 * g0 + g1 * g1
        if use_t:
            g2 = torch.zeros_like(x)
            g2[..., :-1, :, :] = (out[..., 1:, :, :] - out[..., :-1, :, :]) * t
            sq = sq + g2 * g2
        norm = torch.sqrt(sq).mul_(tau / weight).add_(1.0)
        p0 = (p0 - tau * g0) / norm
        p1 = (p1 - tau * g1) / norm
        if use_t:
            p2 = (p2 - tau * g2) / norm
    return out


def weight_schedule(iters: int, weight: float, final_weight: float | None) -> list[float]:
    """TV weight per iteration: geometric from ``weight`` to ``final_weight`` (or constant)."""
    if iters <= 0:
        return []
    if final_weight is None or final_weight == weight or iters == 1:
        return [float(weight)] * iters
    r = (final_weight / weight) ** (1.0 / (iters - 1))
    return [float(weight * r**k) for k in range(iters)]


def naive_estimate(y, masks):
    """The normalized measurement Ybar = Y / sum_b C_b repeated for every frame (paper Eq. 2).

    Parameters
    ----------
    y : ndarray or tensor
        (n, H, W) or (H, W) measurements.
    masks : TcsOperator, ndarray or tensor
        The operator, or its (B, H, W) binary masks.

    Returns
    -------
    (n, B, H, W) (or (B, H, W)) array of the same kind as ``y``, float32.

    Examples
    --------
    >>> import numpy as np
    >>> naive_estimate(np.full((2, 2), 3.0), np.ones((3, 2, 2), bool))[0].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    masks = _as_masks(masks)
    if isinstance(y, np.ndarray):
        c = np.asarray(masks, dtype=np.float32)
        yb = normalized_measurement(np.asarray(y, dtype=np.float32), c)
        return np.repeat(yb[..., None, :, :], c.shape[0], axis=-3)
    torch = _torch()
    c = torch.as_tensor(masks).to(device=y.device, dtype=torch.float32)
    yb = normalized_measurement(y.float(), c)
    return yb.unsqueeze(-3).expand(*yb.shape[:-2], c.shape[0], *yb.shape[-2:]).clone()


def _as_masks(masks):
    """The (B, H, W) masks of a :class:`TcsOperator`, or ``masks`` itself (an array or tensor)."""
    return masks.masks() if isinstance(masks, TcsOperator) else masks


def _gap_tv_block(y, c, iters, weights, tv_iters, accelerate, step, temporal=0.0):
    """GAP-TV on one (n, H, W) block with float masks c (B, H, W) (tensors on one device)."""
    torch = _torch()
    r = mask_sum(c)
    theta = adjoint(y / r, torch.ones_like(c))  # naive start: Ybar in every frame
    y_acc = torch.zeros_like(y)
    for k in range(iters):
        y_hat = forward(theta, c)
        if accelerate:
            y_acc = y_acc + (y - y_hat)
            resid = (y_acc - y_hat) / r
        else:
            resid = (y - y_hat) / r
        x = theta + step * adjoint(resid, c)
        theta = tv_denoise(x, weights[k], tv_iters, temporal)
    return theta


class _fewer_threads:
    """Use one CPU thread for small blocks (thread start-up costs more than it saves there)."""

    def __init__(self, torch, device, elements: int):
        self.torch = torch
        self.active = device.type == "cpu" and elements < SMALL_BLOCK and torch.get_num_threads() > 1
        self.saved = None

    def __enter__(self):
        if self.active:
            self.saved = self.torch.get_num_threads()
            self.torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            self.torch.set_num_threads(self.saved)
        return False


def gap_tv(
    y,
    masks,
    iters: int = DEFAULT_ITERS,
    weight: float = DEFAULT_WEIGHT,
    final_weight: float | None = DEFAULT_FINAL_WEIGHT,
    tv_iters: int = DEFAULT_TV_ITERS,
    accelerate: bool = True,
    step: float = 1.0,
    temporal: float = 0.0,
    device=None,
    max_elements: int = MAX_ELEMENTS,
    overlap: int = TILE_OVERLAP,
    progress: Callable[[int], None] | None = None,
):
    """Reconstruct B frames from each measurement with accelerated GAP-TV.

    Parameters
    ----------
    y : ndarray or torch.Tensor
        (n, H, W) or (H, W) measurements in scaled units (frames ~ [0, 1]).
    masks : TcsOperator, ndarray or torch.Tensor
        The operator of these measurements (:meth:`TcsOperator.group` for a
        short group), or the (B, H, W) binary masks they all used.
    iters : int
        Outer GAP iterations (40 is the PnP-SCI setting).
    weight, final_weight : float
        TV weight of the first and the last iteration (geometric schedule);
        ``final_weight=None`` keeps ``weight`` constant.
    tv_iters : int
        Chambolle steps per denoising.
    accelerate : bool
        Accelerated GAP (recommended).
    step : float
        Projection step lambda.
    temporal : float
        Weight of temporal differences in the TV (0 = per-frame TV, the
        published GAP-TV; see :func:`tv_denoise`).
    device : str or torch.device, optional
        Where to compute (default: CPU, or the tensor's device).
    max_elements : int
        Largest n*B*h*w block computed at once; larger problems are split over
        measurements and, if one measurement is too big, into overlapping
        spatial tiles.
    overlap : int
        Tile overlap in pixels (blended linearly).
    progress : callable, optional
        Called with the number of measurements finished.

    Returns
    -------
    ndarray or torch.Tensor
        (n, B, H, W) float32 (or (B, H, W) for a 2-D ``y``), same kind as ``y``
        (numpy in -> numpy out, on the CPU).

    Examples
    --------
    >>> import numpy as np
    >>> op = TcsOperator.generated(seed=1, B=4, frame_shape=(16, 16))
    >>> x = np.full((4, 16, 16), 0.5, np.float32)
    >>> rec = gap_tv(op.forward(x), op, iters=10)
    >>> rec.shape, bool(abs(rec - 0.5).max() < 0.05)
    ((4, 16, 16), True)
    """
    torch = _torch()
    as_numpy = not isinstance(y, torch.Tensor)
    if device is None:
        device = "cpu" if as_numpy else y.device
    device = torch.device(device)
    yt = torch.as_tensor(np.asarray(y, dtype=np.float32) if as_numpy else y).to(device, torch.float32)
    squeeze = yt.ndim == 2
    if squeeze:
        yt = yt[None]
    if isinstance(masks, TcsOperator):
        ct = masks.tensor(device=device)
    else:
        ct = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks)
        ct = ct.to(device=device, dtype=torch.float32)
    if ct.ndim != 3 or ct.shape[1:] != yt.shape[1:]:
        raise ValueError(f"masks of shape {tuple(ct.shape)} do not fit measurements {tuple(yt.shape)}")
    n, H, W = yt.shape
    B = ct.shape[0]
    weights = weight_schedule(iters, weight, final_weight)
    out = torch.empty((n, B, H, W), dtype=torch.float32, device=device)
    per_frame = B * H * W
    work = min(n * per_frame, max_elements)

    def block(t):  # t: (k, 1 + B, h, w), the measurements then the masks of one tile
        return _gap_tv_block(t[:, 0], t[0, 1:], iters, weights, tv_iters, accelerate, step, temporal)

    with torch.no_grad(), _fewer_threads(torch, device, work):
        if per_frame <= max_elements:
            batch = max(1, max_elements // per_frame)
            for s in range(0, n, batch):
                e = min(n, s + batch)
                out[s:e] = _gap_tv_block(yt[s:e], ct, iters, weights, tv_iters, accelerate, step,
                                         temporal)
                if progress is not None:
                    progress(e - s)
        else:  # one measurement at a time, in overlapping tiles of about max_elements
            side = max(2 * overlap + 8, int(math.sqrt(max_elements / B)))
            x = torch.empty((1, 1 + B, H, W), dtype=torch.float32, device=device)
            x[0, 1:] = ct
            for i in range(n):
                x[0, 0] = yt[i]
                out[i] = tiled_apply(block, x, tile=side, overlap=overlap, batch=1, margin=0,
                                     even=True)[0]
                if progress is not None:
                    progress(1)
    if squeeze:
        out = out[0]
    return out.cpu().numpy() if as_numpy else out


__all__ = ["DEFAULT_ITERS", "DEFAULT_WEIGHT", "gap_tv", "naive_estimate", "tv_denoise", "weight_schedule"]
