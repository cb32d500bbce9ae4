"""Synthetic STEM training images for the DLSS network: textures and a scan detector.

A clean image is a procedural HAADF/ADF-STEM texture (:func:`stem_texture`) or, with
``simulated``, sometimes :func:`emcs.simulate.sample_stem`; :func:`degrade` records it
with a scanning detector (Poisson shot noise over a range of doses, read noise,
detector lag along the fast scan axis, scan-line offsets).

>>> import numpy as np
>>> img = stem_texture(np.random.default_rng(0), 64)
>>> img.shape, float(img.min()) >= 0, float(img.max()) <= 1
((64, 64), True, True)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from emcs.simulate.detector import camera_counts
from emcs.simulate.render import smooth_field

__all__ = ["PROBE_BLUR", "clean_image", "degrade", "stem_texture"]

#: default probe blur sigma range (pixels) of the procedural images (``emcs train dlss --probe-blur``)
PROBE_BLUR = (0.0, 1.5)


# --------------------------------------------------------------------------- clean images
def _smooth_field(rng: np.random.Generator, size: int, corr: float) -> np.ndarray:
    """:func:`emcs.simulate.render.smooth_field` on a square, in float64."""
    return smooth_field(rng, (size, size), corr).astype(np.float64)


def _lattice(rng: np.random.Generator, size: int) -> np.ndarray:
    """Atomic columns: a 2-D lattice with a 1-2 atom basis, Gaussian columns."""
    a = math.exp(rng.uniform(math.log(3.5), math.log(28.0)))
    b = a * rng.uniform(0.7, 1.4)
    theta = rng.uniform(0, math.pi)
    gamma = rng.uniform(math.radians(55), math.radians(125))
    v1 = a * np.array([math.cos(theta), math.sin(theta)])
    v2 = b * np.array([math.cos(theta + gamma), math.sin(theta + gamma)])
    B = np.stack([v1, v2], 1)  # columns are lattice vectors (y, x)
    Binv = np.linalg.inv(B)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    pts = np.stack([yy.ravel(), xx.ravel()], 0)
    frac = Binv @ pts
    sigma = min(a, b) * rng.uniform(0.1, 0.28)
    n_basis = rng.integers(1, 3)
    img = np.zeros(size * size)
    for k in range(n_basis):
        shift = np.zeros(2) if k == 0 else rng.uniform(0.2, 0.8, 2)
        weight = 1.0 if k == 0 else rng.uniform(0.2, 1.0)
        f = frac - shift[:, None]
        f = f - np.round(f)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                d = B @ (f + np.array([[di], [dj]]))
                img += weight * np.exp(-(d[0] ** 2 + d[1] ** 2) / (2 * sigma**2))
    img = img.reshape(size, size)
    # column-to-column intensity variation (thickness, vacancies)
    img *= 1.0 + rng.uniform(0, 0.4) * _smooth_field(rng, size, rng.uniform(1, 6)).clip(-2, 2)
    return img


def _amorphous(rng: np.random.Generator, size: int) -> np.ndarray:
    """Amorphous/particulate texture: smooth fields at one or two scales."""
    img = _smooth_field(rng, size, math.exp(rng.uniform(math.log(1.0), math.log(30.0))))
    if rng.random() < 0.5:
        img += rng.uniform(0.2, 1.0) * _smooth_field(rng, size, rng.uniform(0.7, 4.0))
    return img


def _region(rng: np.random.Generator, size: int) -> np.ndarray:
    """Soft mask in [0, 1] splitting the field: straight interface, blob or particle."""
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    width = rng.uniform(0.5, 8.0)
    if kind == 0:  # straight interface
        ang = rng.uniform(0, 2 * math.pi)
        c = rng.uniform(0.2, 0.8, 2) * size
        d = (yy - c[0]) * math.cos(ang) + (xx - c[1]) * math.sin(ang)
    elif kind == 1:  # blobby region
        d = _smooth_field(rng, size, size * rng.uniform(0.1, 0.3)) * size * 0.1
    else:  # particle
        c = rng.uniform(0.1, 0.9, 2) * size
        r = size * rng.uniform(0.15, 0.5)
        d = r - np.hypot(yy - c[0], xx - c[1])
    return 1.0 / (1.0 + np.exp(-np.clip(d / width, -50, 50)))


def stem_texture(rng: np.random.Generator, size: int, probe_blur: tuple[float, float] = PROBE_BLUR) -> np.ndarray:
    """A clean HAADF/ADF-STEM-like image in [0, 1] (float32, ``size`` x ``size``).

    Crystalline lattices (1-2 atom basis, random spacing 3.5-28 px, orientation
    and column intensities), amorphous textures, interfaces, particles and
    vacuum, a smooth thickness/background gradient and a Gaussian probe blur
    with sigma drawn uniformly from ``probe_blur`` (pixels; larger values mean
    a scan oversampled relative to the probe).
    """
    roll = rng.random()
    if roll < 0.35:
        img = _lattice(rng, size)
    elif roll < 0.55:
        img = _amorphous(rng, size)
    else:  # two phases split by an interface / particle edge
        m = _region(rng, size)
        parts = []
        for _ in range(2):
            r = rng.random()
            if r < 0.5:
                p = _lattice(rng, size)
            elif r < 0.8:
                p = _amorphous(rng, size)
                p = (p - p.min()) / (np.ptp(p) + 1e-12)
            else:
                p = np.zeros((size, size))  # vacuum
            parts.append(p * rng.uniform(0.2, 1.0) + rng.uniform(0, 1.0))
        img = m * parts[0] + (1 - m) * parts[1]
    img = (img - img.min()) / (np.ptp(img) + 1e-12)
    if rng.random() < 0.6:  # thickness / background gradient
        img = img * (1 + rng.uniform(0, 0.8) * _smooth_field(rng, size, size / 3).clip(-1.5, 1.5) / 1.5)
        img += rng.uniform(0, 0.5) * (_smooth_field(rng, size, size / 4) + 2) / 4
    img = ndimage.gaussian_filter(img, rng.uniform(*probe_blur))
    img = (img - img.min()) / (np.ptp(img) + 1e-12)
    return img.astype(np.float32)


def clean_image(rng: np.random.Generator, size: int, simulated: bool = False,
                probe_blur: tuple[float, float] = PROBE_BLUR) -> np.ndarray:
    """One clean training image: :func:`stem_texture`, or 40 % of the time with ``simulated``
    :func:`emcs.simulate.sample_stem` (min-max scaled; a flat image falls back to the texture)."""
    if simulated and rng.random() < 0.4:
        from emcs.simulate import sample_stem

        img = np.asarray(sample_stem(rng, (size, size)), np.float32)
        if np.ptp(img) > 0:
            return (img - img.min()) / np.ptp(img)
    return stem_texture(rng, size, probe_blur)


# --------------------------------------------------------------------------- detector model
def degrade(rng: np.random.Generator, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a recorded scan from a clean image; returns ``(noisy, target)``.

    ``target`` is the noise-free signal (clean image through the detector lag);
    ``noisy`` adds Poisson shot noise (2-2000 counts at the brightest pixel, or
    none 10 % of the time), Gaussian read noise and scan-line offsets.
    """
    img = clean.astype(np.float64)
    bg = rng.uniform(0, 0.2)
    signal = img + bg
    lag = rng.uniform(0, 1.5) if rng.random() < 0.6 else 0.0
    if rng.random() < 0.1:
        noisy = signal.copy()
    else:
        dose = math.exp(rng.uniform(math.log(2.0), math.log(2000.0)))
        noisy = camera_counts(signal * dose, rng, dtype=np.uint16) / dose
        noisy += rng.standard_normal(img.shape) * rng.uniform(0, 0.03)
        if rng.random() < 0.3:
            noisy += rng.standard_normal((img.shape[0], 1)) * rng.uniform(0, 0.05)
    if lag > 0:  # detector afterglow along the fast scan axis (x)
        n = int(math.ceil(lag * 5))
        k = np.exp(-np.arange(n + 1) / lag)
        k /= k.sum()
        kern = np.concatenate([np.zeros(n), k])  # causal
        signal = ndimage.convolve1d(signal, kern, axis=1, mode="nearest")
        noisy = ndimage.convolve1d(noisy, kern, axis=1, mode="nearest")
    if rng.random() < 0.5:  # swap fast/slow axes sometimes (scan rotation)
        signal, noisy = signal.T, noisy.T
    return noisy.astype(np.float32), signal.astype(np.float32)
