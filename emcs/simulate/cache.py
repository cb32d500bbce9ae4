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

Files are plain ``.npy`` (never pickled), memory-mapped when read. This module only reads
the folder; :mod:`emcs.simulate.cachebuild` computes it (with abTEM).
"""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["cache_dir", "cache_status", "load_cache", "warn_missing", "CACHE_VERSION", "MAX_APERTURE", "PROBE_DR"]

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


def warn_missing(what: str, instead: str, stacklevel: int = 3) -> None:
    """Warn that the cache lacks ``what`` and the simulation does ``instead`` (which changes its
    output), naming the folder and the one-time fix."""
    import warnings

    warnings.warn(f"emcs.simulate: no {what} in {cache_dir()}; {instead} (run emcs.simulate.build_cache() "
                  "once, ~2 minutes)", stacklevel=stacklevel)


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
