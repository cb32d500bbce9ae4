"""Fast random training movies (:func:`emcs.simulate.sample_movie`).

Physical HRTEM kinds are composed from cached abTEM exit waves (see
:mod:`emcs.simulate.cache`): the exit wave is interpolated between cached
orientations (slow tilt) or sintering stages, the objective-lens CTF is
applied with a slowly varying defocus, and the intensity is resampled with
smooth drift, in-plane rotation and a random magnification. HAADF kinds use
the incoherent model directly; procedural kinds are drawn with random motion
parameters. Without a cache, HRTEM kinds are replaced by procedural ones.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from emcs.simulate.cache import load_cache
from emcs.simulate.motion import random_motion, smooth_path, warp_frame
from emcs.simulate.optics import wavelength
from emcs.simulate.render import normalize

__all__ = ["sample_movie", "hrtem_from_cache", "DEFAULT_KINDS"]

DEFAULT_KINDS = ("hrtem-particle", "hrtem-sintering", "haadf-crystal", "haadf-particle", "fibres", "lattice",
                 "cells")
_HRTEM = ("hrtem-particle", "hrtem-sintering")
_PROCEDURAL = ("fibres", "lattice", "cells")


def hrtem_from_cache(rng: np.random.Generator, frames: int, size: tuple[int, int], cache: dict,
                     sintering: bool = False) -> np.ndarray:
    """HRTEM intensity movie (T, H, W) composed from cached exit-wave spectra, in [0, 1].

    Per frame: the stored spectrum is interpolated between neighbouring
    orientations (or sintering stages), multiplied by the objective-lens
    transfer function (random aperture 15-30 mrad, NCSI or positive Cs,
    defocus near Scherzer drifting slowly, focal-spread envelope), inverse
    transformed on a grid fine enough for the intensity (4 k_max), squared, and
    resampled with smooth drift and rotation at a random pixel size.
    """
    series = cache["sinter_waves"] if sintering else cache["particle_waves"]
    info = cache["info"]
    extent = float(info["extent_A"])
    kv = float(info["kv"])
    spectra = series[int(rng.integers(series.shape[0]))]
    m, n_spec = spectra.shape[0], spectra.shape[-1]
    half = n_spec // 2
    lam = wavelength(kv)
    # objective lens of this movie
    aperture = float(rng.uniform(15, min(30.0, float(info.get("max_aperture_mrad", 30.0)))))
    cs = float(rng.choice([-2e5, -1e5, 5e5, 1e7]))  # Å: -20 µm, -10 µm, 50 µm, 1 mm
    scherzer = np.sign(cs) * 1.2 * np.sqrt(abs(cs) * lam)  # abTEM sign (defocus = -C10)
    focal = float(rng.uniform(10, 40))
    freq = (np.arange(n_spec) - half) / extent
    k2 = freq[:, None] ** 2 + freq[None, :] ** 2
    mask = lam * np.sqrt(k2) <= aperture * 1e-3
    k2m = k2[mask]
    base = np.exp(-0.5 * (np.pi * lam * focal * k2m) ** 2) * np.exp(-1j * np.pi / 2 * cs * lam**3 * k2m**2)
    base = base.astype(np.complex64)
    theta = (np.pi * lam * k2m).astype(np.float32)  # chi from defocus = -defocus * theta
    kmax = aperture * 1e-3 / lam
    grid = scipy.fft.next_fast_len(max(n_spec, int(np.ceil(4 * kmax * extent)) + 2))
    grid += grid % 2
    iy, ix = np.nonzero(mask)
    rows, cols = (iy - half) % grid, (ix - half) % grid
    vals = np.asarray(spectra)[:, mask]  # (m, K)
    # slow walk through orientations / stages, slow focus drift
    if sintering:
        pos = np.clip(rng.uniform(0, m - 1) + rng.uniform(0.02, 0.12) * np.arange(frames), 0, m - 1)
    else:
        pos = np.clip(rng.uniform(0, m - 1) + smooth_path(rng, frames, rng.uniform(0.0, 0.15), 1)[:, 0], 0, m - 1)
    dfs = scherzer + rng.normal(0, 30.0) + smooth_path(rng, frames, rng.uniform(0.0, 2.0), 1)[:, 0]
    # pixel size: the field of view stays within ~1.2 periods of the cached cell
    p_hi = min(0.35, 1.2 * extent / max(size))
    p_out = float(rng.uniform(min(0.12, 0.7 * p_hi), p_hi))
    scene_px = extent / grid
    motion = random_motion(rng, frames, size, (grid, grid), speed=rng.uniform(0.05, 0.8),
                           rotation=rng.uniform(0, 0.004), scale=scene_px / p_out)
    motion.center = (grid / 2 + rng.normal(0, 1.5) / scene_px, grid / 2 + rng.normal(0, 1.5) / scene_px)
    out = np.empty((frames,) + tuple(size), np.float32)
    buf = np.zeros((grid, grid), np.complex64)
    for t in range(frames):
        i0 = int(np.floor(pos[t]))
        i1 = min(i0 + 1, m - 1)
        f = np.float32(pos[t] - i0)
        v = vals[i0] * (1 - f) + vals[i1] * f if f > 0 else vals[i0]
        ph = theta * np.float32(dfs[t])
        buf[rows, cols] = v * base * (np.cos(ph) + 1j * np.sin(ph)).astype(np.complex64)
        img = scipy.fft.ifft2(buf, workers=1)
        inten = (img.real**2 + img.imag**2).astype(np.float32)
        out[t] = warp_frame(inten, motion, t, order=1, mode="grid-wrap")
    return normalize(out, 0.1, 99.9, stride=3)


def sample_movie(rng: np.random.Generator, frames: int, size: tuple[int, int], kinds=None) -> np.ndarray:
    """See :func:`emcs.simulate.sample_movie`."""
    h, w = (int(s) for s in size)
    frames = int(frames)
    kinds = tuple(kinds) if kinds else DEFAULT_KINDS
    bad = [k for k in kinds if k not in DEFAULT_KINDS]
    if bad:
        raise ValueError(f"sample_movie cannot draw kind(s) {bad}; choose from {DEFAULT_KINDS}")
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind in _HRTEM:
        cache = load_cache()
        if cache is not None:
            return hrtem_from_cache(rng, frames, (h, w), cache, sintering=kind == "hrtem-sintering")
        from emcs.simulate.cache import warn_missing

        warn_missing("exit-wave cache", "HRTEM kinds are replaced by procedural ones", stacklevel=4)
        fallback = [k for k in kinds if k in _PROCEDURAL] or list(_PROCEDURAL)
        kind = fallback[int(rng.integers(len(fallback)))]
    if kind in _PROCEDURAL:
        from emcs.simulate.procedural import DEFAULTS, procedural_movie

        d = DEFAULTS[kind]
        clean, _, _ = procedural_movie(
            kind, rng, frames, (h, w),
            speed=rng.uniform(0.05, 1.0),
            rotation=d["rotation"] * rng.uniform(0, 2),
            deform=d["deform"] * rng.uniform(0, 2),
        )
        return clean
    from emcs.simulate.stem import haadf_movie, random_probe

    params, profile = random_probe(rng)
    pixel = float(np.exp(rng.uniform(np.log(0.1), np.log(0.4))))
    clean, _, _ = haadf_movie(kind, rng, frames, (h, w), pixel_size=pixel, kv=params["kv"],
                              convergence=params["convergence"], defocus=params["defocus"], cs=params["cs"],
                              source=params["source"], speed=rng.uniform(0.05, 0.8), jitter=rng.uniform(0, 0.3), order=1, profile=profile)
    return clean
