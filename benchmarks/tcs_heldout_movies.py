"""Movies and cases of the held-out TCS quality table (``bench_tcs_heldout.py``).

The constants say which movies and cases make each table; :func:`make_movie` builds (and caches)
one movie from the real images in ``shared/data``, abTEM exit waves or the procedural ``cells``
kind. Nothing here is tuned on; ``bench_tcs_heldout.py`` describes the protocol.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("EMCS_SHARED_DATA", "/work/shared/data"))
SEED_BASE = 17_000_000
FRAMES = 30
CODECS = ("jpeg", "jpeg2000", "jpegxl")
BASELINES = ("gap-tv",) + CODECS
KIND_INDEX = {"stem": 0, "atomseg": 1, "sstem": 2, "hrtem": 3, "cells": 4}
#: (kind, movie index, dose in mean counts/pixel)
MOVIES = (
    ("stem", 0, 5), ("stem", 1, 15), ("stem", 2, 50),
    ("atomseg", 0, 5), ("atomseg", 1, 15), ("atomseg", 2, 50),
    ("sstem", 0, 5), ("sstem", 1, 15), ("sstem", 2, 50),
    ("hrtem", 0, 5), ("hrtem", 1, 5),
    ("cells", 0, 15), ("cells", 1, 50),
)
REAL_KINDS = ("stem", "atomseg", "sstem")
#: diagnostic: the real-image movies with their scenes smoothed (Gaussian, 1 px) first, which
#: takes out most of the originals' own pixel noise (part of the "clean" truth otherwise)
SMOOTHED = tuple((f"{k}-smoothed", m, d) for k, m, d in MOVIES if k in REAL_KINDS)
#: near-static row (defined before any score of it was taken): the real-image movies with a
#: drift of at most 0.05 px/frame and no rotation; the same images, crops, doses, gain drift and
#: local change (a growing blob or walking spots) as the main table's movies
STATIC = tuple((f"{k}-static", m, d) for k, m, d in MOVIES if k in REAL_KINDS)
#: kind variant -> ((drift lo, hi) px/frame, (rotation lo, hi) rad/frame) of :func:`real_movie`
MOTION = {"": ((0.2, 0.8), (0.001, 0.004)), "smoothed": ((0.2, 0.8), (0.001, 0.004)),
          "static": ((0.0, 0.05), (0.0, 0.0))}
#: every other movie (all kinds and doses): the movies of the smaller tables (CPU time)
SUBSET = MOVIES[::2]
#: table -> (B values, quantize steps, densities, mask kinds, movies)
TABLES = {
    "main": ((10, 20, 30), (0, 1, 2, 3), (0.5,), ("generated",), MOVIES),
    "lowB": ((4, 8), (0, 1, 2, 3), (0.5,), ("generated",), SUBSET),
    "density": ((10,), (0, 1), (0.2, 0.3, 0.5, 0.7, 0.8), ("generated",), SUBSET),
    "masks": ((10,), (0, 1), (0.5,), ("xor", "blocks4", "rows", "shifted"), SUBSET),
    "smoothed": ((10, 20, 30), (0,), (0.5,), ("generated",), SMOOTHED),
    "static": ((10, 20, 30), (0, 1, 2, 3), (0.5,), ("generated",), STATIC),
}
HELDOUT_MASKS = ("xor", "blocks4")
#: method -> ``static_blend`` of ``emcs decode`` (the auto choice): ``blend`` the still image only
#: (session 10's first default), ``drift`` also the drifting still image (:mod:`emcs.tcs.drift`;
#: the default since)
BLENDS = {"blend": "static", "drift": "on"}


# --------------------------------------------------------------------------- movies
def movie_seed(kind: str, m: int) -> int:
    return SEED_BASE + 1000 * KIND_INDEX[kind.split("-")[0]] + m


def source_image(kind: str, m: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A real image (float, any range) and its name: movie ``m`` of ``kind``."""
    import tifffile
    from PIL import Image

    if kind == "stem":
        path = DATA / "stem-partial-scan" / f"truth-{m % 5 + 1}.tif"
        return tifffile.imread(path).astype(np.float32), path.name
    if kind == "atomseg":
        path = sorted((DATA / "atomsegnet-stem").glob("*.png"))[m % 4]
        return np.asarray(Image.open(path).convert("L"), dtype=np.float32), path.name
    stack = tifffile.imread(DATA / "isbi2012-sstem" / "sstem_30x512x512_uint8.tif")
    k = int(rng.integers(len(stack)))
    return stack[k].astype(np.float32), f"sstem_30x512x512_uint8.tif[{k}]"


def local_change(rng: np.random.Generator, m: int, T: int, size: int) -> np.ndarray:
    """(T, size, size) additive change in units of the scene's range: a growing or shrinking
    blob (even ``m``) or a cluster of spots walking across the frame (odd ``m``)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    sign = rng.choice([-1.0, 1.0])
    out = np.zeros((T, size, size), np.float32)
    if m % 2 == 0:
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        r0, r1 = rng.uniform(2, 6), rng.uniform(10, 20)
        if rng.random() < 0.5:
            r0, r1 = r1, r0
        for t in range(T):
            r = r0 + (r1 - r0) * t / max(T - 1, 1)
            d = np.hypot(yy - cy, xx - cx)
            out[t] = sign * 0.35 / (1 + np.exp((d - r) / 1.2))
        return out
    n = int(rng.integers(3, 7))
    offsets = rng.normal(0, 3.0, (n, 2))
    start = rng.uniform(0.25, 0.75, 2) * size
    steps = rng.normal(0, 1.0, (T, 2)) + rng.uniform(-1.2, 1.2, 2)
    path = start + np.cumsum(steps, axis=0)
    for t in range(T):
        for oy, ox in offsets:
            d2 = (yy - path[t, 0] - oy) ** 2 + (xx - path[t, 1] - ox) ** 2
            out[t] += sign * 0.4 * np.exp(-d2 / (2 * 1.8**2))
    return out


def real_movie(kind: str, m: int, size: int, rng: np.random.Generator,
               image: tuple[np.ndarray, str] | None = None, motion=None) -> tuple[np.ndarray, str]:
    """A clean (FRAMES, size, size) movie in [0, 1] animated from a real image (its scene
    smoothed first for a ``-smoothed`` kind). ``image``: (image, name) instead of
    :func:`source_image`; ``motion``: ((drift lo, hi), (rotation lo, hi)) instead of the kind
    variant's :data:`MOTION`."""
    from scipy.ndimage import gaussian_filter

    from emcs.simulate.motion import random_motion, warp_movie
    from emcs.simulate.render import normalize

    base, _, variant = kind.partition("-")
    image, name = source_image(base, m, rng) if image is None else image
    margin = size // 2 + 24
    r0 = int(rng.integers(0, image.shape[0] - 2 * margin))
    c0 = int(rng.integers(0, image.shape[1] - 2 * margin))
    scene = normalize(image[r0:r0 + 2 * margin, c0:c0 + 2 * margin], 0.5, 99.5)
    if variant == "smoothed":
        scene = gaussian_filter(scene, 1.0)
        name += " smoothed"
    (s0, s1), (a0, a1) = MOTION[variant] if motion is None else motion
    motion = random_motion(rng, FRAMES, (size, size), scene.shape, speed=rng.uniform(s0, s1),
                           rotation=rng.uniform(a0, a1))
    frames = warp_movie(scene, motion, order=3)
    frames += local_change(rng, m, FRAMES, size)
    gain = 1 + rng.uniform(-0.15, 0.15) * np.linspace(0, 1, FRAMES) \
        + 0.04 * np.sin(np.linspace(0, 2 * np.pi, FRAMES) + rng.uniform(0, 2 * np.pi))
    frames = np.clip(frames, 0, None) * gain[:, None, None].astype(np.float32)
    frames = 0.05 + 0.95 * frames / frames.max()  # a small background, as on a detector
    return frames.astype(np.float32), f"{name} crop ({r0}, {c0})"


def make_movie(kind: str, m: int, dose: float, size: int, cache: Path) -> dict:
    """Clean frames, camera counts and scale (counts -> clean units) of one movie (cached)."""
    from emcs.simulate import sample_movie
    from emcs.simulate.detector import apply_dose

    path = cache / f"movie-{kind}-{m}-{size}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files} | {"source": str(z["source"])}
    rng = np.random.default_rng(movie_seed(kind, m))
    if kind.split("-")[0] in REAL_KINDS:
        clean, source = real_movie(kind, m, size, rng)
    else:
        sim_kind = {"hrtem": ("hrtem-particle", "hrtem-sintering")[m % 2], "cells": "cells"}[kind]
        clean = np.asarray(sample_movie(rng, FRAMES, (size, size), (sim_kind,)), np.float32)
        source = f"emcs.simulate {sim_kind}"
    counts = apply_dose(clean, dose, rng=rng)
    movie = {"clean": clean, "counts": counts, "scale": np.float64(clean.mean() / dose),
             "source": source}
    np.savez(path, **movie)
    return movie


# --------------------------------------------------------------------------- cases
def cases(tables: list[str], lossless: bool = False) -> list[dict]:
    """The cases of ``tables``; ``lossless``: their Q = 0 cases only, packed losslessly
    (``pack`` "predictive", key ``q0p``) instead of the plain container (``pack`` None: the
    encoder's default, plain for Q = 0, predictive with Q > 0)."""
    out, seen = [], set()
    for table in tables:
        Bs, qs, densities, masks, movies = TABLES[table]
        for B in Bs:
            for q in qs[:1] if lossless else qs:
                for d in densities:
                    for mask in masks:
                        for kind, m, dose in movies:
                            key = f"B{B}-d{d}-{mask}-q{q}{'p' if lossless else ''}-{kind}{m}"
                            if key not in seen:
                                seen.add(key)
                                out.append(dict(key=key, B=B, q=q, density=d, mask=mask,
                                                kind=kind, m=m, dose=dose,
                                                pack="predictive" if lossless else None))
    return out


def plain_key(key: str) -> str:
    """The key of a losslessly packed case's plain twin."""
    return key.replace("-q0p-", "-q0-")
