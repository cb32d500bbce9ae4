"""Training samples for the neural TCS decoders.

A sample is B consecutive frames of a movie patch, a fresh random mask, and
the TCS measurement of the *noisy* frames; the target is the clean frames
(simulated data) or the raw frames themselves (a user's own movies, for
which no clean truth exists).

Sources
-------
- :func:`simulated_clip`: ``emcs.simulate.sample_movie`` when it is available,
  otherwise :func:`standin_movie` (smooth textures, a drifting crystal lattice
  and moving particles: a procedural stand-in written for this package).
- :class:`FolderClips`: random crops of B consecutive frames from the TIFF/MRC/NPY
  movies in a folder, normalised per movie to about [0, 1].

Everything is driven by an explicit ``numpy.random.Generator`` so runs are
reproducible and held-out sets can use disjoint seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emcs.errors import EmcsError
from emcs.tcs.masks import make_masks

MOVIE_SUFFIXES = (".tif", ".tiff", ".mrc", ".mrcs", ".npy")


@dataclass
class Batch:
    """One training batch (numpy, float32).

    y : (N, H, W) measurements of the noisy frames, frames scaled to ~[0, 1].
    masks : (N, B, H, W) float masks (0/1).
    target : (N, B, H, W) frames to recover.
    """

    y: np.ndarray
    masks: np.ndarray
    target: np.ndarray
    sources: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- stand-in movies


def _smooth_field(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """A random field with a Gaussian power spectrum (correlation length ~``scale`` px), in [0, 1]."""
    f = np.fft.fftfreq(size)
    k2 = f[:, None] ** 2 + f[None, :] ** 2
    spec = np.exp(-0.5 * k2 * (2 * math.pi * scale) ** 2)
    noise = rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))
    field = np.fft.ifft2(noise * spec).real
    field -= field.min()
    return field / max(field.max(), 1e-8)


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
    tex = _smooth_field(rng, S, rng.uniform(1.0, 8.0))
    for t in range(T):
        dy, dx = drift * t
        out[t] += w_tex * _fourier_shift(tex, dy, dx)
    # global intensity flicker
    out *= (1 + rng.normal(0, 0.02, size=T))[:, None, None]
    lo, hi = out.min(), out.max()
    out = (out - lo) / max(hi - lo, 1e-8)
    gain = rng.uniform(0.4, 1.0)
    return (out * gain + rng.uniform(0, 1 - gain)).astype(np.float32)


#: simulation kinds used for training; "cells" is kept out for held-out evaluation
TRAIN_KINDS = ("hrtem-particle", "hrtem-sintering", "haadf-crystal", "haadf-particle", "fibres", "lattice")
HELDOUT_KINDS = ("cells",)
#: fraction of training clips drawn from :func:`standin_movie` when the simulator is present
STANDIN_FRACTION = 0.25


def _simulator():
    """``emcs.simulate.sample_movie`` if importable, else None."""
    try:
        from emcs.simulate import (
            fast,  # noqa: F401  (the sampler's implementation)
            sample_movie,
        )
    except Exception:  # absent or broken simulator: the stand-in is used instead
        return None
    return sample_movie


def simulator_description() -> str:
    """Words for the model card: where simulated training clips come from."""
    if _simulator() is None:
        return "procedural stand-in movies (emcs.tcs.nets.data.standin_movie: lattice, particles, texture)"
    return (f"emcs.simulate.sample_movie kinds {', '.join(TRAIN_KINDS)} ({100 - 100 * STANDIN_FRACTION:.0f} %) "
            f"+ procedural stand-in movies ({100 * STANDIN_FRACTION:.0f} %); held-out kinds {HELDOUT_KINDS}")


def simulated_clip(
    rng: np.random.Generator,
    B: int,
    size: int,
    use_simulator: bool = True,
    kinds: tuple[str, ...] | None = TRAIN_KINDS,
    standin_fraction: float = STANDIN_FRACTION,
) -> np.ndarray:
    """B clean frames (B, size, size) in [0, 1] from the simulation engine or the stand-in."""
    return _clip_and_source(rng, B, size, use_simulator, kinds, standin_fraction)[0]


def _clip_and_source(rng, B, size, use_simulator=True, kinds=TRAIN_KINDS, standin_fraction=STANDIN_FRACTION):
    sim = _simulator() if use_simulator else None
    if sim is not None and rng.random() >= standin_fraction:
        try:
            clip = np.asarray(sim(rng, B, (size, size), kinds), dtype=np.float32)
        except Exception:  # a simulator failure must not end a long training run
            clip = None
        if clip is not None and clip.shape == (B, size, size) and np.isfinite(clip).all():
            return np.clip(clip, 0.0, 1.0), "simulator"
    return standin_movie(rng, B, size), "standin"


def shot_noise_counts(rng: np.random.Generator, clean: np.ndarray, dose: float) -> tuple[np.ndarray, float]:
    """Poisson counts at a mean of ``dose`` counts per pixel, and the scale back to ``clean``'s units.

    Uses ``emcs.simulate.detector.apply_dose`` (a counting camera) when available; ``counts * scale``
    is the noisy clip in the units of ``clean``.
    """
    mean = float(max(clean.mean(), 1e-6))
    try:
        from emcs.simulate.detector import apply_dose

        counts = apply_dose(clean, dose, rng=rng, dtype=np.uint16)
    except ImportError:
        counts = rng.poisson(np.clip(clean, 0, None) / mean * dose)
    return np.asarray(counts, dtype=np.float32), mean / dose


def shot_noise(rng: np.random.Generator, clean: np.ndarray, dose: float) -> np.ndarray:
    """Poisson shot noise at a mean of ``dose`` counts per pixel, returned in the units of ``clean``."""
    counts, scale = shot_noise_counts(rng, clean, dose)
    return (counts * scale).astype(np.float32)


def quantize_counts(y: np.ndarray, step: float) -> np.ndarray:
    """Summed counts as ``emcs encode --quantize STEP`` stores and a reader gets them back."""
    from emcs.tcs.container import anscombe_codes, anscombe_values

    return anscombe_values(anscombe_codes(y, step), step).astype(np.float32)


# --------------------------------------------------------------------------- user folders


class FolderClips:
    """Random crops of B consecutive frames from the movies in a folder.

    Each movie is normalised once with its 0.1 / 99.9 percentiles (of a few
    sampled frames) so frames lie in about [0, 1].
    """

    def __init__(self, folder: str | Path):
        from emcs.io import open_stack

        folder = Path(folder)
        self.folder = folder
        if not folder.is_dir():
            raise EmcsError("not a folder of training movies", folder)
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in MOVIE_SUFFIXES)
        if not paths:
            raise EmcsError(f"no movies ({', '.join(MOVIE_SUFFIXES)}) in this folder", folder)
        self.stacks = []
        self.norms = []
        for p in paths:
            st = open_stack(p)
            T, H, W = st.shape
            if T < 2:
                raise EmcsError("a training movie needs at least 2 frames", p)
            idx = np.linspace(0, T - 1, min(T, 5)).astype(int)
            sample = np.stack([np.asarray(st[int(i)], dtype=np.float32) for i in idx])
            lo, hi = np.percentile(sample, [0.1, 99.9])
            self.stacks.append(st)
            self.norms.append((float(lo), float(max(hi - lo, 1e-8))))

    def check(self, B: int, size: int) -> None:
        """Keep only movies with at least B frames of size x size; error if none is left."""
        keep = [i for i, st in enumerate(self.stacks)
                if st.shape[0] >= B and st.shape[1] >= size and st.shape[2] >= size]
        if not keep:
            raise EmcsError(f"no movie here has {B} frames of at least {size}x{size} pixels "
                            "(use a smaller --B or --patch)", self.folder)
        self.stacks = [self.stacks[i] for i in keep]
        self.norms = [self.norms[i] for i in keep]

    def clip(self, rng: np.random.Generator, B: int, size: int) -> np.ndarray:
        """B consecutive frames (B, size, size) from a random movie and position."""
        k = int(rng.integers(len(self.stacks)))
        st, (lo, span) = self.stacks[k], self.norms[k]
        T, H, W = st.shape
        t0 = int(rng.integers(0, T - B + 1))
        i0 = int(rng.integers(0, H - size + 1))
        j0 = int(rng.integers(0, W - size + 1))
        frames = np.asarray(st.read(t0, t0 + B), dtype=np.float32)[:, i0 : i0 + size, j0 : j0 + size]
        frames = (frames - lo) / span
        if rng.random() < 0.5:
            frames = frames[:, :, ::-1]
        if rng.random() < 0.5:
            frames = frames[::-1]
        return np.ascontiguousarray(frames)


# --------------------------------------------------------------------------- batches


def make_batch(
    rng: np.random.Generator,
    B: int,
    size: int,
    batch: int,
    *,
    density_range: tuple[float, float] = (0.5, 0.5),
    dose_range: tuple[float, float] = (1.0, 1000.0),
    folder: FolderClips | None = None,
    use_simulator: bool = True,
    quantize_range: tuple[float, float] | None = None,
    quantize_fraction: float = 0.5,
) -> Batch:
    """Draw a batch: clips, fresh masks (random seed and density), noisy measurement.

    For simulated clips the dose (electrons per pixel at intensity 1) is
    log-uniform in ``dose_range`` (mean counts per pixel); the target is the clean clip. With
    ``quantize_range``, a ``quantize_fraction`` of the simulated measurements are quantized as
    ``emcs encode --quantize STEP`` does, with STEP uniform in the range. For folder
    clips no noise is added and the target is the raw clip.
    """
    ys, ms, ts = [], [], []
    sources: dict[str, int] = {}
    for _ in range(batch):
        # The order of the draws is kept from earlier releases, so that a seed gives the same batches.
        if folder is not None:
            clean = folder.clip(rng, B, size)
            counts, scale = clean, 1.0
            src = "folder"
        else:
            clean, src = _clip_and_source(rng, B, size, use_simulator)
            dose = math.exp(rng.uniform(math.log(dose_range[0]), math.log(dose_range[1])))
            counts, scale = shot_noise_counts(rng, clean, dose)
        sources[src] = sources.get(src, 0) + 1
        density = float(rng.uniform(*density_range))
        masks = make_masks(int(rng.integers(2**32)), B, size, size, density).astype(np.float32)
        y = (masks * counts).sum(0)
        if folder is None and quantize_range is not None and rng.random() < quantize_fraction:
            y = quantize_counts(y, float(rng.uniform(*quantize_range)))
        ys.append((y * scale).astype(np.float32))
        ms.append(masks)
        ts.append(clean)
    return Batch(np.stack(ys), np.stack(ms), np.stack(ts), sources)
