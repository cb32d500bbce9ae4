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
#: paired z-score by which a width must beat no smoothing on the held-out samples
Z_SMOOTH = 2.0
#: spectral risk (relative to no smoothing) a width must stay below
RISK_MAX = 0.9
#: quarters of the sparse grid held out in turn
PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


#: DLSS-STEM's target blur: a 5 x 5 symmetric Gaussian kernel of 2.5 px standard deviation
#: (Ede, arXiv:1910.10467, 2019, eq. 3), as two 5-tap passes
_GAUSS5 = np.exp(-np.arange(-2, 3) ** 2 / (2 * 2.5**2))
PAPER_TAPS = (_GAUSS5 / _GAUSS5.sum()).astype(np.float32)


def paper_blur(frame: np.ndarray) -> np.ndarray:
    """``frame`` (..., H, W) through DLSS-STEM's 5 x 5, sigma 2.5 px Gaussian (mirror edges).

    The paper trains and scores its networks against full scans blurred this way
    (to reduce noise). Blurring is linear, so the best estimate of the blurred
    scan from the samples is the blurred best estimate of the scan: what
    ``emcs supersample --target blurred`` returns. Same as
    ``scipy.ndimage.gaussian_filter(frame, 2.5, truncate=0.8, mode="reflect")``.

    >>> out = paper_blur(np.eye(6, dtype=np.float32))
    >>> out.shape, out.dtype.name, round(float(out.sum()), 3)
    ((6, 6), 'float32', 6.0)
    """
    x = np.asarray(frame)
    dt = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    pad = [(0, 0)] * (x.ndim - 2) + [(2, 2), (2, 2)]
    p = np.pad(x.astype(np.float32, copy=False), pad, mode="symmetric")
    H, W = x.shape[-2:]
    rows = sum(PAPER_TAPS[k] * p[..., k : k + H, :] for k in range(5))
    out = sum(PAPER_TAPS[k] * rows[..., k : k + W] for k in range(5))
    return out.astype(dt, copy=False)


def smooth(frame: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing (mirror edges) of a float frame; ``sigma = 0`` returns it unchanged."""
    if sigma <= 0:
        return frame
    return ndimage.gaussian_filter(frame, float(sigma), mode="reflect").astype(frame.dtype, copy=False)


def sample_spectrum(sparse: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Periodogram of the (h, w) samples and its white-noise level.

    Returns ``(power, fy, fx, noise)``: the power of the mean-removed, Hann-windowed samples
    (``rfft2`` layout), the frequencies of its rows (h, 1) and columns (1, w//2+1) in cycles per
    sample, and the noise level per bin: the median power over the outer band (|f| > 0.35 in
    either axis) over ln 2, which ignores a few strong lattice peaks (0 for a frame too small
    to have that band).
    """
    x = np.asarray(sparse, np.float64)
    h, w = x.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.rfft2((x - x.mean()) * win)) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    outer = (np.abs(fy) > 0.35) | (fx > 0.35)
    noise = float(np.median(power[outer])) / np.log(2.0) if outer.any() else 0.0
    return power, fy, fx, noise


def spectral_risks(sparse: np.ndarray, factor: int, sigmas: tuple[float, ...] = SMOOTH_SIGMAS) -> np.ndarray:
    """Relative error of smoothing the measured samples by each width, from their own spectrum.

    The periodogram of the (h, w) samples (Hann window) is white noise of one
    level plus the signal; the noise level is the median power over the outer
    band (|f| > 0.35 cycles per sample in either axis) over ln 2, which
    ignores a few strong lattice peaks. Each bin's signal power is estimated as
    ``max(P - N, 0)``; a Gaussian of width ``sigma`` (output pixels) passes
    ``G = exp(-2 pi^2 sigma^2 (f/s)^2)`` of it, so the expected squared error is
    ``(1 - G)^2 S + G^2 N`` per bin, against ``N`` without smoothing.
    Returns ``risk(sigma) / risk(0)`` per width (1 for sigma 0): below 1,
    smoothing removes more noise than signal.

    Unlike the held-out samples, the spectrum sees all detail up to the grid's
    Nyquist frequency ``1/(2s)``: a lattice resolved by the scan shows as
    strong peaks whose loss outweighs the noise removed.
    """
    power, fy, fx, noise = sample_spectrum(sparse)
    signal = np.clip(power - noise, 0.0, None)
    f2 = (fy**2 + fx**2) / float(factor) ** 2
    base = noise * power.size
    if base <= 0:
        return np.array([1.0 if sg == 0 else np.inf for sg in sigmas])
    out = []
    for sg in sigmas:
        g = np.exp(-2 * np.pi**2 * sg**2 * f2)
        out.append(float(np.sum((1 - g) ** 2 * signal + g**2 * noise)) / base)
    return np.array(out)


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
    """Squared error at every held-out sample of the reconstruction smoothed by each sigma.

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
        float64 (len(sigmas), h*w): every sample's squared error (noise variance
        included), each sample scored once, when its quarter was held out.
    """
    oy, ox, s = positions
    sparse = np.asarray(sparse, np.float64)
    err = np.zeros((len(sigmas), sparse.size))
    for phase in PHASES:
        filled, held = holdout_fill(sparse, phase)
        est = reconstruct(filled.astype(np.float32))
        for k, sigma in enumerate(sigmas):
            at = smooth(est, sigma)[oy::s, ox::s]
            err[k, held.ravel()] = (at[held] - sparse[held]) ** 2
    return err


def paired_z(gain: np.ndarray) -> float:
    """Mean of paired differences over its standard error (0 for under 2 values or no spread)."""
    gain = np.asarray(gain, np.float64).ravel()
    spread = float(gain.std(ddof=1)) if gain.size > 1 else 0.0
    return float(gain.mean()) / (spread / np.sqrt(gain.size)) if spread > 0 else 0.0


def choose_sigma(errors: np.ndarray, risks: np.ndarray | None = None,
                 sigmas: tuple[float, ...] = SMOOTH_SIGMAS) -> float:
    """The smoothing width: what the held-out samples choose, capped by the spectrum's verdict.

    Parameters
    ----------
    errors : ndarray
        Every held-out sample's squared error per width (:func:`holdout_errors`;
        rows: ``sigmas``, the first 0).
    risks : ndarray, optional
        :func:`spectral_risks` per width.
    sigmas : tuple of float

    Returns
    -------
    float
        0 unless the width with the smallest held-out error beats no smoothing
        by a paired z-score of at least :data:`Z_SMOOTH`; then, among the widths
        up to it, the one of least spectral risk, if that risk is below
        :data:`RISK_MAX` times no smoothing's (else 0). Weak or contrary evidence means no smoothing.
    """
    errors = np.asarray(errors, np.float64)
    best = int(np.argmin(errors.mean(axis=1)))
    if best == 0:
        return 0.0
    if paired_z(errors[0] - errors[best]) < Z_SMOOTH:
        return 0.0
    if risks is None:
        return float(sigmas[best])
    k = int(np.argmin(risks[: best + 1]))
    return float(sigmas[k]) if risks[k] < RISK_MAX else 0.0
