"""SIM image formation: illumination patterns and the raw / wide-field images they give.

The ground truth ``s`` lives on a grid twice as fine as the camera (the SR grid).
For angle ``a`` and phase step ``n`` the sample is lit by

    I_an(r) = 1 + m_a cos(2 pi k_a . r + phi_a + 2 pi n / N_p),

the product is blurred with the ideal wide-field OTF and binned 2x2 onto the camera
grid (Gustafsson, J. Microsc. 2000; Heintzmann & Huser, Chem. Rev. 2017). The
camera (photon noise, read noise, offset) is added by the data generators of
:mod:`emcs.simulate`.

Coordinates: the origin is the centre of camera pixel (0, 0); SR pixel ``p``
sits at camera coordinate ``p / 2`` (so camera pixel ``i`` is SR pixel ``2 i``).
Pattern wave vectors are in cycles/um as (ky, kx); phases refer to that origin.

Frame order of a raw stack (``angle-major``): time point ``t``, angle ``a``,
phase ``n`` is frame ``t * A * P + a * P + n``. ``phase-major`` is
``t * A * P + n * A + a``.

SNR: for a frame with noise-free signal ``S`` photons (99th percentile of the
signal above background), background ``B`` photons and read noise ``sigma`` (e-),
``SNR = S / sqrt(S + B + sigma^2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from emcs.sim.otf import Optics, defocus_attenuation, otf

__all__ = ["CAMERA_OFFSET", "Pattern", "clean_raw", "clean_widefield", "random_patterns", "reorder",
           "shift_to_sr_grid", "signal_level", "snr"]

#: camera offset (counts) of the simulated SIM camera
CAMERA_OFFSET = 100.0


# ----------------------------------------------------------------------------- patterns
@dataclass
class Pattern:
    """One illumination angle: wave vector (cycles/um), phase of step 0 (rad), modulation."""

    ky: float
    kx: float
    phase: float
    modulation: float

    @property
    def k(self) -> float:
        return float(np.hypot(self.ky, self.kx))

    @property
    def angle_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.ky, self.kx)))

    def to_dict(self) -> dict:
        return {"ky": self.ky, "kx": self.kx, "k": self.k, "angle_deg": self.angle_deg,
                "phase": self.phase, "modulation": self.modulation}


def random_patterns(rng, optics: Optics, angles: int = 3, k_rel: float = 0.8,
                    modulation: float = 0.8, jitter: bool = True) -> list[Pattern]:
    """Illumination patterns at ``angles`` evenly spaced orientations.

    With ``jitter`` the orientation offset, the per-angle orientation (+-3 deg),
    |k| (+-3 %), modulation (+-0.1) and phases (uniform) are randomised.
    """
    theta0 = rng.uniform(0, np.pi / angles) if jitter else 0.0
    out = []
    for a in range(angles):
        th = theta0 + a * np.pi / angles + (np.radians(rng.uniform(-3, 3)) if jitter else 0.0)
        kk = k_rel * optics.cutoff * (rng.uniform(0.97, 1.03) if jitter else 1.0)
        m = float(np.clip(modulation + (rng.uniform(-0.1, 0.1) if jitter else 0.0), 0.05, 1.0))
        ph = float(rng.uniform(0, 2 * np.pi)) if jitter else 0.0
        out.append(Pattern(float(kk * np.sin(th)), float(kk * np.cos(th)), ph, m))
    return out


# ----------------------------------------------------------------------------- image formation
def _sr_coords(shape_sr, optics: Optics):
    """Camera-centred physical coordinates (um) of the centres of fine-grid pixels."""
    d = optics.pixel_nm * 1e-3 / 2
    y = (np.arange(shape_sr[0]) - 0.5) * d  # fine pixel j is at SR coordinate j - 0.5
    x = (np.arange(shape_sr[1]) - 0.5) * d
    return y[:, None], x[None, :]


def _blur_bin(img_hr: np.ndarray, H_hr: np.ndarray) -> np.ndarray:
    """Blur a fine-grid image with the OTF and bin 2x2 onto the camera grid."""
    blurred = sfft.irfft2(sfft.rfft2(img_hr) * H_hr, s=img_hr.shape)
    h, w = blurred.shape[0] // 2, blurred.shape[1] // 2
    return blurred[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))


def _rotated_otf(shape_hr, optics: Optics, defocus_um: float = 0.0) -> np.ndarray:
    H = otf(shape_hr, optics.pixel_nm / 2, optics.cutoff)
    if defocus_um:
        H = H * defocus_attenuation(shape_hr, optics.pixel_nm / 2, optics, defocus_um)
    return H[:, : shape_hr[1] // 2 + 1]


def clean_raw(gt: np.ndarray, optics: Optics, patterns: list[Pattern], phases: int = 3,
              defocus_um: float = 0.0) -> np.ndarray:
    """Noise-free raw SIM frames (A*P, H, W) on the camera grid, angle-major order.

    ``gt`` has shape (2H, 2W) on the SR grid; one unit of ``gt`` under uniform
    illumination gives one unit of camera signal. ``defocus_um``: image a layer that
    far from the focal plane (:func:`emcs.sim.otf.defocus_attenuation`). The 2-beam
    pattern is invariant along z, so such a layer is lit by the same pattern, but its
    blurred image keeps little of the pattern's modulation.
    """
    Hk = _rotated_otf(gt.shape, optics, defocus_um)
    y, x = _sr_coords(gt.shape, optics)
    frames = []
    for p in patterns:
        arg = 2 * np.pi * (p.ky * y + p.kx * x) + p.phase
        for n in range(phases):
            illum = 1.0 + p.modulation * np.cos(arg + 2 * np.pi * n / phases)
            frames.append(_blur_bin(gt * illum, Hk))
    return np.clip(np.asarray(frames), 0, None)


def clean_widefield(gt: np.ndarray, optics: Optics, defocus_um: float = 0.0) -> np.ndarray:
    """Noise-free wide-field image (H, W) of a fine-grid ground truth (uniform light)."""
    return np.clip(_blur_bin(gt, _rotated_otf(gt.shape, optics, defocus_um)), 0, None)


def signal_level(clean: np.ndarray) -> float:
    """The 'S' of the SNR definition: 99th percentile of a noise-free frame."""
    return float(np.percentile(clean, 99))


def snr(photons: float, background: float = 10.0, read_noise: float = 1.5) -> float:
    """SNR = S / sqrt(S + B + sigma^2) (see the module docstring)."""
    return float(photons / np.sqrt(photons + background + read_noise**2))


def shift_to_sr_grid(gt: np.ndarray) -> np.ndarray:
    """Resample a fine-grid ground truth onto the SR grid (half a fine pixel shift)."""
    F = sfft.fft2(gt)
    ky = np.fft.fftfreq(gt.shape[0])[:, None]
    kx = np.fft.fftfreq(gt.shape[1])[None, :]
    out = sfft.ifft2(F * np.exp(2j * np.pi * 0.5 * (ky + kx))).real  # value at j + 0.5
    return np.clip(out, 0, None).astype(np.float32)


def reorder(frames: np.ndarray, angles: int, phases: int, order: str) -> np.ndarray:
    """Convert a block of A*P angle-major frames to ``order`` (or back: the same call)."""
    if order == "angle-major":
        return frames
    blk = frames.reshape(frames.shape[0] // (angles * phases), angles, phases, *frames.shape[1:])
    return blk.transpose(0, 2, 1, *range(3, blk.ndim)).reshape(frames.shape)
