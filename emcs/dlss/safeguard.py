"""Self-check of the network against bilinear interpolation, on the frame itself.

A network that has not seen this kind of scan can do worse than plain bilinear
interpolation, and no clean reference exists to tell. The check uses the
measured samples only. The sparse grid (pitch ``s``) is thinned to its even
rows and columns, a coarser grid of pitch ``2s`` with the same origin; the
network and bilinear interpolation each reconstruct the frame from that
coarse grid, and both are scored at the three quarters of the measured samples
they did not see. The noise of a held-out sample is independent of everything
either method saw, so the mean difference of their squared errors estimates,
without bias, the difference of their errors against the noise-free signal
there (the Noise2Self argument; Batson and Royer, ICML 2019).

Both run at the scan's own pitch ``s`` on a virtual half-resolution frame (one
pixel per two of the scan, so the coarse grid has pitch ``s`` there and the
held-out samples fall half-way between its nodes): the network is asked for the
pitch it was trained for, on a scene seen at half the magnification (which its
training varied), and the pass costs a quarter of a full one.

The frame is cut into tiles of :data:`TILE_SAMPLES` x :data:`TILE_SAMPLES`
samples; in each tile a paired z-score of those differences says how sure the
check is that the network is better. The network keeps full weight where
``z >= Z_TRUST``, none where ``z <= Z_DOUBT`` (the tile falls back to
bilinear), linear in between; the tile weights are interpolated bilinearly
between tile centres, so fallbacks blend without seams. Measured samples are
identical in both outputs, so they stay exact.

What the check cannot see: it judges prediction from the ``2s`` grid, i.e.
detail below the ``2s`` grid's Nyquist frequency ``1/(4s)`` cycles per pixel.
Periodic detail between ``1/(4s)`` and ``1/(2s)`` (resolved by the scan,
aliased on the coarse grid) looks like error to *both* methods there, so the
check under-rates a network that restores it; detail finer than ``1/(2s)`` is
invisible to any method. No evidence (z = 0) leaves the network a third of
the weight; the thresholds were chosen on tuning scans (``benchmarks/dlss.md``):
a stricter rule discards the network's real gains on lattices that the coarse
grid aliases, a laxer one misses its failures. The check scores errors against the
signal at sample points: a reference blurred after the fact (the DLSS-STEM
benchmark targets) is not what it sees (``benchmarks/dlss.md``).

>>> import numpy as np
>>> e = np.random.default_rng(0).random((40, 40)); held = np.ones((40, 40), bool); held[::2, ::2] = False
>>> tile_weights(e + 1.0, e, held).tolist()  # the network clearly worse: bilinear
[[0.0, 0.0], [0.0, 0.0]]
>>> tile_weights(e, e + 1.0, held).tolist()  # the network clearly better: the network
[[1.0, 1.0], [1.0, 1.0]]
>>> tile_weights(e, e, held).tolist()  # no evidence: mostly bilinear
[[0.3333333333333333, 0.3333333333333333], [0.3333333333333333, 0.3333333333333333]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from emcs.dlss.interp import upsample
from emcs.dlss.smoothing import paired_z

#: tile edge in measured samples (16 x 16 samples, 192 of them held out)
TILE_SAMPLES = 16
#: paired z-score at or below which a tile falls back to bilinear entirely
#: (chosen on the tuning scans of benchmarks/dlss_heldout.py, never on the held-out ones)
Z_DOUBT = -1.0
#: paired z-score at or above which the network keeps its full weight
Z_TRUST = 2.0


@dataclass
class Verdict:
    """Outcome of the self-check of one frame.

    Attributes
    ----------
    weights : ndarray
        (H, W) float32 weight of the network (1: network, 0: bilinear).
    tile_weights : ndarray
        (ny, nx) weight of each tile.
    checked : bool
        False when the frame has too few samples for the check (the network is kept).
    """

    weights: np.ndarray
    tile_weights: np.ndarray
    checked: bool = True

    @property
    def fallback_fraction(self) -> float:
        """Fraction of tiles that fell back (network weight below one half)."""
        return float(np.mean(self.tile_weights < 0.5)) if self.checked else 0.0


def _splits(n: int) -> list[np.ndarray]:
    """Sample indices 0..n-1 cut into about ``n / TILE_SAMPLES`` equal runs."""
    return np.array_split(np.arange(n), max(1, round(n / TILE_SAMPLES)))


def tile_weights(net_err: np.ndarray, bil_err: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Network weight per tile from held-out squared errors on the sparse grid.

    Parameters
    ----------
    net_err, bil_err : ndarray
        (h, w) squared errors of the network and of bilinear at each sample.
    held : ndarray
        (h, w) bool, True at the held-out samples (the only ones scored).

    Returns
    -------
    ndarray
        (ny, nx) float64 weights in [0, 1].
    """
    rows, cols = _splits(held.shape[0]), _splits(held.shape[1])
    out = np.zeros((len(rows), len(cols)))
    for a, r in enumerate(rows):
        for b, c in enumerate(cols):
            sel = held[np.ix_(r, c)]
            z = paired_z((bil_err[np.ix_(r, c)] - net_err[np.ix_(r, c)])[sel])  # > 0: the net is better
            out[a, b] = np.clip((z - Z_DOUBT) / (Z_TRUST - Z_DOUBT), 0.0, 1.0)
    return out


def weight_map(tiles: np.ndarray, sparse_shape: tuple[int, int], factor: int,
               full_shape: tuple[int, int], offset: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 weights: tile weights interpolated bilinearly between tile centres."""
    axes = []
    for n_sparse, n_full, o, n_tiles in zip(sparse_shape, full_shape, offset, tiles.shape, strict=True):
        centres = [o + factor * float(np.mean(r)) for r in _splits(n_sparse)]
        pix = np.arange(n_full, dtype=np.float64)
        eye = np.eye(n_tiles)
        axes.append(np.stack([np.interp(pix, centres, eye[k]) for k in range(n_tiles)], 1))
    return (axes[0] @ tiles @ axes[1].T).astype(np.float32)


def virtual_shape(sparse_shape: tuple[int, int], factor: int) -> tuple[int, int]:
    """Shape of the half-resolution frame that holds every sample of a pitch-``factor`` grid.

    On it the coarse samples ``sparse[::2, ::2]`` lie at ``factor * (i, j)`` and
    sample ``(i, j)`` of the full grid at ``factor * (i, j) / 2``.
    """
    return tuple(factor * ((n - 1) // 2) + factor // 2 + 2 for n in sparse_shape)


def at_samples(frame: np.ndarray, sparse_shape: tuple[int, int], factor: int) -> np.ndarray:
    """(h, w) values of a half-resolution frame at ``factor * (i, j) / 2`` (linear between pixels)."""
    out = np.asarray(frame, np.float64)
    for axis, n in enumerate(sparse_shape):
        pos = np.arange(n) * factor / 2.0
        lo = np.floor(pos).astype(int)
        frac = (pos - lo).reshape((-1, 1) if axis == 0 else (1, -1))
        a = np.take(out, lo, axis=axis)
        b = np.take(out, np.minimum(lo + 1, out.shape[axis] - 1), axis=axis)
        out = a + frac * (b - a)
    return out


def check(sparse: np.ndarray, factor: int, full_shape: tuple[int, int], offset: tuple[int, int],
          predict: Callable[[np.ndarray, tuple[int, int]], np.ndarray],
          baseline: Callable[[np.ndarray], np.ndarray] | None = None) -> Verdict:
    """Self-check the network on one frame (see the module notes).

    Parameters
    ----------
    sparse : ndarray
        (h, w) measured samples.
    factor : int
        Grid pitch ``s``.
    full_shape : (int, int)
        (H, W) of the output.
    offset : (int, int)
        Full-resolution position of sample (0, 0).
    predict : callable
        ``predict(coarse, shape)``: the network's estimate of a frame of ``shape``
        (:func:`virtual_shape`) from ``coarse = sparse[::2, ::2]`` on the grid of
        pitch ``s`` with origin (0, 0) there.
    baseline : callable, optional
        Applied to bilinear's estimate of that frame before scoring, so that
        both are estimates of the same thing (e.g. :func:`emcs.dlss.smoothing.paper_blur`
        for a network that outputs the blurred scan).

    Returns
    -------
    Verdict
    """
    sparse = np.asarray(sparse, np.float32)
    h, w = sparse.shape
    if h < 4 or w < 4:
        return Verdict(np.ones(full_shape, np.float32), np.ones((1, 1)), checked=False)
    coarse = np.ascontiguousarray(sparse[::2, ::2])
    shape = virtual_shape((h, w), factor)
    net = at_samples(predict(coarse, shape), (h, w), factor)
    bil = upsample(coarse, factor, shape, "bilinear", (0, 0))
    bil = at_samples(bil if baseline is None else baseline(bil), (h, w), factor)
    held = np.ones((h, w), bool)
    held[::2, ::2] = False
    tiles = tile_weights((net - sparse) ** 2, (bil - sparse) ** 2, held)
    return Verdict(weight_map(tiles, (h, w), factor, full_shape, offset), tiles)


def blend(net: np.ndarray, bilinear: np.ndarray, verdict: Verdict) -> np.ndarray:
    """``bilinear + weights * (net - bilinear)`` (float32); exactly ``net`` where the weight is 1."""
    w = verdict.weights
    return np.where(w >= 1.0, net, bilinear + w * (net - bilinear)).astype(np.float32)
