"""The one camera model of every generator: dose, shot noise, readout noise, MTF, offset.

Convention
----------
A clean image is an *intensity* (any positive scale). The dose sets its mean:

    mean counts per pixel = dose [e/Å²] × pixel_size² [Å²]

and the expected counts of each pixel are ``clean / mean(clean) × counts_per_pixel``
(so the spatial pattern is kept and only the scale is fixed by the dose). The
camera then draws Poisson counts (shot noise), spreads each count with the
detector point-spread function (a Gaussian of ``mtf_sigma`` pixels, so the
noise becomes correlated like on an integrating camera), adds Gaussian readout
noise of ``readout_noise`` counts r.m.s., rounds and clips to the integer type
(uint8 when everything fits, else uint16), like a real camera.

The matching ground truth is :func:`expected_counts`: the mean of the noisy
output before rounding and clipping (blurred by the same MTF).

Examples
--------
>>> import numpy as np
>>> from emcs.simulate.detector import apply_dose, counts_per_pixel
>>> clean = np.ones((4, 8, 8), np.float32)
>>> n = counts_per_pixel(100.0, 0.2)    # 100 e/Å² at 0.2 Å/pixel -> 4 counts/pixel
>>> noisy = apply_dose(clean, n, np.random.default_rng(0))
>>> noisy.dtype, round(float(noisy.mean()))
(dtype('uint8'), 4)
"""

from __future__ import annotations

import numpy as np

__all__ = ["apply_dose", "camera_counts", "counts_per_pixel", "expected_counts", "mtf_blur", "choose_dtype"]


def counts_per_pixel(dose: float, pixel_size: float) -> float:
    """Mean counts per pixel for a dose in e/Å² on pixels of ``pixel_size`` Å.

    Parameters
    ----------
    dose : float
        Electron dose per frame in e/Å².
    pixel_size : float
        Pixel size in Å.

    Returns
    -------
    float
        ``dose * pixel_size**2``.
    """
    if dose <= 0 or not np.isfinite(dose):
        raise ValueError(f"dose must be a positive number, got {dose}")
    if pixel_size <= 0:
        raise ValueError(f"pixel size must be positive, got {pixel_size}")
    return float(dose) * float(pixel_size) ** 2


def mtf_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each (H, W) frame with a Gaussian detector PSF of ``sigma`` pixels."""
    images = np.asarray(images, dtype=np.float32)
    if sigma <= 0:
        return images
    from scipy import ndimage

    if images.ndim == 2:
        return ndimage.gaussian_filter(images, sigma, mode="reflect").astype(np.float32)
    out = np.empty_like(images)
    for k in range(images.shape[0]):
        out[k] = ndimage.gaussian_filter(images[k], sigma, mode="reflect")
    return out


def _scale_to_counts(clean: np.ndarray, counts: float) -> np.ndarray:
    clean = np.asarray(clean, dtype=np.float32)
    if counts <= 0 or not np.isfinite(counts):
        raise ValueError(f"counts per pixel must be positive, got {counts}")
    mean = float(clean.mean(dtype=np.float64))
    if not mean > 0:
        raise ValueError("the clean image has no positive intensity")
    return np.clip(clean, 0, None) * np.float32(counts / mean)


def expected_counts(clean: np.ndarray, dose: float, mtf_sigma: float = 0.0) -> np.ndarray:
    """The noise-free camera signal: the mean of :func:`apply_dose` before rounding.

    Parameters
    ----------
    clean : ndarray
        Clean intensity, (H, W) or (T, H, W).
    dose : float
        Mean counts per pixel over the whole array (see :func:`counts_per_pixel`).
    mtf_sigma : float
        Detector PSF width in pixels (0: none).
    """
    return mtf_blur(_scale_to_counts(clean, dose), mtf_sigma)


def choose_dtype(max_value: float) -> np.dtype:
    """uint8 when ``max_value`` fits in 8 bits, else uint16."""
    return np.dtype(np.uint8) if max_value <= 255 else np.dtype(np.uint16)


def apply_dose(
    clean: np.ndarray,
    dose: float,
    rng: np.random.Generator,
    readout_noise: float = 0.0,
    mtf_sigma: float = 0.0,
    dtype: np.dtype | str | None = None,
) -> np.ndarray:
    """Record a clean image with a camera: shot noise, PSF, readout noise, integer counts.

    Parameters
    ----------
    clean : ndarray
        Clean intensity, (H, W) or (T, H, W), any positive scale.
    dose : float
        Mean counts per pixel over the whole array: ``dose_e_per_A2 * pixel_size**2``
        (use :func:`counts_per_pixel`). Expected counts of a pixel are
        ``clean / mean(clean) * dose``.
    rng : numpy.random.Generator
        Source of the noise (results are deterministic for a seeded generator).
    readout_noise : float
        Gaussian readout noise, r.m.s. in counts (0: a counting camera).
    mtf_sigma : float
        Gaussian detector PSF in pixels, applied to the counts (signal and shot
        noise), as on an integrating camera.
    dtype : numpy dtype, optional
        Output integer type; default uint8 when every value fits, else uint16.
        Values are clipped to the type's range like a saturating camera.

    Returns
    -------
    ndarray of unsigned integers, same shape as ``clean``.
    """
    return camera_counts(_scale_to_counts(clean, dose), rng, readout_noise=readout_noise, mtf_sigma=mtf_sigma,
                         dtype=dtype)


def camera_counts(
    expected: np.ndarray,
    rng: np.random.Generator,
    readout_noise: float = 0.0,
    offset: float = 0.0,
    mtf_sigma: float = 0.0,
    dtype: np.dtype | str | None = None,
) -> np.ndarray:
    """The one camera of every generator: Poisson counts of ``expected``, PSF, readout noise, integers.

    Parameters
    ----------
    expected : ndarray
        Expected counts per pixel (photons or electrons, gain 1), any shape.
        The arithmetic runs in its float precision (float32 stays float32).
    rng : numpy.random.Generator
        Draws the Poisson counts, then (when ``readout_noise`` or ``offset`` is
        not 0) one Gaussian value per pixel.
    readout_noise : float
        Gaussian readout noise, r.m.s. counts.
    offset : float
        Camera offset (bias) added to every pixel (e.g. 100 on an sCMOS camera).
    mtf_sigma : float
        Gaussian detector PSF in pixels, applied to the counts before the readout noise.
    dtype : numpy dtype, optional
        Integer output type; default uint8 when every value fits, else uint16.
        Values are rounded and clipped to the type's range like a saturating camera.
    """
    expected = np.asarray(expected)
    work = np.result_type(expected.dtype, np.float32)
    counts = rng.poisson(expected).astype(work)
    if mtf_sigma > 0:
        counts = mtf_blur(counts, mtf_sigma)
    if readout_noise > 0 or offset != 0:
        counts += rng.normal(offset, readout_noise, size=counts.shape).astype(counts.dtype)
    counts = np.rint(counts)
    if dtype is None:
        dtype = choose_dtype(float(counts.max()) if counts.size else 0.0)
    dtype = np.dtype(dtype)
    if dtype.kind not in "ui":
        raise ValueError(f"camera output must be an integer type, got {dtype}")
    info = np.iinfo(dtype)
    return np.clip(counts, max(info.min, 0), info.max).astype(dtype)
