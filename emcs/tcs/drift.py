"""Drift blend: the static blend (:mod:`emcs.tcs.static`) for a scene under a rigid stage drift.

Why
---
The static blend pulls a network decoder's frames toward one still image where the
measurement shows no motion; on a specimen that drifts (the common case in EM: 0.2-0.8 px per
frame, several pixels over a group) it falls back to the network, which at B = 20-30 loses to
the image codecs. A drifting scene is still one image: ``x_b(p) = g_b s(p - d_b)`` with the
frame's displacement ``d_b``, so the measurement ``Y = sum_b C_b g_b T_b s`` (``T_b``: the
shift by ``d_b``) again holds ~B/2 frames of dose of every point of ``s``.

What
----
Per measurement, with the decoder's frames ``x_b`` (scaled to [0, 1]):

1. gains ``g_b`` (:func:`emcs.tcs.static.gains_and_mean`) and the displacement path ``d_b``:
   each frame's shift by phase correlation (Kuglin & Hines, Proc. IEEE Conf. Cybernetics and
   Society 1975; half-whitened, parabolic sub-pixel peak, central crop) against the middle frame,
   then three times against the mean of the frames moved back by their shifts; a polynomial of
   degree 2 in time fitted to the shifts (a drift is smooth; the fit averages the errors);
   the network's frames lag the motion (the path found is 0.2-0.7 of the true one on small
   rigidly drifting scenes), so the path is then scaled by the factor in 1 .. 2 that best
   predicts the measurement (:func:`path_scale`; chosen on the tuning set, session 16);
2. the weight ``alpha`` of the static blend's frames, from the network's frames and the
   measurement, local over windows, where the scene does not follow the drift:

   - the network's own variation around ``g_b T_b s_net`` (``T_b``: the shift by ``d_b``,
     ``s_net`` the network's frames moved back and averaged) against the shot noise of a frame;
   - the static blend's drift fit of the residual ``r = Y / S_g - sum_b C_b g_b T_b s_net / S_g``
     on ``-t grad`` (a displacement left over: rotation, local motion);
   - the local least-squares rate of ``r`` on the pixels' mean time ``t`` (a change in time that
     the network smooths away: a growing particle);

3. the static blend's frames (:func:`emcs.tcs.static.blend_measurement`: its still image carries
   the detail of ``Y / S`` that the network drops), moved back by ``d_b`` and averaged: the
   drifting still image ``s`` on a canvas that holds every frame's view (separable Catmull-Rom
   shifts: Catmull & Rom, Computer Aided Geometric Design 1974; Keys, IEEE Trans. ASSP 1981;
   the back-shift is their exact adjoint);
4. ``out_b = alpha static_b + (1 - alpha) g_b T_b s``.

A group whose largest displacement is below ``min_shift`` (or beyond ``max_shift``), or whose
frames are narrower than :data:`MIN_SIDE`, gets the static blend as it is. Tried and left out on the tuning set (benchmarks/tcs_heldout.md): SART
steps of ``s`` on the measurement (the path errors of a few tenths of a pixel make them fit
noise: -0.1..-0.2 dB) and a Gauss-Newton refinement of the path on the measurement (worse than
the network's frames' path). The path is estimated on the whole measurement's central crop; the
weights are local (a margin around strips of rows), so the frames do not depend on ``rows``.
Only numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emcs.tcs import static
from emcs.tcs.static import DEFAULT_SETTINGS, BlendSettings, box


@dataclass(frozen=True)
class DriftSettings:
    """Settings of :func:`blend_drifting` (chosen on the tuning set, benchmarks/tcs_heldout.md).

    Attributes
    ----------
    min_shift, max_shift : float
        Largest displacement over the group (pixels) from which on, and up to which, the drift
        is compensated (else: the static blend as it is).
    order : int
        Degree of the polynomial path fitted to the per-frame shifts.
    crop : int
        Side of the central crop on which the shifts are estimated.
    change_noise : float
        Frame-noise variances of decoder variation (around the drifting still image) at which
        alpha = 1/2.
    rate_noise : float
        Frame-noise variances of the change over the group that the measurement shows (the
        local fit of the residual on the pixels' mean time ``t``) at which alpha = 1/2.
    max_path_scale : float
        The path found on the network's frames is tried scaled by 1 .. ``max_path_scale`` (steps
        of :data:`PATH_SCALE_STEP`) and the scale that best predicts the measurement is kept
        (:func:`path_scale`; the network's frames lag the motion). 1: the path as found.
    """

    min_shift: float = 0.1
    max_shift: float = 40.0
    order: int = 2
    crop: int = 256
    change_noise: float = 2.0
    rate_noise: float = 0.5
    max_path_scale: float = 2.0


DEFAULT_DRIFT = DriftSettings()
#: step of the path scales tried by :func:`path_scale`
PATH_SCALE_STEP = 0.25
#: frames narrower than this (pixels) get the static blend as it is
MIN_SIDE = 8


# --------------------------------------------------------------------------- shifts
def _cubic_weights(t: float) -> np.ndarray:
    """Catmull-Rom weights of the samples at -1, 0, 1, 2 for a point at fraction ``t``."""
    t2, t3 = t * t, t * t * t
    return np.array([-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2]) / 2


def _taps(d: float, pad: int) -> tuple[int, np.ndarray]:
    """(first canvas index, weights) of output index 0 for a shift by ``d`` (``out(p) =
    canvas(p + pad - d)``)."""
    u = pad - d
    i = int(np.floor(u))
    return i - 1, _cubic_weights(u - i).astype(np.float32)


#: rows of a shift computed at once (both axes), so that its intermediates stay in cache
SHIFT_BLOCK = 32


def _sum_taps(views: list[np.ndarray], w: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> None:
    """``out = w[0] views[0] + w[1] views[1] + ...``, the terms added in order (``tmp``: a buffer
    of ``out``'s shape for each product)."""
    np.multiply(views[0], w[0], out=out)
    for view, wj in zip(views[1:], w[1:], strict=True):
        np.multiply(view, wj, out=tmp)
        out += tmp


def shift_from(canvas: np.ndarray, d, pad: int, shape: tuple[int, int]) -> np.ndarray:
    """Frame ``out(p) = canvas(p + pad - d)`` of ``shape`` (cubic interpolation, separable).

    Made in blocks of :data:`SHIFT_BLOCK` rows, each through both axes before the next, with the
    same products and sums per pixel as the two whole-frame passes (bitwise the same output).
    """
    (iy, wy), (ix, wx) = _taps(float(d[0]), pad), _taps(float(d[1]), pad)
    H, W = shape
    dtype = np.result_type(canvas.dtype, wy.dtype)
    out = np.empty((H, W), dtype)
    rows = np.empty((SHIFT_BLOCK, canvas.shape[1]), dtype)
    tmp_r, tmp = np.empty_like(rows), np.empty((SHIFT_BLOCK, W), dtype)
    for r0 in range(0, H, SHIFT_BLOCK):
        k = min(SHIFT_BLOCK, H - r0)
        _sum_taps([canvas[iy + j + r0:iy + j + r0 + k] for j in range(4)], wy, rows[:k], tmp_r[:k])  # first axis
        _sum_taps([rows[:k, ix + j:ix + j + W] for j in range(4)], wx, out[r0:r0 + k], tmp[:k])  # last axis
    return out


def shift_to(frame: np.ndarray, d, pad: int, canvas_shape: tuple[int, int]) -> np.ndarray:
    """The exact adjoint of :func:`shift_from`: ``frame`` spread back onto a zero canvas.

    Canvas rows are made in blocks of :data:`SHIFT_BLOCK`, each summing its terms in the order of
    the two whole-frame passes (the last axis, then the first; each from zero in the order of the
    taps): bitwise the same canvas.
    """
    (iy, wy), (ix, wx) = _taps(float(d[0]), pad), _taps(float(d[1]), pad)
    h, w = frame.shape
    Hc, Wc = canvas_shape
    out = np.zeros((Hc, Wc), np.float32)  # float32 whatever the frame's type, as before
    spread = np.zeros((SHIFT_BLOCK + 3, Wc), np.float32)  # the frame's rows spread along the last axis
    tmp = np.empty((SHIFT_BLOCK + 3, w), np.result_type(frame.dtype, wy.dtype))
    for c0 in range(max(0, iy), min(Hc, iy + 3 + h), SHIFT_BLOCK):
        c1 = min(c0 + SHIFT_BLOCK, Hc)
        s0, s1 = max(0, c0 - iy - 3), min(h, c1 - iy)  # frame rows that reach canvas rows [c0, c1)
        sp, t = spread[:s1 - s0], tmp[:s1 - s0]
        sp[:] = 0
        for j in range(4):
            np.multiply(frame[s0:s1], wx[j], out=t)
            sp[:, ix + j:ix + j + w] += t
        for j in range(4):  # canvas row c gets frame row c - iy - j
            lo, hi = max(c0, s0 + iy + j), min(c1, s1 + iy + j)
            if lo < hi:
                out[lo:hi] += wy[j] * sp[lo - iy - j - s0:hi - iy - j - s0]
    return out


def _line_cover(n: int, d: float, pad: int) -> np.ndarray:
    """:func:`shift_to` of ones along one axis (the weight each canvas line gets from a frame)."""
    i0, w = _taps(d, pad)
    out = np.zeros(n + 2 * pad, np.float32)
    for j, wj in enumerate(w):
        out[i0 + j:i0 + j + n] += wj
    return out


# --------------------------------------------------------------------------- the path
def _crop_window(n: int, crop: int) -> slice:
    """The central ``crop`` of ``n``."""
    k = min(n, crop)
    return slice((n - k) // 2, (n - k) // 2 + k)


def _windowed(a: np.ndarray) -> np.ndarray:
    """``a`` less its mean, times a Hann window (no edge jump in the correlation)."""
    return (a - a.mean()) * np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))


def _moved(a: np.ndarray, d) -> np.ndarray:
    """``a(p - d)`` (edges repeated outside)."""
    pad = int(np.ceil(np.abs(d).max())) + 3
    return shift_from(np.pad(a, pad, mode="edge"), d, pad, a.shape)


def _peak(corr: np.ndarray) -> np.ndarray:
    """Sub-pixel position (signed, wrapped) of the maximum of a circular correlation."""
    i, j = np.unravel_index(int(np.argmax(corr)), corr.shape)
    out = []
    for axis, k in ((0, i), (1, j)):
        n = corr.shape[axis]
        at = [i, j]
        vals = []
        for step in (-1, 0, 1):
            at[axis] = (k + step) % n
            vals.append(corr[tuple(at)])
        den = vals[0] - 2 * vals[1] + vals[2]
        frac = 0.5 * (vals[0] - vals[2]) / den if den < 0 else 0.0
        pos = k + float(np.clip(frac, -0.5, 0.5))
        out.append(pos - n if pos > n / 2 else pos)
    return np.array(out)


def _shifts_against(frames: list[np.ndarray], ref: np.ndarray) -> np.ndarray:
    """Displacement of each (windowed) frame against ``ref`` by phase correlation."""
    R = np.conj(np.fft.rfft2(ref))
    out = []
    for f in frames:
        cross = np.fft.rfft2(f) * R
        cross /= np.sqrt(np.abs(cross)) + 1e-12  # half whitening: robust at low counts
        out.append(_peak(np.fft.irfft2(cross, s=ref.shape)))
    return np.array(out)


def frame_path(x: np.ndarray, g: np.ndarray, settings: DriftSettings = DEFAULT_DRIFT) -> np.ndarray:
    """(B, 2) displacements ``d_b`` (pixels, rows and columns) of frame ``b`` against the
    group's reference position (``x_b(p) ~ g_b s(p - d_b)``), a polynomial in ``b`` of zero mean.

    The shifts are found on a central crop: each frame against the middle one, then three times
    each frame moved back by its shift against the mean of the moved frames (the left-over shift
    is small, where the window and the parabolic peak are not biased toward zero)."""
    B, H, W = x.shape
    rows, cols = _crop_window(H, settings.crop), _crop_window(W, settings.crop)
    frames = [np.asarray(xb[rows, cols], np.float32) / np.float32(gb) for xb, gb in zip(x, g, strict=True)]
    d = _shifts_against([_windowed(f) for f in frames], _windowed(frames[B // 2]))
    for _ in range(3):
        moved = [_moved(f, -db) for f, db in zip(frames, d, strict=True)]
        d = d + _shifts_against([_windowed(f) for f in moved], _windowed(np.mean(moved, axis=0)))
    t = np.arange(B) - (B - 1) / 2
    order = min(settings.order, B - 1)
    fit = np.stack([np.polyval(np.polyfit(t, d[:, k], order), t) for k in (0, 1)], axis=1)
    return fit - fit.mean(axis=0)


def path_scale(x: np.ndarray, y: np.ndarray, masks, g: np.ndarray, d: np.ndarray,
               settings: DriftSettings = DEFAULT_DRIFT) -> float:
    """The factor c in 1 .. ``settings.max_path_scale`` for which the measurement is best
    predicted by a still scene moving along ``c d``.

    A network's frames of a drifting scene lag the motion (part of each frame stays at the
    group's mean), so the path found on them is short. On the central crop, the middle frame
    moved back to the reference position, ``s``, predicts ``Y ~ sum_b C_b g_b T_{c d_b} s``;
    the c of the least mean squared residual (over the crop less a margin that the largest shift
    cannot reach) is returned."""
    if settings.max_path_scale <= 1.0:
        return 1.0
    B, H, W = x.shape
    rows, cols = _crop_window(H, settings.crop), _crop_window(W, settings.crop)
    C = np.asarray(static.mask_rows(masks, B, rows.start, rows.stop), bool)[:, :, cols]
    xc, yc = x[:, rows, cols], np.asarray(y[rows, cols], np.float32)
    margin = int(np.ceil(np.abs(d).max() * settings.max_path_scale)) + 3
    h, w = yc.shape
    if min(h, w) <= 2 * margin + 8:
        return 1.0
    mid = B // 2
    inner = np.s_[margin:h - margin, margin:w - margin]
    n = int(round((settings.max_path_scale - 1.0) / PATH_SCALE_STEP)) + 1
    best, best_c = np.inf, 1.0
    for c in np.linspace(1.0, settings.max_path_scale, n):
        dc = c * d
        s = _moved(xc[mid] / np.float32(g[mid]), -dc[mid])
        pred = sum(np.where(C[b], np.float32(g[b]) * _moved(s, dc[b]), 0) for b in range(B))
        err = float(np.mean(np.square(yc - pred)[inner]))
        if err < best:
            best, best_c = err, float(c)
    return best_c


# --------------------------------------------------------------------------- the blend
def blend_drifting(x: np.ndarray, y: np.ndarray, masks, sigma: float, *, offset: float = 0.0,
                   quantize: float = 0.0, settings: BlendSettings = DEFAULT_SETTINGS,
                   drift: DriftSettings = DEFAULT_DRIFT, rows: int = static.STRIP_ROWS,
                   out: np.ndarray | None = None, workers: int = 1) -> tuple[np.ndarray, dict]:
    """The drift blend of one measurement's decoded frames (parameters and results as
    :func:`emcs.tcs.static.blend_measurement`, plus the :class:`DriftSettings`; ``stats`` adds
    ``shift_px``, the largest displacement from the reference, and ``mode``)."""
    B, H, W = x.shape
    g, _, ref = gm = static.gains_and_mean(x, settings.window, offset)
    d = frame_path(x, g, drift)
    largest = float(np.hypot(d[:, 0], d[:, 1]).max())
    blend_kw = dict(offset=offset, quantize=quantize, settings=settings, rows=rows, out=out,
                    workers=workers, stats=gm)
    if not drift.min_shift <= largest <= drift.max_shift or min(H, W) < MIN_SIDE:
        frames, stats = static.blend_measurement(x, y, masks, sigma, **blend_kw)
        return frames, dict(stats, shift_px=largest, mode="static")
    scale = path_scale(x, y, masks, g, d, drift)
    d = d * scale
    pad = int(np.ceil(np.abs(d).max())) + 3
    halo = 3 * pad + 2 * max(settings.window, settings.drift_window) + 4
    alpha = np.empty((H, W), np.float32)
    leftover = []

    def strip(r0, r1):
        a0, a1 = max(0, r0 - halo), min(H, r1 + halo)
        C = np.asarray(static.mask_rows(masks, B, a0, a1), bool)
        a, dev = _strip_weight(x[:, a0:a1], y[a0:a1], C, g, d, pad, sigma, offset,
                               ref, settings, drift)
        keep = slice(r0 - a0, r1 - a0)
        return a[keep], np.median(dev[keep])

    for r0, r1, (a, dev) in static.map_strips(strip, H, rows, workers):
        alpha[r0:r1] = a
        leftover.append(dev)
    # the network's frames are read before here only: the static blend may write over them; the
    # drifting still image is made of its frames (which hold its still image's detail)
    frames, stats = static.blend_measurement(x, y, masks, sigma, **blend_kw)
    canvas = _still(frames, g, d, pad)
    beta = 1 - alpha

    def finish(r0, r1):  # out_b = alpha static_b + (1 - alpha) g_b T_b s, rows [r0, r1) of every frame
        a, c, part = alpha[r0:r1], beta[r0:r1], canvas[r0:r1 + 2 * pad]
        for b in range(B):
            frames[b, r0:r1] = a * frames[b, r0:r1] + c * (np.float32(g[b]) * shift_from(part, d[b], pad, (r1 - r0, W)))

    for _ in static.map_strips(finish, H, rows, workers):  # strips of rows in threads, written in place
        pass
    stats.update(alpha=float(alpha.mean(dtype=np.float64)), drift_px=float(np.median(leftover)),
                 shift_px=largest, mode="drift", path_scale=scale)
    return frames, stats


def _still(x: np.ndarray, g: np.ndarray, d: np.ndarray, pad: int) -> np.ndarray:
    """The frames shifted back by their displacements and averaged (gain-corrected) on a canvas
    ``pad`` wider each side (the overall mean where no frame sees the canvas)."""
    B, h, w = x.shape
    cshape = (h + 2 * pad, w + 2 * pad)
    cover = sum(np.outer(_line_cover(h, d[b][0], pad), _line_cover(w, d[b][1], pad)) for b in range(B))
    mean = float(x.mean(dtype=np.float64) / g.mean())
    total = sum(shift_to(x[b] / np.float32(g[b]), d[b], pad, cshape) for b in range(B))
    return ((total + 1e-3 * mean) / (cover + 1e-3)).astype(np.float32)


def _strip_weight(x, y, C, g, d, pad, sigma, offset, ref, settings: BlendSettings,
                  drift: DriftSettings):
    """(alpha, left-over displacement D) of a strip (module docstring, step 3)."""
    B, h, w = x.shape
    S, Sg, tau = static.mask_times(C, g)
    opened = S > 0
    s = _still(x, g, d, pad)
    pred0 = change = 0  # sums over the frames of C_b still_b and (x_b - still_b)^2, a frame at a time
    for b in range(B):
        still_b = np.float32(g[b]) * shift_from(s, d[b], pad, (h, w))
        pred0 = pred0 + C[b] * still_b
        change = change + (x[b] - still_b) ** 2
    del s, still_b
    m0 = np.where(opened, pred0 / Sg, 0.0)
    r = np.where(opened, np.asarray(y, np.float64) / Sg - m0, 0.0)
    del pred0, Sg
    dev = static.local_drift(r, tau, m0, settings.drift_window) * (B - 1) / 2
    ramp = np.clip((dev - settings.drift_lo) / (settings.drift_hi - settings.drift_lo), 0, 1)
    v_frame = static.frame_noise(m0, sigma, offset, ref, settings.window)
    change = box(change / B, settings.window)
    # a change in time: the local least-squares rate of r on tau, over the group
    rate = (box(tau * r, settings.window) / (box(tau * tau, settings.window) + 1e-12) * (B - 1)) ** 2
    alpha = np.maximum.reduce([ramp, change / (change + drift.change_noise * v_frame + 1e-12),
                               rate / (rate + drift.rate_noise * v_frame + 1e-12)])
    return alpha.astype(np.float32), dev


__all__ = ["DEFAULT_DRIFT", "PATH_SCALE_STEP", "DriftSettings", "blend_drifting", "frame_path", "path_scale",
           "shift_from", "shift_to"]
