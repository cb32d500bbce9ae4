"""Optical transfer function of a wide-field fluorescence microscope.

All spatial frequencies are in cycles per micrometre; pixel sizes in nm.
The in-focus OTF of a circular pupil (Goodman, Introduction to Fourier Optics, ch. 6):

    H(rho) = (2/pi) [arccos(rho) - rho sqrt(1 - rho^2)],  rho = |k| / f_c < 1,

with cut-off ``f_c = 2 NA / lambda``.

>>> from emcs.sim.otf import Optics
>>> round(Optics(wavelength_nm=525, na=1.4, pixel_nm=80).cutoff, 3)
5.333
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from emcs.errors import EmcsError


@dataclass(frozen=True)
class Optics:
    """Emission wavelength (nm), numerical aperture and camera pixel size (nm)."""

    wavelength_nm: float = 525.0
    na: float = 1.4
    pixel_nm: float = 80.0

    @property
    def cutoff(self) -> float:
        """OTF cut-off 2 NA / lambda in cycles/um."""
        return 2.0 * self.na / (self.wavelength_nm * 1e-3)

    @property
    def cutoff_per_pixel(self) -> float:
        """OTF cut-off in cycles per camera pixel (what a network reading camera pixels sees)."""
        return self.cutoff * self.pixel_nm * 1e-3

    @property
    def abbe_nm(self) -> float:
        """Wide-field (Abbe) resolution limit 1 / f_c in nm."""
        return 1e3 / self.cutoff

    def to_dict(self) -> dict:
        return asdict(self)


def check_sr_grid(optics: Optics, path: str | None = None) -> Optics:
    """``optics``, or :class:`EmcsError` (parameter ``pixel_size``) when its OTF support
    (the cut-off in cycles per camera pixel) does not fit the 2x super-resolution grid."""
    if optics.cutoff_per_pixel >= 1.0:
        raise EmcsError(f"pixel_size {optics.pixel_nm:g} nm is too coarse for NA {optics.na:g} at "
                        f"{optics.wavelength_nm:g} nm: the OTF support exceeds the 2x SR grid",
                        path, param="pixel_size")
    return optics


def otf_profile(rho: np.ndarray) -> np.ndarray:
    """Ideal 2-D incoherent OTF as a function of the normalised radius rho."""
    rho = np.clip(np.asarray(rho, dtype=np.float64), 0.0, 1.0)
    return (2.0 / np.pi) * (np.arccos(rho) - rho * np.sqrt(1.0 - rho**2))


def freq_grid(shape: tuple[int, int], pixel_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Unshifted FFT frequency grids (ky, kx) in cycles/um for an image of ``shape``."""
    d = pixel_nm * 1e-3
    ky = np.fft.fftfreq(shape[0], d)[:, None]
    kx = np.fft.fftfreq(shape[1], d)[None, :]
    return ky, kx


def otf(
    shape: tuple[int, int],
    pixel_nm: float,
    cutoff: float,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """OTF sampled on the (unshifted) FFT grid of an image, optionally displaced.

    Parameters
    ----------
    shape : (int, int)
        Image shape (H, W).
    pixel_nm : float
        Pixel size of that image in nm.
    cutoff : float
        OTF cut-off in cycles/um.
    shift : (ky, kx)
        Returns H(k + shift) (cycles/um).
    """
    ky, kx = freq_grid(shape, pixel_nm)
    r = np.sqrt((ky + shift[0]) ** 2 + (kx + shift[1]) ** 2) / cutoff
    return otf_profile(r) * (r < 1.0)


def defocus_attenuation(shape: tuple[int, int], pixel_nm: float, optics: Optics, defocus_um: float,
                        immersion_index: float = 1.515) -> np.ndarray:
    """Extra OTF factor of a layer ``defocus_um`` out of focus (geometric-optics approximation).

    Out of focus, a point spreads into a disc of radius ``r = dz tan(asin(NA / n))``
    whose transfer function ``2 J1(2 pi r k) / (2 pi r k)`` multiplies the in-focus OTF
    (the geometric limit of Stokseth, *J. Opt. Soc. Am.* 59, 1314, 1969). A micrometre of
    defocus at NA 1.4 leaves almost nothing at the SIM pattern frequency (|k| ~ 0.8 f_c):
    an out-of-focus layer adds smooth haze that is only weakly modulated.
    """
    from scipy.special import j1

    ky, kx = freq_grid(shape, pixel_nm)
    radius = abs(defocus_um) * np.tan(np.arcsin(min(optics.na / immersion_index, 0.999)))
    x = 2 * np.pi * radius * np.hypot(ky, kx)
    safe = np.where(x > 1e-9, x, 1.0)
    return np.where(x > 1e-9, 2 * j1(safe) / safe, 1.0)


def cosine_taper(shape: tuple[int, int], edge: int, max_fraction: float = 0.5) -> np.ndarray:
    """Separable raised-cosine window: 0 -> 1 over ``edge`` pixels at each border.

    The ramp is capped at ``max_fraction`` of each axis length. Used to taper
    images before FFTs (Wiener SIM, decorrelation analysis) so edges do not leak
    into the spectrum.
    """

    def ramp(n: int) -> np.ndarray:
        w = np.ones(n)
        e = min(edge, int(n * max_fraction))
        if e > 0:
            t = 0.5 - 0.5 * np.cos(np.pi * (np.arange(e) + 0.5) / e)
            w[:e], w[n - e :] = t, t[::-1]
        return w

    return ramp(shape[0])[:, None] * ramp(shape[1])[None, :]
