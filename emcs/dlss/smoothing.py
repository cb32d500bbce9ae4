"""Self-calibrated smoothing of a supersampled scan (``emcs supersample --smooth auto``).

A noisy sparse scan leaves the reconstruction a choice between detail and
noise that its samples alone do not settle: at a pitch of 10 pixels, a sample
that differs from its neighbours may be unresolved structure or shot noise.
:func:`holdout_errors` measures, from the scan itself, how well each amount
of smoothing predicts samples the reconstruction never saw. The measured grid
is split into four interleaved quarters (even/odd rows x even/odd columns of
the sparse frame); each quarter in turn is replaced by the mean of its grid
neighbours (which all belong to other quarters), the frame is reconstructed,
smoothed by a Gaussian of each width, and compared with the held-out samples.
The noise of a held-out sample is independent of everything the reconstruction
saw, so the expected squared difference is the error against the noise-free
signal plus the noise variance, a constant: its minimum over the widths points
at the smoothing that suits this scan (the Noise2Self argument; Batson and
Royer, ICML 2019). Only the scan's own samples are used; no clean reference.

The functions here take the reconstruction as a callable, so they serve the
network and the classical kernels alike (:mod:`emcs.dlss.supersample` wires
them up).

>>> import numpy as np
>>> filled, held = holdout_fill(np.arange(16.0).reshape(4, 4), (0, 0))
>>> float(filled[0, 0]), float(filled[2, 2]), int(held.sum())
(2.5, 10.0, 4)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

#: Gaussian widths (output pixels) that ``--smooth auto`` chooses from (0: none)
SMOOTH_SIGMAS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
#: quarters of the sparse grid held out in turn
PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


def smooth(frame: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing (mirror edges) of a float frame; ``sigma = 0`` returns it unchanged."""
    if sigma <= 0:
        return frame
    return ndimage.gaussian_filter(frame, float(sigma), mode="reflect").astype(frame.dtype, copy=False)


def holdout_fill(sparse: np.ndarray, phase: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Replace one quarter of the samples by the mean of their in-frame 4-neighbours.

    Parameters
    ----------
    sparse : ndarray
        (h, w) measured samples, h, w >= 2.
    phase : (int, int)
        The quarter held out: samples at rows ``phase[0]::2``, columns ``phase[1]::2``.

    Returns
    -------
    filled : ndarray
        float64 copy of ``sparse`` with the held-out samples replaced.
    held : ndarray
        bool (h, w), True at the held-out samples.
    """
    x = np.asarray(sparse, np.float64)
    h, w = x.shape
    if h < 2 or w < 2:
        raise ValueError(f"holding out samples needs at least 2 x 2 of them, got {h} x {w}")
    total = np.zeros_like(x)
    count = np.zeros_like(x)
    total[1:] += x[:-1]
    count[1:] += 1
    total[:-1] += x[1:]
    count[:-1] += 1
    total[:, 1:] += x[:, :-1]
    count[:, 1:] += 1
    total[:, :-1] += x[:, 1:]
    count[:, :-1] += 1
    held = np.zeros(x.shape, bool)
    held[phase[0]::2, phase[1]::2] = True
    filled = np.where(held, total / count, x)  # the neighbours of a held sample are never held
    return filled, held


def holdout_errors(
    sparse: np.ndarray,
    reconstruct: Callable[[np.ndarray], np.ndarray],
    positions: tuple[int, int, int],
    sigmas: tuple[float, ...] = SMOOTH_SIGMAS,
) -> np.ndarray:
    """Mean squared error on held-out samples of the reconstruction smoothed by each sigma.

    Parameters
    ----------
    sparse : ndarray
        (h, w) measured samples, h, w >= 2.
    reconstruct : callable
        Sparse (h, w) frame -> full-resolution frame (no samples pasted back).
    positions : (int, int, int)
        ``(oy, ox, s)``: sample (i, j) lies at full-resolution pixel
        ``(oy + i*s, ox + j*s)``.
    sigmas : tuple of float
        Gaussian widths to score.

    Returns
    -------
    ndarray
        float64 (len(sigmas),): the held-out error of each width (noise variance included).
    """
    oy, ox, s = positions
    sparse = np.asarray(sparse, np.float64)
    err = np.zeros(len(sigmas))
    for phase in PHASES:
        filled, held = holdout_fill(sparse, phase)
        est = reconstruct(filled.astype(np.float32))
        for k, sigma in enumerate(sigmas):
            at = smooth(est, sigma)[oy::s, ox::s]
            err[k] += np.sum((at[held] - sparse[held]) ** 2)
    return err / sparse.size


def choose_sigma(errors: np.ndarray, sigmas: tuple[float, ...] = SMOOTH_SIGMAS) -> float:
    """The width with the smallest held-out error (the smallest width on ties)."""
    return float(sigmas[int(np.argmin(errors))])
