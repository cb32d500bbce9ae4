"""Training movies for the neural TCS decoders: simulated clips of B frames.

A clip is drawn from :func:`emcs.simulate.sample_movie` (the physical and procedural
kinds), or, a :data:`STANDIN_FRACTION` of the time, from :func:`standin_movie` (smooth
textures, a drifting crystal lattice and moving particles). Shot noise comes from the
one camera model (:func:`emcs.simulate.detector.apply_dose`).

Examples
--------
>>> import numpy as np
>>> clip, source = training_clip(np.random.default_rng(0), 4, 32)
>>> clip.shape, source in ("simulator", "standin")
((4, 32, 32), True)
"""

from __future__ import annotations

import math

import numpy as np

from emcs.simulate.extras import have
from emcs.simulate.render import smooth_field

__all__ = ["HELDOUT_KINDS", "STANDIN_FRACTION", "TRAIN_KINDS", "available_kinds", "shot_noise",
           "shot_noise_counts", "standin_movie", "training_clip"]

#: simulation kinds used for training; "cells" is kept out for held-out evaluation
TRAIN_KINDS = ("hrtem-particle", "hrtem-sintering", "haadf-crystal", "haadf-particle", "fibres", "lattice")
HELDOUT_KINDS = ("cells",)
#: fraction of training clips drawn from :func:`standin_movie`
STANDIN_FRACTION = 0.25
#: kinds whose fast sampler builds Au nanoparticles with ASE (the ``[sim]`` extra)
NEEDS_ASE = ("haadf-particle",)


def available_kinds(kinds: tuple[str, ...] = TRAIN_KINDS) -> tuple[str, ...]:
    """``kinds`` without those whose packages are missing (:data:`NEEDS_ASE` without ASE)."""
    if have("ase"):
        return tuple(kinds)
    return tuple(k for k in kinds if k not in NEEDS_ASE)


def _fourier_shift(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.fftfreq(img.shape[1])[None, :]
    phase = np.exp(-2j * math.pi * (fy * dy + fx * dx))
    return np.fft.ifft2(np.fft.fft2(img) * phase).real


def standin_movie(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """A procedural EM-like movie: clean float32 (frames, size, size) in [0, 1].

    Mixture of a drifting, slowly rotating crystal lattice (HRTEM-like),
    moving Gaussian particles (HAADF-like) and a drifting smooth texture
    (amorphous support), with random weights, contrast and drift speeds.
    """
    T, S = frames, size
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64)
    drift = rng.uniform(-1.5, 1.5, size=2) * rng.choice([0.0, 0.3, 1.0])
    out = np.zeros((T, S, S))
    # lattice
    w_lat = rng.choice([0.0, rng.uniform(0.3, 1.0)], p=[0.3, 0.7])
    if w_lat:
        period = rng.uniform(3.0, 14.0)
        theta0 = rng.uniform(0, math.pi)
        rot = rng.uniform(-0.01, 0.01)
        n_g = rng.choice([2, 3])
        for t in range(T):
            dy, dx = drift * t
            acc = np.zeros((S, S))
            for g in range(n_g):
                th = theta0 + rot * t + g * math.pi / n_g
                k = 2 * math.pi / period
                acc += np.cos(k * ((xx - dx) * math.cos(th) + (yy - dy) * math.sin(th)))
            out[t] += w_lat * (acc / n_g + 1) / 2
    # particles
    n_p = rng.integers(0, 25)
    if n_p:
        pos = rng.uniform(0, S, size=(n_p, 2))
        vel = rng.normal(0, 1.0, size=(n_p, 2)) * rng.choice([0.2, 1.0, 2.0])
        sig = rng.uniform(1.0, 6.0, size=n_p)
        amp = rng.uniform(0.3, 1.0, size=n_p)
        for t in range(T):
            p = pos + vel * t + drift * t
            for i in range(n_p):
                d2 = (yy - p[i, 0]) ** 2 + (xx - p[i, 1]) ** 2
                out[t] += amp[i] * np.exp(-0.5 * d2 / sig[i] ** 2)
    # texture
    w_tex = rng.uniform(0.1, 1.0)
    tex = smooth_field(rng, (S, S), rng.uniform(1.0, 8.0)).astype(np.float64)
    tex = (tex - tex.min()) / max(np.ptp(tex), 1e-8)
    for t in range(T):
        dy, dx = drift * t
        out[t] += w_tex * _fourier_shift(tex, dy, dx)
    # global intensity flicker
    out *= (1 + rng.normal(0, 0.02, size=T))[:, None, None]
    lo, hi = out.min(), out.max()
    out = (out - lo) / max(hi - lo, 1e-8)
    gain = rng.uniform(0.4, 1.0)
    return (out * gain + rng.uniform(0, 1 - gain)).astype(np.float32)


def training_clip(
    rng: np.random.Generator,
    B: int,
    size: int,
    use_simulator: bool = True,
    kinds: tuple[str, ...] = TRAIN_KINDS,
    standin_fraction: float = STANDIN_FRACTION,
) -> tuple[np.ndarray, str]:
    """B clean frames (B, size, size) in [0, 1] and their source ("simulator" or "standin").

    With ``use_simulator`` a clip comes from :func:`emcs.simulate.sample_movie` (of
    ``kinds``) with probability ``1 - standin_fraction``, else from :func:`standin_movie`.
    """
    from emcs.simulate import sample_movie

    if use_simulator and rng.random() >= standin_fraction:
        clip = np.asarray(sample_movie(rng, B, (size, size), kinds), dtype=np.float32)
        return np.clip(clip, 0.0, 1.0), "simulator"
    return standin_movie(rng, B, size), "standin"


def shot_noise_counts(rng: np.random.Generator, clean: np.ndarray, dose: float) -> tuple[np.ndarray, float]:
    """Poisson counts at a mean of ``dose`` counts per pixel, and the scale back to ``clean``'s units.

    A counting camera (:func:`emcs.simulate.detector.apply_dose`); ``counts * scale`` is
    the noisy clip in the units of ``clean``.
    """
    from emcs.simulate.detector import apply_dose

    mean = float(max(clean.mean(), 1e-6))
    counts = apply_dose(clean, dose, rng=rng, dtype=np.uint16)
    return np.asarray(counts, dtype=np.float32), mean / dose


def shot_noise(rng: np.random.Generator, clean: np.ndarray, dose: float) -> np.ndarray:
    """Poisson shot noise at a mean of ``dose`` counts per pixel, returned in the units of ``clean``."""
    counts, scale = shot_noise_counts(rng, clean, dose)
    return (counts * scale).astype(np.float32)
