"""Compute the exit-wave cache of :mod:`emcs.simulate.cache` with abTEM (needs the ``[sim]`` extra)."""

from __future__ import annotations

import json
import os
import time

import numpy as np

from emcs.simulate import hrtem, stem
from emcs.simulate.cache import CACHE_VERSION, MAX_APERTURE, PROBE_DR, cache_dir
from emcs.simulate.extras import require
from emcs.simulate.optics import wavelength

__all__ = ["build_cache"]


def build_cache(n: int = 16, seed: int = 0, path=None, progress=None, grid: int = 256,
                sampling: float = 0.16) -> str:
    """Compute the cache with abTEM (see module docstring); returns the folder.

    About 0.15-0.4 s of CPU per 256x256 exit wave after ~10 s of start-up
    (abTEM import, numba JIT, FFTW planning), plus ~5 s for the 48 probes:
    n = 16 (112 exit waves, 16 MB on disk) took 97 s on the shared 2-core
    machine. Safe to call from a training script:

    >>> from emcs.simulate import build_cache, cache_status   # doctest: +SKIP
    >>> if not cache_status()["ready"]:                       # doctest: +SKIP
    ...     build_cache(n=16, seed=0)
    """
    folder = cache_dir(path)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    n_orient, n_stage, n_sinter = 6, 8, 2
    total = n * n_orient + n_sinter * n_stage
    done = [0]

    def tick():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    kv = hrtem.DEFAULTS["kv"]
    extent = grid * sampling
    half = int(np.ceil(MAX_APERTURE * 1e-3 / wavelength(kv) * extent)) + 1
    spec_size = 2 * half

    def crop(waves):
        spec = np.fft.fftshift(np.fft.fft2(waves), axes=(-2, -1))
        c = grid // 2
        return spec[..., c - half : c + half, c - half : c + half].astype(np.complex64)

    particle = np.zeros((n, n_orient, spec_size, spec_size), np.complex64)
    particle_meta = []
    for i in range(n):
        waves, meta = hrtem.tilt_series_exit_waves(rng, grid, sampling, n_orient, kv=kv, on_wave=tick)
        particle[i] = crop(waves)
        particle_meta.append(meta)
    sinter = np.zeros((n_sinter, n_stage, spec_size, spec_size), np.complex64)
    for i in range(n_sinter):
        waves, _ = hrtem.sintering_exit_waves(rng, grid, sampling, n_stage, kv=kv, on_wave=tick)
        sinter[i] = crop(waves)
    params, profiles = stem.abtem_probe_profiles(PROBE_DR)
    files = {
        "particle_waves.npy": particle,
        "sinter_waves.npy": sinter,
        "probe_profiles.npy": profiles.astype(np.float32),
        "probe_params.npy": params.astype(np.float32),
    }
    for name, arr in files.items():
        tmp = os.path.join(folder, f".{name}.part.npy")
        np.save(tmp, arr, allow_pickle=False)
        os.replace(tmp, os.path.join(folder, name))
    abtem = require("abtem", "the exit-wave cache")
    ase = require("ase", "the exit-wave cache")
    info = {
        "version": CACHE_VERSION,
        "files": sorted(files),
        "n": n,
        "seed": seed,
        "grid": grid,
        "sampling_A": sampling,
        "extent_A": extent,
        "spectrum_size": spec_size,
        "max_aperture_mrad": MAX_APERTURE,
        "kv": kv,
        "probe_dr_A": PROBE_DR,
        "particles": particle_meta,
        "abtem": abtem.__version__,
        "ase": ase.__version__,
        "seconds": round(time.time() - t0, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = os.path.join(folder, ".index.json.part")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=1)
    os.replace(tmp, os.path.join(folder, "index.json"))
    return folder
