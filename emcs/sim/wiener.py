"""Classical 2-D SIM reconstruction: parameter estimation + generalised Wiener filter.

Written from Gustafsson (J. Microsc. 198:82, 2000), Wicker et al. (Opt. Express
21:2032, 2013) and Mueller et al. (fairSIM, Nat. Commun. 7:10980, 2016); no GPL code reused.

Per time point, with raw frames ``d[a, n]`` (angle a, phase step n):

1. subtract the camera offset/background, taper the frame edges;
2. separate the bands ``C_j`` (j = 0, +1, -1) with the pseudo-inverse of
   ``M[n, j] = exp(i j 2 pi n / P)``;
3. wave vector: peak of ``|FT{c_+1 c_0*}|`` in the annulus 0.5..1.0 f_c, refined
   sub-pixel by maximising ``|sum_r c_+1 c_0* exp(-2 pi i kappa.r)|`` over kappa;
4. shift the side bands to their true place on the 2x grid; the complex
   modulation ``alpha = (m/2) exp(i phi)`` comes from the band overlap;
5. generalised Wiener combination + OTF-shaped apodisation on the 2x grid.

Conventions (shared with :mod:`emcs.sim.forward`): k in cycles/um as (ky, kx);
the phase ``phi`` of a pattern ``1 + m cos(2 pi k.r + phi + 2 pi n / P)`` refers
to the centre of camera pixel (0, 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from emcs.errors import EmcsError
from emcs.sim.forward import Pattern
from emcs.sim.otf import Optics, cosine_taper, freq_grid, otf, otf_profile


@dataclass
class WienerSettings:
    """Reconstruction settings.

    wiener : Wiener parameter w (relative to the normalised OTF; 0.02-0.3).
    apodization : apodisation cut-off as a fraction of f_c + |k|.
    k_range : search annulus for |k| in units of f_c.
    k_guess : optional expected |k| in cycles/um (search +-15 % around it).
    edge : edge taper width in camera pixels (None: 8 % of the frame).
    """

    wiener: float = 0.08
    apodization: float = 1.0
    k_range: tuple[float, float] = (0.5, 1.0)
    k_guess: float | None = None
    edge: int | None = None



def preprocess(raw: np.ndarray, settings: WienerSettings) -> np.ndarray:
    """Background-subtracted, edge-tapered float64 frames (A, P, H, W)."""
    raw = np.asarray(raw, np.float64)
    background = np.percentile(raw.mean(axis=(0, 1)), 1.0)
    H, W = raw.shape[-2:]
    edge = settings.edge if settings.edge is not None else max(2, int(0.08 * min(H, W)))
    return (raw - background) * cosine_taper((H, W), edge)


def separate_bands(frames: np.ndarray, phase_offsets=None) -> np.ndarray:
    """Band separation: (A, P, H, W) real frames -> (A, 3, H, W) spectra C_0, C_+1, C_-1."""
    A, P = frames.shape[:2]
    if P < 3:
        raise EmcsError(f"SIM band separation needs at least 3 phases, got {P}")
    D = sfft.fft2(frames, axes=(-2, -1))
    out = np.empty((A, 3) + frames.shape[2:], np.complex128)
    for a in range(A):
        ph = 2 * np.pi * np.arange(P) / P
        if phase_offsets is not None:
            ph = ph + np.asarray(phase_offsets[a])
        M = np.exp(1j * np.outer(ph, [0, 1, -1]))
        Minv = np.linalg.pinv(M)
        out[a] = np.tensordot(Minv, D[a], axes=(1, 0))
    return out


def pad2x(spec: np.ndarray) -> np.ndarray:
    """Zero-pad an (unshifted) spectrum (H, W) to (2H, 2W), keeping image amplitude."""
    H, W = spec.shape
    s = np.fft.fftshift(spec)
    big = np.zeros((2 * H, 2 * W), spec.dtype)
    big[H // 2 + (H % 2): H // 2 + (H % 2) + H, W // 2 + (W % 2): W // 2 + (W % 2) + W] = s
    return np.fft.ifftshift(big) * 4.0


def _fine_coords(H2, W2, optics: Optics):
    d = optics.pixel_nm * 1e-3 / 2
    return np.arange(H2) * d, np.arange(W2) * d


def _dft_mag(prod, y, x, ky, kx):
    ey = np.exp(-2j * np.pi * ky * y)
    ex = np.exp(-2j * np.pi * kx * x)
    return abs(ey @ prod @ ex)


def _local_maxima(P: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Positions of the ``n`` largest 3x3 local maxima of a (masked) map."""
    from scipy.ndimage import maximum_filter

    peaks = (P == maximum_filter(P, size=3, mode="wrap")) & (P > 0)
    iy, ix = np.nonzero(peaks)
    order = np.argsort(P[iy, ix])[::-1][:n]
    return [(int(iy[i]), int(ix[i])) for i in order]


def estimate_wavevector(C: np.ndarray, optics: Optics, settings: WienerSettings,
                        candidates: int = 4):
    """Estimate (ky, kx) in cycles/um of one angle from its separated bands (3, H, W).

    The strongest peaks of the band cross-correlation ``|FT{c_+1 c_0*}|`` in the
    search annulus are candidates; the one whose shifted band overlaps band 0
    best (largest estimated modulation) wins and is refined sub-pixel.

    Returns the wave vector and the peak contrast (peak / median of the
    cross-correlation in the search annulus; ~1 means no pattern was found).
    """
    H, W = C.shape[-2:]
    Hn = otf((H, W), optics.pixel_nm, optics.cutoff)
    # Wiener-deconvolved bands: weighting by the OTF itself lets the low
    # frequencies swamp the weak peak near the OTF edge (fails on ~30 % of
    # simulated stacks); deconvolving keeps it visible.
    filt = np.where(Hn > 0, Hn / (Hn**2 + 0.01), 0.0)
    c0 = sfft.ifft2(pad2x(C[0] * filt))
    cp = sfft.ifft2(pad2x(C[1] * filt))
    prod = cp * np.conj(c0)
    P = np.abs(sfft.fft2(prod))
    ky, kx = freq_grid((2 * H, 2 * W), optics.pixel_nm / 2)
    kr = np.hypot(ky, kx)
    if settings.k_guess:
        lo, hi = 0.85 * settings.k_guess, 1.15 * settings.k_guess
    else:
        lo, hi = settings.k_range[0] * optics.cutoff, settings.k_range[1] * optics.cutoff
    mask = (kr > lo) & (kr < hi)
    if not mask.any():
        raise EmcsError("the image is too small to search for the SIM pattern frequency")
    Pm = np.where(mask, P, 0.0)
    peaks = _local_maxima(Pm, candidates)
    if not peaks:
        peaks = [np.unravel_index(np.argmax(Pm), P.shape)]
    if len(peaks) > 1:
        scores = []
        for iy, ix in peaks:
            kc = (float(ky[iy, 0]), float(kx[0, ix]))
            scores.append(abs(estimate_modulation(shift_bands(C, kc, optics), kc, optics)))
        iy, ix = peaks[int(np.argmax(scores))]
    else:
        iy, ix = peaks[0]
    contrast = float(Pm[iy, ix] / max(np.median(P[mask]), 1e-30))
    k = np.array([ky[iy, 0], kx[0, ix]], float)
    y, x = _fine_coords(2 * H, 2 * W, optics)
    step = 0.5 / (H * optics.pixel_nm * 1e-3)
    best = _dft_mag(prod, y, x, *k)
    for _ in range(40):
        improved = False
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == 0 and dx == 0:
                    continue
                cand = k + step * np.array([dy, dx])
                v = _dft_mag(prod, y, x, *cand)
                if v > best:
                    best, kbest, improved = v, cand, True
        if improved:
            k = kbest
        else:
            step /= 2
            if step < 1e-5:
                break
    return (float(k[0]), float(k[1])), contrast


def _estimate_all(C: np.ndarray, optics: Optics, settings: WienerSettings):
    """Per-angle estimation with a consistency pass: all angles of a 2-D SIM
    share one |k|, so an angle whose |k| is off by > 5 % from the median of
    the others is searched again within +-15 % of that median."""
    from dataclasses import replace

    found = [estimate_wavevector(C[a], optics, settings) for a in range(C.shape[0])]
    if C.shape[0] >= 3 and not settings.k_guess:
        ks = np.array([np.hypot(*k) for k, _ in found])
        for a in range(len(found)):
            ref = float(np.median(np.delete(ks, a)))
            if abs(ks[a] - ref) > 0.05 * ref:
                found[a] = estimate_wavevector(C[a], optics, replace(settings, k_guess=ref))
    patterns, details = [], []
    for a, (k, contrast) in enumerate(found):
        alpha = estimate_modulation(shift_bands(C[a], k, optics), k, optics)
        p = Pattern(k[0], k[1], float(np.angle(alpha)), float(2 * abs(alpha)))
        patterns.append(p)
        details.append({"peak_contrast": contrast, "period_nm": 1e3 / p.k})
    return patterns, details


def shift_bands(C: np.ndarray, k: tuple[float, float], optics: Optics) -> np.ndarray:
    """Place the bands of one angle on the 2x grid: B_0, B_+1, B_-1 (3, 2H, 2W)."""
    H, W = C.shape[-2:]
    y, x = _fine_coords(2 * H, 2 * W, optics)
    ramp = np.exp(-2j * np.pi * k[0] * y)[:, None] * np.exp(-2j * np.pi * k[1] * x)[None, :]
    B0 = pad2x(C[0])
    Bp = sfft.fft2(sfft.ifft2(pad2x(C[1])) * ramp)
    Bm = sfft.fft2(sfft.ifft2(pad2x(C[2])) * np.conj(ramp))
    return np.stack([B0, Bp, Bm])


def estimate_modulation(B: np.ndarray, k, optics: Optics, threshold: float = 0.1) -> complex:
    """Complex modulation alpha = (m/2) exp(i phi) of band +1 from the overlap with band 0."""
    shape = B.shape[-2:]
    px = optics.pixel_nm / 2
    H0 = otf(shape, px, optics.cutoff)
    Hp = otf(shape, px, optics.cutoff, shift=k)
    ky, kx = freq_grid(shape, px)
    omega = (H0 > threshold) & (Hp > threshold) & (np.hypot(ky, kx) > 0.15 * optics.cutoff)
    if not omega.any():
        return 0j
    a = (B[1] * H0)[omega]
    b = (B[0] * Hp)[omega]
    return complex(np.sum(a * np.conj(b)) / max(np.sum(np.abs(b) ** 2), 1e-30))


def estimate_parameters(raw: np.ndarray, optics: Optics, settings: WienerSettings | None = None):
    """Estimate the pattern of every angle from one raw stack (A, P, H, W).

    Returns
    -------
    patterns : list of Pattern
        Wave vector (cycles/um), phase of step 0 (rad) and modulation per angle.
    details : list of dict
        Per-angle diagnostics (peak contrast, period in nm).
    """
    _, patterns, details = bands_and_patterns(raw, optics, None, settings)
    return patterns, details


def reconstruct(raw: np.ndarray, optics: Optics, patterns: list[Pattern] | None = None,
                settings: WienerSettings | None = None):
    """Wiener SIM reconstruction of one time point.

    Parameters
    ----------
    raw : array (A, P, H, W)
        Raw frames of one time point, angle-major.
    optics : Optics
    patterns : list of Pattern, optional
        Known pattern parameters; estimated from the data when None.
    settings : WienerSettings

    Returns
    -------
    sr : ndarray (2H, 2W) float32
        Reconstruction on the 2x grid (clipped at 0), in camera intensity units.
    patterns : list of Pattern
        The parameters used.
    details : list of dict
        Estimation diagnostics (empty when ``patterns`` were given).
    """
    settings = settings or WienerSettings()
    C, patterns, details = bands_and_patterns(raw, optics, patterns, settings)
    num, den, apod = wiener_terms(C, patterns, optics, settings.apodization)
    S = apod * num / (den + settings.wiener**2)
    sr = sfft.ifft2(S).real
    return np.clip(sr, 0, None).astype(np.float32), patterns, details


def bands_and_patterns(raw: np.ndarray, optics: Optics, patterns: list[Pattern] | None = None,
                       settings: WienerSettings | None = None):
    """Separated bands (A, 3, H, W) of raw frames (A, P, H, W), and their patterns.

    The patterns are estimated from the bands when not given (then with their
    diagnostics; otherwise the diagnostics are empty).
    """
    settings = settings or WienerSettings()
    raw = np.asarray(raw)
    if raw.ndim != 4:
        raise ValueError("raw must be (angles, phases, H, W)")
    C = separate_bands(preprocess(raw, settings))
    details: list[dict] = []
    if patterns is None:
        patterns, details = _estimate_all(C, optics, settings)
    return C, patterns, details


def wiener_terms(C: np.ndarray, patterns: list[Pattern], optics: Optics, apodization: float = 1.0):
    """Numerator, denominator and apodisation of the generalised Wiener filter on the 2x grid.

    ``C`` are the separated bands (A, 3, H, W); the reconstruction's spectrum is
    ``apod * num / (den + w^2)`` for Wiener parameter ``w``.
    """
    H, W = C.shape[-2:]
    shape = (2 * H, 2 * W)
    px = optics.pixel_nm / 2
    num = np.zeros(shape, np.complex128)
    den = np.zeros(shape, np.float64)
    for a, p in enumerate(patterns):
        k = (p.ky, p.kx)
        B = shift_bands(C[a], k, optics)
        # a failed modulation estimate (tiny or > 1) must not blow up the side bands
        m = float(np.clip(p.modulation, 0.05, 1.0))
        alpha = 0.5 * m * np.exp(1j * p.phase)
        H0 = otf(shape, px, optics.cutoff)
        Hp = otf(shape, px, optics.cutoff, shift=k)
        Hm = otf(shape, px, optics.cutoff, shift=(-k[0], -k[1]))
        num += H0 * B[0] + np.conj(alpha) * Hp * B[1] + alpha * Hm * B[2]
        den += H0**2 + abs(alpha) ** 2 * (Hp**2 + Hm**2)
    kmax = max(p.k for p in patterns)
    ky, kx = freq_grid(shape, px)
    apod = otf_profile(np.hypot(ky, kx) / (apodization * (optics.cutoff + kmax)))
    return num, den, apod


def widefield_reference(raw: np.ndarray, settings: WienerSettings | None = None) -> np.ndarray:
    """Mean of the raw frames of one time point, Fourier-upsampled to the 2x grid."""
    settings = settings or WienerSettings()
    frames = preprocess(raw, settings)
    mean = frames.reshape(-1, *frames.shape[-2:]).mean(axis=0)
    return np.clip(sfft.ifft2(pad2x(sfft.fft2(mean))).real, 0, None).astype(np.float32)
