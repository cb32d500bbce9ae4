"""The data engine: every synthetic-data generator of emcs.

Physical (abTEM + ASE, the ``[sim]`` extra, imported on first use) and procedural
movies, STEM images, the training data of the three capabilities and one camera
model. Only :mod:`emcs.cli` and :mod:`emcs.train` import this package; it imports the
SIM forward model (:mod:`emcs.sim.forward`) but no other capability.

Public API (stable; training code draws fresh samples without files):

- :data:`KINDS`: the kind names understood by :func:`movie` and ``emcs simulate``.
- :func:`movie`: one movie of a kind, with an optional camera (dose, shot noise).
- :func:`sample_movie`: a fast clean training movie (T, H, W) in [0, 1] of a random kind.
- :func:`sample_stem`: a fast clean HAADF-STEM-like image (H, W) in [0, 1].
- :func:`build_cache`: precompute the abTEM building blocks that make physical
  kinds fast in :func:`sample_movie` / :func:`sample_stem`.
- :mod:`emcs.simulate.detector`: the one camera model (:func:`~emcs.simulate.detector.apply_dose`,
  :func:`~emcs.simulate.detector.camera_counts`).
- :mod:`emcs.simulate.clips`: TCS training clips (:func:`~emcs.simulate.clips.training_clip`).
- :mod:`emcs.simulate.textures`: DLSS training images and the scan detector
  (:func:`~emcs.simulate.textures.clean_image`, :func:`~emcs.simulate.textures.degrade`).
- :mod:`emcs.simulate.lattices`: DLSS atomic-resolution lattice scenes with scan artefacts
  (:func:`~emcs.simulate.lattices.lattice_pair`; ``emcs train dlss --lattice-fraction``).
- :mod:`emcs.simulate.fluorescence`: SIM structures, raw stacks and wide-field frames
  (:func:`~emcs.simulate.fluorescence.simulate_movie`, ``write_sim_data``, ``noisy_widefield``).
- :mod:`emcs.simulate.render`: the one smooth random field and percentile normalisation.

Module layers (no import circles): ``kinds``, ``extras``, ``optics``, ``render``,
``detector``, ``cache`` import no other generator; ``motion`` uses ``render``;
``procedural``, ``stem``, ``hrtem``, ``fast`` build on those; ``cachebuild`` (abTEM)
and the training-data modules sit on top.

Examples
--------
>>> from emcs.simulate import movie
>>> r = movie("lattice", frames=4, size=(64, 64), seed=1, dose=50.0)
>>> r.noisy.shape, r.noisy.dtype.kind, r.clean.dtype
((4, 64, 64), 'u', dtype('float32'))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from emcs.errors import EmcsError
from emcs.simulate.kinds import KIND_HELP, KINDS, PHYSICAL_KINDS, PROCEDURAL_KINDS

if TYPE_CHECKING:  # numpy and scipy are imported on first use, so `emcs --help` stays fast
    import numpy as np

__all__ = [
    "KINDS",
    "KIND_HELP",
    "PHYSICAL_KINDS",
    "PROCEDURAL_KINDS",
    "SimResult",
    "apply_dose",
    "build_cache",
    "cache_dir",
    "cache_status",
    "movie",
    "sample_movie",
    "sample_stem",
]

#: largest movie simulated in memory (bytes of the float32 movie, its camera copy and a work copy)
MAX_BYTES = 6 * 2**30


@dataclass
class SimResult:
    """A simulated movie.

    Attributes
    ----------
    noisy : ndarray (T, H, W) uint8/uint16 or None
        Camera counts (shot noise, readout noise, MTF), None when no dose was given.
    clean : ndarray (T, H, W) float32
        Expected counts per pixel when a dose was given (the mean of ``noisy``),
        otherwise normalised intensity, roughly in [0, 1].
    pixel_size : float
        Å per pixel.
    meta : dict
        Every parameter needed to reproduce the movie.
    """

    noisy: np.ndarray | None
    clean: np.ndarray
    pixel_size: float
    meta: dict = field(default_factory=dict)


def __getattr__(name):
    if name == "apply_dose":
        from emcs.simulate.detector import apply_dose

        return apply_dose
    if name in ("cache_dir", "cache_status"):
        from emcs.simulate import cache

        return getattr(cache, name)
    raise AttributeError(f"module 'emcs.simulate' has no attribute {name!r}")


def _check_size(frames: int, size) -> tuple[int, tuple[int, int]]:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise EmcsError(f"size must be two integers (H, W), got {size!r}") from None
    if h < 16 or w < 16 or h > 8192 or w > 8192:
        raise EmcsError(f"frame size must be between 16 and 8192 pixels per side, got {h}x{w}")
    frames = int(frames)
    if frames < 1 or frames > 100000:
        raise EmcsError(f"frames must be between 1 and 100000, got {frames}")
    need = frames * h * w * 4 * 3  # clean float32, its camera copy and a work copy
    if need > MAX_BYTES:
        raise EmcsError(f"{frames} frames of {h}x{w} would need about {need / 2**30:.1f} GiB of memory "
                        f"(limit {MAX_BYTES / 2**30:.0f} GiB); simulate fewer frames per file")
    return frames, (h, w)


def movie(
    kind: str,
    frames: int,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    dose: float | None = None,
    *,
    counts: float | None = None,
    readout_noise: float = 0.0,
    mtf_sigma: float = 0.0,
    dtype=None,
    progress=None,
    **options,
) -> SimResult:
    """Simulate one movie of ``kind``.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS` except "sim" (use :func:`emcs.simulate.fluorescence.write_sim_data`).
    frames : int
        Number of frames T.
    size : (int, int)
        Frame (H, W) in pixels.
    seed : int
        Seed of everything random (structure, motion, noise).
    dose : float, optional
        Electron dose per frame in e/Å²: mean counts per pixel = dose × pixel_size².
    counts : float, optional
        Mean counts per pixel instead of ``dose`` (give one or neither).
    readout_noise : float
        Gaussian readout noise (counts r.m.s.).
    mtf_sigma : float
        Detector PSF width (pixels).
    dtype : numpy dtype, optional
        Camera output type (default uint8 if it fits, else uint16).
    progress : callable, optional
        Called after each simulated frame (HRTEM kinds only, which take ~0.1-0.5 s per frame).
    **options
        Kind-specific parameters: ``pixel_size``, ``speed``, ``rotation``, ``deform``
        (all kinds); HRTEM: ``kv``, ``defocus``, ``cs``, ``aperture``, ``focal_spread``,
        ``atoms``; HAADF: ``kv``, ``convergence``, ``inner``, ``outer``, ``defocus``.

    Returns
    -------
    SimResult
    """
    import numpy as np

    from emcs.simulate.detector import apply_dose, counts_per_pixel, expected_counts

    if kind not in KINDS:
        raise EmcsError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "sim":
        raise EmcsError("kind 'sim' is produced by emcs.simulate.fluorescence.write_sim_data, not emcs.simulate.movie")
    if dose is not None and counts is not None:
        raise EmcsError("give either a dose (e/Å²) or counts per pixel, not both")
    frames, size = _check_size(frames, size)
    rng = np.random.default_rng(seed)
    if kind in PROCEDURAL_KINDS:
        from emcs.simulate.procedural import procedural_movie

        known = {"pixel_size", "speed", "rotation", "deform"}
        _reject_unknown(kind, options, known)
        clean, pixel_size, meta = procedural_movie(kind, rng, frames, size, **options)
    elif kind.startswith("hrtem"):
        from emcs.simulate.hrtem import hrtem_movie

        _reject_unknown(kind, options, _parameters(hrtem_movie))
        clean, pixel_size, meta = hrtem_movie(kind, rng, frames, size, progress=progress, **options)
    else:
        from emcs.simulate.stem import haadf_movie

        _reject_unknown(kind, options, _parameters(haadf_movie))
        clean, pixel_size, meta = haadf_movie(kind, rng, frames, size, **options)
    meta = {"kind": kind, "frames": frames, "size": list(size), "seed": int(seed),
            "pixel_size_A": float(pixel_size), "rng": "numpy PCG64 default_rng(seed)", **meta}
    noisy = None
    if dose is not None or counts is not None:
        for name, value in (("dose", dose), ("counts", counts), ("readout noise", readout_noise),
                            ("mtf", mtf_sigma)):
            if value is not None and (not np.isfinite(value) or value < 0):
                raise EmcsError(f"{name} must be a non-negative number, got {value}")
        n = counts if counts is not None else counts_per_pixel(dose, pixel_size)
        if not n > 0:
            raise EmcsError("the dose must be positive")
        noise_rng = np.random.default_rng([int(seed), 1])
        noisy = apply_dose(clean, n, noise_rng, readout_noise=readout_noise, mtf_sigma=mtf_sigma, dtype=dtype)
        clean = expected_counts(clean, n, mtf_sigma)
        meta.update({"dose_e_per_A2": None if dose is None else float(dose), "counts_per_pixel": float(n),
                     "readout_noise": float(readout_noise), "mtf_sigma_px": float(mtf_sigma),
                     "camera_dtype": str(noisy.dtype)})
    return SimResult(noisy=noisy, clean=clean.astype(np.float32, copy=False), pixel_size=float(pixel_size),
                     meta=meta)


def _parameters(func) -> set:
    import inspect

    names = list(inspect.signature(func).parameters)
    return set(names[4:]) - {"progress", "order", "profile"}


def _reject_unknown(kind: str, options: dict, known: set) -> None:
    extra = sorted(set(options) - known)
    if extra:
        raise EmcsError(f"kind {kind!r} does not take option(s) {', '.join(extra)}")


def sample_movie(
    rng: np.random.Generator,
    frames: int,
    size: tuple[int, int],
    kinds=None,
) -> np.ndarray:
    """A fresh clean training movie (T, H, W) float32 in [0, 1] of a random kind.

    Fast (a few ms per 128×128 frame). Physical kinds ("hrtem-particle",
    "hrtem-sintering") are composed from cached abTEM exit waves (see
    :func:`build_cache`); when the cache is missing they are replaced by
    procedural kinds. HAADF kinds use the incoherent model (no cache needed).

    Parameters
    ----------
    rng : numpy.random.Generator
    frames : int
    size : (int, int)
    kinds : sequence of str, optional
        Kinds to draw from (default: all but "sim").
    """
    from emcs.simulate import fast

    return fast.sample_movie(rng, frames, size, kinds)


def sample_stem(rng: np.random.Generator, size: int | tuple[int, int]) -> np.ndarray:
    """A fresh clean HAADF-STEM-like image (H, W) float32 in [0, 1].

    ``size`` is (H, W), or one int for a square image.

    Incoherent Z^1.7 model of crystals (grain boundaries, defects) or Au
    particles on amorphous carbon, convolved with a probe intensity (abTEM's
    when the cache holds it, else the same formula in numpy), with varied
    pixel size, probe and background. A few ms at 256×256.
    """
    from emcs.simulate.stem import sample_stem as _sample

    if not isinstance(size, (tuple, list)):
        size = (int(size), int(size))
    return _sample(rng, tuple(size))


def build_cache(n: int = 16, seed: int = 0, path=None, progress=None) -> str:
    """Precompute abTEM exit waves and probe profiles for the fast samplers.

    Parameters
    ----------
    n : int
        Number of particle tilt series (each 6 exit waves of 256×256); two
        sintering series of 8 stages are added.
    seed : int
    path : str, optional
        Cache folder (default :func:`cache_dir`: ``$EMCS_CACHE`` or ``~/.cache/emcs/sim``).
    progress : callable, optional
        Called with (done, total) after each exit wave.

    Returns
    -------
    str
        The cache folder.
    """
    from emcs.simulate.cachebuild import build_cache as _build

    return _build(n=n, seed=seed, path=path, progress=progress)
