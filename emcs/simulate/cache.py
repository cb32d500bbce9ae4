"""On-disk cache of abTEM building blocks for the fast samplers.

Layout of the cache folder (``$EMCS_CACHE`` or ``~/.cache/emcs/sim``)::

    index.json            parameters, versions, creation time
    particle_waves.npy    complex64 (n, 6, S, S): spectra (centred 2-D FFT, cropped to
                          |k| <= 30 mrad / lambda) of the exit waves of Au particles
                          on carbon, 6 orientations 1.5° apart along a random tilt path
    sinter_waves.npy      complex64 (2, 8, S, S): the same for two particles sintering,
                          8 stages

Only the low-frequency part of each exit wave is kept because every image is
formed through an objective aperture of at most 30 mrad (4x less disk and
one inverse FFT per frame).
    probe_profiles.npy    float32 (K, R): radial HAADF probe intensities from abTEM
    probe_params.npy      float32 (K, 5): kV, convergence (mrad), defocus (Å), Cs (Å),
                          source size (Å) of each profile

Files are plain ``.npy`` (never pickled), memory-mapped when read.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

__all__ = ["cache_dir", "cache_status", "load_cache", "build_cache", "CACHE_VERSION"]

CACHE_VERSION = 2
MAX_APERTURE = 30.0  # mrad: spectra are stored up to this scattering angle
PROBE_DR = 0.02  # Å, radial sampling of the probe profiles
_MEMO: dict = {}


def cache_dir(path: str | os.PathLike | None = None) -> str:
    """The cache folder: ``path``, else ``$EMCS_CACHE``, else ``~/.cache/emcs/sim``."""
    if path:
        return os.fspath(path)
    env = os.environ.get("EMCS_CACHE")
    if env:
        return env
    return os.path.join(os.path.expanduser("~"), ".cache", "emcs", "sim")


def cache_status(path: str | os.PathLike | None = None) -> dict:
    """What the cache holds: ``{"path", "ready", ...index fields}``."""
    folder = cache_dir(path)
    index = os.path.join(folder, "index.json")
    if not os.path.exists(index):
        return {"path": folder, "ready": False}
    try:
        with open(index, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return {"path": folder, "ready": False}
    ok = info.get("version") == CACHE_VERSION and all(
        os.path.exists(os.path.join(folder, f)) for f in info.get("files", [])
    )
    return {"path": folder, "ready": bool(ok), **info}


def load_cache(path: str | os.PathLike | None = None) -> dict | None:
    """Memory-mapped cache arrays, or None when there is no complete cache.

    The result is remembered per folder and index modification time, so
    repeated calls are free.
    """
    folder = cache_dir(path)
    index = os.path.join(folder, "index.json")
    try:
        stamp = os.stat(index).st_mtime_ns
    except OSError:
        return None
    key = (folder, stamp)
    if key in _MEMO:
        return _MEMO[key]
    status = cache_status(folder)
    if not status["ready"]:
        return None
    out = {"info": status}
    for name in status["files"]:
        out[name[:-4]] = np.load(os.path.join(folder, name), mmap_mode="r", allow_pickle=False)
    _MEMO.clear()
    _MEMO[key] = out
    return out


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
    from emcs.simulate import hrtem, stem

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
    half = int(np.ceil(MAX_APERTURE * 1e-3 / hrtem.wavelength(kv) * extent)) + 1
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
    import abtem
    import ase

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
