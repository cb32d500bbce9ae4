"""Static blend: pull a decoder's frames toward one still image where the scene does not move.

Why
---
For a still scene, a TCS measurement holds everything there is to know: with masks C_b and
frames X_b = X, ``Y = sum_b C_b X = S X`` (S = open masks per pixel), so ``Y / S`` is the
scene averaged over ~B/2 frames of dose, and the more frames a measurement codes, the better
it is known. A network decoder trained on moving clips does not use this: it spreads the
measurement's noise over B frames as flicker and smooths away detail that ``Y / S`` still
holds, so on a slowly drifting specimen it gets *worse* with B (issue 17: about 4 dB from B =
10 to 30), while the codecs keep the detail.

What
----
Per measurement, with the decoder's frames ``x_b`` (scaled to [0, 1]):

1. a per-frame gain ``g_b`` (mean of ``x_b`` over the mean of all frames: beam-current drift)
   and the gain-corrected temporal mean ``m`` of the decoder's frames;
2. a still image ``s``: ``m`` plus the detail the decoder dropped, i.e. the static residual
   ``r = Y / S_g - m`` (``S_g = sum_b g_b C_b``) shrunk by a local Wiener factor
   ``max(0, 1 - k v / <r^2>)`` with ``v`` the noise variance of ``Y / S`` (the encoder's noise
   estimate of one frame over S, grown by the Anscombe quantisation's ``1 + q^2 / 12`` and
   scaled with the local brightness as shot noise is) -- residual ("twicing") denoising
   (Tukey, Exploratory Data Analysis, 1977; Wiener shrinkage as in Lee, IEEE TPAMI 1980);
3. two tests for motion, local over a window:

   - **drift**: the first-order model of a scene shifted by ``(b - b0) v`` gives
     ``Y / S_g = s - t (v . grad s)`` with ``t = sum_b g_b (b - b0) C_b / S_g`` the known
     mask-weighted mean time of each pixel (the random masks code time; Llull et al.,
     Opt. Express 2013), so the local least-squares fit of ``r`` on ``-t grad m`` estimates
     the drift ``v`` from the measurement itself -- a Lucas-Kanade fit (Lucas & Kanade,
     IJCAI 1981) with ``t`` as the time of each pixel; ``D = |v| (B - 1) / 2`` is the largest
     displacement from the group's middle frame;
   - **change**: the decoder's own temporal variation ``E = <(x_b - g_b m)^2>`` against the
     shot noise of a frame (local changes such as a growing particle that are not a drift);

   ``alpha = max(ramp(D; drift_lo, drift_hi), E / (E + change_noise * v_frame))``;
4. ``out_b = alpha x_b + (1 - alpha) g_b s``: the decoder's frames where the scene moves, the
   still image (with the gains) where it does not.

Data consistency: where ``alpha = 0`` the forward model of the output is ``S_g s``, which
differs from Y by ``S_g`` times the shrunk part of ``r``: at most the noise (the Wiener factor
keeps all of ``r`` that the noise does not explain); :func:`consistency` measures it.

Each measurement is treated on its own (no context across groups), so the result of a group
does not depend on how the movie is cut into chunks. Only numpy; windows are repeated box
filters (cumulative sums).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from emcs.errors import EmcsError

#: values of the ``static_blend`` parameter: "on" blends the network decoders' frames (GAP-TV's
#: are kept) with a still image and, where the scene drifts, a drifting one
#: (:func:`emcs.tcs.drift.blend_drifting`); "static" with the still image only
#: (:func:`blend_measurement`); "off" leaves every decoder's frames as they are
STATIC_BLEND = ("off", "on", "static")
#: the default: on (held-out movies: never more than 0.06 dB worse than the still image only,
#: which is never more than 0.02 dB worse than the network; up to +7 dB on near-static ones,
#: up to +2.7 dB more on drifting ones; benchmarks/tcs_heldout.md)
DEFAULT_STATIC_BLEND = "on"


@dataclass(frozen=True)
class BlendSettings:
    """Settings of :func:`blend_measurement` (chosen on the tuning set, benchmarks/tcs_heldout.md).

    Attributes
    ----------
    window : int
        Half-width (pixels) of the local windows of the residual and change statistics.
    drift_window : int
        Half-width (pixels) of the local drift fit.
    noise_factor : float
        ``k`` of the Wiener shrinkage of the static residual (1: the plain Wiener factor).
    drift_lo, drift_hi : float
        Largest displacement over the group (pixels) at which the still image is used fully
        (below ``drift_lo``) and not at all (above ``drift_hi``).
    change_noise : float
        Frame-noise variances of decoder variation at which alpha = 1/2.
    """

    window: int = 4
    drift_window: int = 16
    noise_factor: float = 1.0
    drift_lo: float = 1.0
    drift_hi: float = 2.0
    change_noise: float = 0.5


DEFAULT_SETTINGS = BlendSettings()
#: rows of a frame blended at once (bounded memory for large frames)
STRIP_ROWS = 256
#: most strips blended at once, in threads (numpy releases the GIL): each adds one strip's
#: temporaries (the blend of a 4096 x 4096, B = 10 measurement peaked 0.19 GB higher with 2)
MAX_WORKERS = 2


def map_strips(fn, H: int, rows: int, workers: int = 1):
    """Yield ``(r0, r1, fn(r0, r1))`` for the strips ``[r0, r1)`` of ``rows`` rows of ``H``, in
    order; with ``workers`` > 1 that many strips (at most :data:`MAX_WORKERS`) are computed at
    once in threads, and no more are started than are consumed (bounded memory).

    >>> [(r0, r1, v) for r0, r1, v in map_strips(lambda a, b: b - a, 5, 2, workers=2)]
    [(0, 2, 2), (2, 4, 2), (4, 5, 1)]
    """
    spans = [(r0, min(H, r0 + rows)) for r0 in range(0, H, rows)]
    workers = min(workers, MAX_WORKERS)
    if workers <= 1 or len(spans) <= 1:
        for r0, r1 in spans:
            yield r0, r1, fn(r0, r1)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    from itertools import islice

    todo = iter(spans)
    with ThreadPoolExecutor(min(workers, len(spans))) as pool:
        running = deque((span, pool.submit(fn, *span)) for span in islice(todo, workers))
        while running:
            (r0, r1), future = running.popleft()
            result = future.result()
            nxt = next(todo, None)
            if nxt is not None:
                running.append((nxt, pool.submit(fn, *nxt)))
            yield r0, r1, result


def mask_rows(masks, B: int, r0: int, r1: int):
    """Rows ``[r0, r1)`` of the B masks: of an array (B, H, W), or drawn by an operator
    (``masks.masks(B, rows=...)``, without the whole frame's masks)."""
    return masks[:, r0:r1] if isinstance(masks, np.ndarray) else masks.masks(B, rows=(r0, r1))


def check_static_blend(static_blend: str) -> None:
    """Raise :class:`EmcsError` naming ``static_blend`` unless it is one of :data:`STATIC_BLEND`."""
    if static_blend not in STATIC_BLEND:
        raise EmcsError(f"static_blend must be one of {', '.join(STATIC_BLEND)}, got {static_blend!r}",
                        param="static_blend")


def box(a: np.ndarray, radius: int, passes: int = 2) -> np.ndarray:
    """Local mean over (2 radius + 1)^2 windows, ``passes`` times (edges: shrunken windows).

    Examples
    --------
    >>> bool(np.allclose(box(np.ones((5, 7)), 2), 1.0))
    True
    """
    out = np.asarray(a, np.float64)
    for _ in range(passes):
        for axis in (0, 1):
            out = _box1d(out, radius, axis)
    return out


#: rows of the running sums along the last axis computed at once (kept in cache)
BOX_BLOCK = 32
#: shortest rows for which the sums along the first axis are taken row by row
BOX_ROW_LOOP = 256


def _box1d(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over ``2 radius + 1`` neighbours along ``axis`` (fewer at the edges), by running sums.

    The sums are taken along ``axis`` itself, as numpy's ``cumsum`` adds (a strided view's sums
    along a non-contiguous axis were 2x slower), and each output row is the difference of two
    sums divided by the window's size. So that the sums are read back from cache rather than
    memory, the first axis is walked row by row (each output row made as soon as its window is
    summed) when rows are long, and the last axis in blocks of :data:`BOX_BLOCK` rows: the
    same additions and divisions in the same order as one ``cumsum`` over the whole array
    (bitwise the same output; 3.5x / 1.35x faster on a 456 x 4096 strip, benchmarks/tcs_speed.md).
    """
    n = a.shape[axis]
    idx = np.arange(n)
    hi, lo = np.minimum(idx + radius + 1, n), np.maximum(idx - radius, 0)
    size = (hi - lo).astype(np.float64)
    out = np.empty(a.shape)
    if axis == 0 and a.size >= BOX_ROW_LOOP * n:
        c = np.empty((n + 1,) + a.shape[1:])
        c[0] = 0
        i = 0
        for j in range(n):
            np.add(c[j], a[j], out=c[j + 1])
            while i < n and hi[i] <= j + 1:  # row i's window is summed
                np.subtract(c[hi[i]], c[lo[i]], out=out[i])
                out[i] /= size[i]
                i += 1
        return out
    if axis == 1 and a.ndim == 2 and n >= BOX_ROW_LOOP:
        c = np.empty((BOX_BLOCK, n + 1))
        for r0 in range(0, a.shape[0], BOX_BLOCK):
            block = out[r0:r0 + BOX_BLOCK]
            _window_sums(a[r0:r0 + BOX_BLOCK], radius, 1, hi, lo, block, c[:len(block)])
            block /= size
        return out
    _window_sums(a, radius, axis, hi, lo, out, np.empty(a.shape[:axis] + (n + 1,) + a.shape[axis + 1:]))
    out /= size.reshape([-1 if d == axis else 1 for d in range(a.ndim)])
    return out


def _window_sums(a: np.ndarray, radius: int, axis: int, hi: np.ndarray, lo: np.ndarray,
                 out: np.ndarray, c: np.ndarray) -> None:
    """Sums of ``a`` over the windows ``[lo, hi)`` along ``axis`` into ``out``, by differences of
    the running sums ``c`` (a buffer one longer than ``a`` along ``axis``)."""
    n = a.shape[axis]

    def along(index):
        return tuple(index if d == axis else slice(None) for d in range(a.ndim))

    c[along(slice(0, 1))] = 0
    np.cumsum(a, axis=axis, out=c[along(slice(1, None))])
    k = min(radius + 1, n)  # rows whose window is cut by an edge: [0, k) and [n - k, n)
    if n > 2 * k:
        np.subtract(c[along(slice(k + radius + 1, n - k + radius + 1))], c[along(slice(k - radius, n - k - radius))],
                    out=out[along(slice(k, n - k))])
    for rows in (np.arange(0, k), np.arange(max(k, n - k), n)):
        out[along(rows)] = np.take(c, hi[rows], axis=axis) - np.take(c, lo[rows], axis=axis)


def blend_measurement(x: np.ndarray, y: np.ndarray, masks, sigma: float, *,
                      offset: float = 0.0, quantize: float = 0.0,
                      settings: BlendSettings = DEFAULT_SETTINGS,
                      rows: int = STRIP_ROWS, out: np.ndarray | None = None, workers: int = 1,
                      stats: tuple | None = None) -> tuple[np.ndarray, dict]:
    """The static blend of one measurement's decoded frames.

    Parameters
    ----------
    x : ndarray (B, H, W)
        Decoded frames, scaled (input range -> [0, 1]).
    y : ndarray (H, W)
        The measurement of those scaled frames (:meth:`~emcs.tcs.operator.TcsOperator.scale_measurements`).
    masks : ndarray (B, H, W) or TcsOperator
        The group's binary masks, or the operator of the group (its masks are made a strip of
        rows at a time).
    sigma : float
        Noise standard deviation of one frame, scaled (the encoder's estimate over the range).
    offset : float
        Scaled value of zero signal below the range's bottom (``lo / (hi - lo)``): the shot
        noise of a pixel grows with ``x + offset``.
    quantize : float
        Anscombe step of the container's quantised sums (0: exact sums).
    settings : BlendSettings
    rows : int
        Rows computed at once, with a margin each side as wide as the windows reach (two box
        passes and the gradient), so that the result is that of one piece.
    out : ndarray (B, H, W) float32, optional
        Receives the frames (may be ``x`` itself: the statistics are taken first).
    workers : int
        Strips computed at once, in threads (at most :data:`MAX_WORKERS`); the frames do not
        depend on it.
    stats : tuple, optional
        ``gains_and_mean(x, settings.window, offset)`` when the caller has it already.

    Returns
    -------
    frames : ndarray (B, H, W) float32
    stats : dict
        ``alpha`` (mean weight of the decoder's frames), ``drift_px`` (median displacement
        estimate D over the strips), ``gain_range``.
    """
    B, H, _ = x.shape
    g, m, ref = stats if stats is not None else gains_and_mean(x, settings.window, offset)
    halo = 2 * max(settings.window, settings.drift_window) + 2
    still, alpha = np.empty((2, *m.shape), np.float32)
    drifts = []

    def strip(r0, r1):
        a0, a1 = max(0, r0 - halo), min(H, r1 + halo)
        s, a, drift = _still_and_weight(x[:, a0:a1], y[a0:a1], mask_rows(masks, B, a0, a1), g, m[a0:a1], sigma,
                                        offset, ref, quantize, settings)
        keep = slice(r0 - a0, r1 - a0)
        return s[keep], a[keep], np.median(drift[keep])

    for r0, r1, (s, a, drift) in map_strips(strip, H, rows, workers):
        still[r0:r1], alpha[r0:r1] = s, a
        drifts.append(drift)
    out = np.empty(x.shape, np.float32) if out is None else out
    for b in range(B):  # out_b = alpha x_b + (1 - alpha) g_b s, a frame at a time
        out[b] = alpha * x[b] + (1 - alpha) * (np.float32(g[b]) * still)
    stats = {"alpha": float(alpha.mean(dtype=np.float64)), "drift_px": float(np.median(drifts)),
             "gain_range": [float(g.min()), float(g.max())]}
    return out, stats


def gains_and_mean(x: np.ndarray, window: int, offset: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-frame gains ``g_b`` (frame mean over the mean of all frames), the gain-corrected
    temporal mean ``m`` and the reference level of the shot noise (median local mean + offset)."""
    B = x.shape[0]
    total = float(x.mean(dtype=np.float64))
    g = x.mean(axis=(1, 2), dtype=np.float64) / total if total > 1e-6 else np.ones(B)
    g = np.clip(g, 0.2, 5.0)
    m = np.einsum("bhw,b->hw", x, 1.0 / g / B, dtype=np.float64)
    return g, m, median_local_mean(m, window) + offset


def median_local_mean(m: np.ndarray, window: int) -> float:
    """``np.median(box(np.maximum(m, 0), window))``, made in strips of :data:`STRIP_ROWS` rows
    (a 2-pass box needs ``2 window`` rows of margin) with one frame-sized buffer: the box of a
    whole 4096^2 frame at once held ~770 MB of temporaries.

    >>> a = np.random.default_rng(0).random((300, 40))
    >>> bool(np.isclose(median_local_mean(a, 3), np.median(box(a, 3))))
    True
    """
    H = m.shape[0]
    halo = 2 * window
    local = np.empty(m.shape, np.float64)
    for r0 in range(0, H, STRIP_ROWS):
        r1 = min(H, r0 + STRIP_ROWS)
        a0, a1 = max(0, r0 - halo), min(H, r1 + halo)
        local[r0:r1] = box(np.maximum(m[a0:a1], 0.0), window)[r0 - a0 : r1 - a0]
    flat = local.ravel()
    lo, hi = (flat.size - 1) // 2, flat.size // 2
    flat.partition((lo, hi))  # in place: no second frame-sized copy
    return float(flat[lo] + flat[hi]) / 2


def _still_and_weight(x, y, C, g, m, sigma, offset, ref, quantize, settings: BlendSettings):
    """(still image s, weight alpha of the decoder's frames, drift D) of a strip (see the module
    docstring)."""
    B = x.shape[0]
    S, Sg, tau = mask_times(C, g)
    r = np.where(S > 0, np.asarray(y, np.float64) / Sg - m, 0.0)
    del Sg  # strip-sized arrays are let go as soon as they are used (two strips run at once)

    v_frame = frame_noise(m, sigma, offset, ref, settings.window)
    v_mean = v_frame * (1 + quantize**2 / 12) / np.maximum(S, 1)
    del S
    energy = box(r * r, settings.window) + 1e-12
    s = m + r * np.maximum(0.0, 1.0 - settings.noise_factor * v_mean / energy)
    del v_mean, energy

    drift = local_drift(r, tau, m, settings.drift_window) * (B - 1) / 2
    del r, tau
    ramp = np.clip((drift - settings.drift_lo) / (settings.drift_hi - settings.drift_lo), 0, 1)
    change = np.zeros_like(m)
    for xb, gb in zip(x, g, strict=True):
        change += (xb - gb * m) ** 2
    change = box(change / B, settings.window)
    alpha = np.maximum(ramp, change / (change + settings.change_noise * v_frame + 1e-12))
    return s, alpha, drift


def mask_times(C, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, S_g, t) of a strip's masks ``C`` (B, h, w) and frame gains ``g``: open count, gain-weighted
    open count ``sum_b g_b C_b`` (1 where no mask opens) and the mean time ``sum_b g_b (b - b0)
    C_b / S_g`` of each pixel (b0 the group's middle)."""
    C = np.asarray(C, bool)
    B = C.shape[0]
    t = np.arange(B) - (B - 1) / 2
    S = C.sum(axis=0)
    Sg = np.where(S > 0, np.einsum("bhw,b->hw", C, g, dtype=np.float64), 1.0)
    return S, Sg, np.einsum("bhw,b->hw", C, g * t, dtype=np.float64) / Sg


def frame_noise(m: np.ndarray, sigma: float, offset: float, ref: float, window: int) -> np.ndarray:
    """Noise variance of one frame per pixel: ``sigma^2`` at the reference level ``ref``, scaled
    with the local brightness of ``m`` (shot noise), at least 5 % of it."""
    level = (box(np.maximum(m, 0.0), window) + offset) / ref if ref > 1e-6 else 1.0
    return sigma**2 * np.maximum(level, 0.05)


def local_drift(r: np.ndarray, tau: np.ndarray, m: np.ndarray, window: int) -> np.ndarray:
    """|v| per pixel: the local least-squares drift (pixels per frame) of ``r = -tau v . grad m``."""
    # the gradient (float64, as -tau * grad promoted it), then in place fy = -tau gy, fx = -tau gx
    fy, fx = (np.asarray(g, np.float64) for g in np.gradient(m))
    minus_tau = -tau
    np.multiply(minus_tau, fy, out=fy)
    np.multiply(minus_tau, fx, out=fx)
    del minus_tau
    a11, a12, a22 = box(fy * fy, window), box(fy * fx, window), box(fx * fx, window)
    b1, b2 = box(fy * r, window), box(fx * r, window)
    del fy, fx
    det = a11 * a22 - a12 * a12
    det = np.where(det > 1e-20, det, np.inf)
    return np.hypot((a22 * b1 - a12 * b2) / det, (a11 * b2 - a12 * b1) / det)


def consistency(frames: np.ndarray, y: np.ndarray, masks: np.ndarray, sigma: float,
                quantize: float = 0.0) -> float:
    """Mean squared data residual ``Y - sum_b C_b x_b`` over its noise variance ``S sigma^2
    (1 + q^2 / 12)`` (about 1 or below: consistent within the noise)."""
    C = np.asarray(masks, bool)
    res = y - np.einsum("bhw,bhw->hw", C, np.asarray(frames, np.float64))
    S = np.maximum(C.sum(axis=0), 1)
    return float(np.mean(res**2 / (S * sigma**2 * (1 + quantize**2 / 12))))


def with_settings(**changes) -> BlendSettings:
    """:data:`DEFAULT_SETTINGS` with some fields changed (tuning)."""
    return replace(DEFAULT_SETTINGS, **changes)


__all__ = ["DEFAULT_SETTINGS", "DEFAULT_STATIC_BLEND", "MAX_WORKERS", "STATIC_BLEND", "BlendSettings",
           "blend_measurement", "box", "check_static_blend", "consistency", "gains_and_mean", "map_strips",
           "mask_rows", "with_settings"]
