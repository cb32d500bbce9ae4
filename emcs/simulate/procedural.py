"""Procedural (non-physical, fast) scenes: fibres, crystal lattices, cells.

Each scene function draws one large image in [0, 1]; :func:`procedural_movie`
turns it into a movie with smooth drift, rotation and slow elastic
deformation (see :mod:`emcs.simulate.motion`).

- ``fibres``: one to three carbon fibres crossing a large field of view
  (bright-field contrast ``exp(-mu * projected thickness)`` on a carbon film),
  bending slowly as under in-situ load (the TCS-DL paper's carbon-fibre case).
- ``lattice``: atomic columns of one to four grains (square, hexagonal,
  rectangular or centred lattices with one or two column types), with grain
  boundaries, vacancies, substitutions and edge dislocations, blurred by a
  Gaussian point-spread function; bright or dark atoms.
- ``cells``: serial-section-TEM-like tissue: irregular cells with dark
  membranes, textured cytoplasm, mitochondria and vesicles.

Examples
--------
>>> import numpy as np
>>> from emcs.simulate.procedural import procedural_movie
>>> clean, px, meta = procedural_movie("lattice", np.random.default_rng(0), 3, (64, 64))
>>> clean.shape, clean.dtype
((3, 64, 64), dtype('float32'))
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from emcs.simulate.motion import random_motion, warp_movie
from emcs.simulate.render import convolve_fft, gaussian_psf_fft, normalize, smooth_field, splat

__all__ = ["PROCEDURAL_KINDS", "DEFAULTS", "fibres_scene", "lattice_scene", "cells_scene", "procedural_movie"]

PROCEDURAL_KINDS = ("fibres", "lattice", "cells")

#: documented defaults per kind: pixel size (Å), drift (pixels/frame),
#: rotation (rad/frame), peak elastic deformation over the movie (fraction of the frame)
DEFAULTS = {
    "fibres": {"pixel_size": 20.0, "speed": 0.3, "rotation": 0.001, "deform": 0.03},
    "lattice": {"pixel_size": 0.3, "speed": 0.3, "rotation": 0.0015, "deform": 0.004},
    "cells": {"pixel_size": 40.0, "speed": 0.4, "rotation": 0.0015, "deform": 0.02},
}


# --------------------------------------------------------------------------- lattice
def _lattice_vectors(rng: np.random.Generator, a: float):
    kind = rng.choice(["square", "hexagonal", "rectangular", "centred"])
    if kind == "square":
        a1, a2 = np.array([a, 0.0]), np.array([0.0, a])
        basis = [np.zeros(2)]
    elif kind == "hexagonal":
        a1, a2 = np.array([a, 0.0]), np.array([a / 2, a * math.sqrt(3) / 2])
        basis = [np.zeros(2)]
    elif kind == "rectangular":
        a1, a2 = np.array([a, 0.0]), np.array([0.0, a * rng.uniform(1.2, 1.6)])
        basis = [np.zeros(2)]
    else:  # centred rectangular, e.g. FCC [110]
        a1, a2 = np.array([a, 0.0]), np.array([0.0, a * math.sqrt(2)])
        basis = [np.zeros(2), (a1 + a2) / 2]
    if rng.random() < 0.5 and len(basis) == 1:
        basis.append((a1 + a2) / 2 if kind != "hexagonal" else (a1 + a2) / 3)
    weights = [1.0] + [rng.uniform(0.25, 1.0) for _ in basis[1:]]
    return str(kind), a1, a2, basis, weights


def _edge_dislocation(points: np.ndarray, core: np.ndarray, b: float, angle: float, nu: float = 0.3):
    """Displacements of an edge dislocation (isotropic elasticity), Burgers vector ``b``."""
    c, s = math.cos(angle), math.sin(angle)
    d = points - core
    x = c * d[:, 1] + s * d[:, 0]
    y = -s * d[:, 1] + c * d[:, 0]
    r2 = np.maximum(x * x + y * y, 1e-6)
    th = np.arctan2(y, x)
    ux = b / (2 * np.pi) * (th + x * y / (2 * (1 - nu) * r2))
    uy = -b / (2 * np.pi) * ((1 - 2 * nu) / (4 * (1 - nu)) * np.log(r2) + (x * x - y * y) / (4 * (1 - nu) * r2))
    # back to (row, col)
    return np.stack([s * ux + c * uy, c * ux - s * uy], axis=1)


def grain_columns(pts: np.ndarray, wts: np.ndarray, shape, margin: float, tree=None, grain: int = 0):
    """Keep the columns inside the field (plus ``margin`` pixels) that belong to ``grain``.

    ``tree`` is a ``cKDTree`` of the grain seeds (None for a single grain): a
    column belongs to the grain whose seed is nearest (a Voronoi polycrystal).
    Returns the kept ``(pts, wts)``.
    """
    inside = ((pts[:, 0] > -margin) & (pts[:, 0] < shape[0] + margin)
              & (pts[:, 1] > -margin) & (pts[:, 1] < shape[1] + margin))
    pts, wts = pts[inside], wts[inside]
    if tree is not None:
        own = tree.query(pts)[1] == grain
        pts, wts = pts[own], wts[own]
    return pts, wts


def lattice_scene(rng: np.random.Generator, shape: tuple[int, int], a_px: float | None = None):
    """Atomic-column image of a polycrystal with defects, in [0, 1].

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (int, int)
        Scene (H, W).
    a_px : float, optional
        Lattice constant in pixels (default: random 7-14).

    Returns
    -------
    image : ndarray (H, W) float32
    info : dict
        grains, lattice types, defects.
    """
    h, w = shape
    a_px = float(a_px) if a_px else float(rng.uniform(7.0, 14.0))
    n_grains = int(rng.integers(1, 5))
    seeds = rng.uniform(0, 1, (n_grains, 2)) * [h, w]
    tree = cKDTree(seeds)
    all_pts, all_w, lattices = [], [], []
    diag = math.hypot(h, w)
    for g in range(n_grains):
        kind, a1, a2, basis, weights = _lattice_vectors(rng, a_px)
        lattices.append(kind)
        n = int(diag / min(np.linalg.norm(a1), abs(a2[1]) or 1) / 1.0) + 3
        i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
        cells = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2
        pts = np.concatenate([cells + b for b in basis])
        wts = np.concatenate([np.full(len(cells), wt) for wt in weights])
        th = rng.uniform(0, np.pi)
        rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        pts = pts @ rot.T + np.array([h / 2, w / 2]) + rng.uniform(-a_px, a_px, 2)
        pts, wts = grain_columns(pts, wts, (h, w), 3, tree if n_grains > 1 else None, g)
        all_pts.append(pts)
        all_w.append(wts)
    pts = np.concatenate(all_pts)
    wts = np.concatenate(all_w)
    n_disl = int(rng.integers(0, 3))
    for _ in range(n_disl):
        core = rng.uniform(0.2, 0.8, 2) * [h, w]
        pts = pts + _edge_dislocation(pts, core, a_px, rng.uniform(0, 2 * np.pi))
    vac = rng.uniform(0.0, 0.04)
    keep = rng.random(len(pts)) >= vac
    pts, wts = pts[keep], wts[keep]
    sub = rng.random(len(wts)) < rng.uniform(0.0, 0.03)
    wts = np.where(sub, wts * rng.uniform(0.3, 1.8), wts)
    wts = wts * (1 + 0.05 * rng.standard_normal(len(wts)))
    img = splat(pts, wts, (h, w))
    sigma = a_px * rng.uniform(0.12, 0.2)
    img = convolve_fft(img, gaussian_psf_fft((h, w), sigma))
    img = img / (img.max() + 1e-12)
    # thickness / background variation and a little amorphous texture
    img = img * (1 + 0.15 * smooth_field(rng, (h, w), max(h, w) / 4))
    img += 0.04 * smooth_field(rng, (h, w), 1.5)
    dark = bool(rng.random() < 0.35)
    if dark:
        img = -img
    info = {"grains": n_grains, "lattices": lattices, "a_px": round(a_px, 3), "dislocations": n_disl,
            "vacancy_fraction": round(float(vac), 4), "dark_atoms": dark}
    return normalize(img), info


# --------------------------------------------------------------------------- fibres
def fibres_scene(rng: np.random.Generator, shape: tuple[int, int], n_fibres: int | None = None):
    """Bright-field image of carbon fibres on a carbon film, in [0, 1]."""
    h, w = shape
    n = int(n_fibres) if n_fibres else int(rng.integers(1, 4))
    thickness = np.zeros((h, w), np.float32)
    side = min(h, w)
    radii = []
    for _ in range(n):
        r = rng.uniform(0.05, 0.13) * side
        radii.append(float(r))
        ang = rng.uniform(0, np.pi)
        p0 = np.array([h / 2, w / 2]) + rng.uniform(-0.25, 0.25, 2) * side
        length = math.hypot(h, w) * 1.2
        s = np.arange(-length / 2, length / 2, 0.5)
        amp = rng.uniform(0.0, 0.08) * side
        lam = rng.uniform(0.6, 2.0) * side
        off = amp * np.sin(2 * np.pi * s / lam + rng.uniform(0, 2 * np.pi)) + rng.uniform(-0.3, 0.3) * s**2 / side
        u = np.array([math.sin(ang), math.cos(ang)])
        v = np.array([u[1], -u[0]])
        pts = p0 + s[:, None] * u + off[:, None] * v
        rr = np.rint(pts[:, 0]).astype(int)
        cc = np.rint(pts[:, 1]).astype(int)
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        mask = np.ones((h, w), bool)
        mask[rr[ok], cc[ok]] = False
        if mask.all():
            continue
        d = ndimage.distance_transform_edt(mask).astype(np.float32)
        d = d + 0.04 * r * smooth_field(rng, (h, w), r / 2)  # rough surface
        t = 2 * np.sqrt(np.clip(r * r - d * d, 0, None))
        # longitudinal striations of the fibre surface
        t *= 1 + 0.05 * smooth_field(rng, (h, w), 2.0)
        thickness += t / (2 * r)
    mu = rng.uniform(0.8, 1.8)
    film = 1 + 0.04 * smooth_field(rng, (h, w), side / 8) + 0.03 * smooth_field(rng, (h, w), 1.2)
    img = film * np.exp(-mu * thickness)
    # weak Fresnel fringe at the edges (underfocus): bright halo outside
    img = img - 0.03 * ndimage.gaussian_laplace(thickness, 1.5)
    lo, hi = float(np.exp(-mu * max(thickness.max(), 1.0)) * 0.8), float(img.max())
    out = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
    return out, {"fibres": n, "radii_px": [round(r, 2) for r in radii], "mu": round(float(mu), 3)}


# --------------------------------------------------------------------------- cells
def cells_scene(rng: np.random.Generator, shape: tuple[int, int], cell_px: float | None = None):
    """Serial-section-TEM-like tissue (membranes dark, cytoplasm textured), in [0, 1]."""
    h, w = shape
    cell_px = float(cell_px) if cell_px else float(rng.uniform(0.12, 0.3) * min(h, w))
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    n = max(3, int(h * w / cell_px**2 * 1.3))
    seeds = rng.uniform(0, 1, (n, 2)) * [h2, w2]
    yy, xx = np.meshgrid(np.arange(h2, dtype=np.float32), np.arange(w2, dtype=np.float32), indexing="ij")
    amp = cell_px * 0.12
    ys = yy + amp * smooth_field(rng, (h2, w2), cell_px / 6)
    xs = xx + amp * smooth_field(rng, (h2, w2), cell_px / 6)
    labels = cKDTree(seeds).query(np.stack([ys.ravel(), xs.ravel()], 1))[1].reshape(h2, w2)
    edge = np.zeros((h2, w2), np.float32)
    edge[:-1, :] += labels[:-1, :] != labels[1:, :]
    edge[:, :-1] += labels[:, :-1] != labels[:, 1:]
    edge = np.minimum(edge, 1)
    membrane = ndimage.zoom(edge, (h / h2, w / w2), order=1)[:h, :w]
    membrane = ndimage.gaussian_filter(membrane, rng.uniform(0.6, 1.2))
    membrane = np.clip(membrane / (membrane.max() + 1e-6) * 1.6, 0, 1)
    tone = rng.uniform(0.55, 0.85, n).astype(np.float32)[labels]
    tone = ndimage.zoom(tone, (h / h2, w / w2), order=0)[:h, :w]
    tone = ndimage.gaussian_filter(tone, 2.0)
    texture = 0.07 * smooth_field(rng, (h, w), 1.2) + 0.05 * smooth_field(rng, (h, w), cell_px / 10)
    img = tone + texture
    # organelles
    yy, xx = np.ogrid[:h, :w]
    n_org = int(rng.poisson(n * 0.6))
    for _ in range(n_org):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if rng.random() < 0.5:  # mitochondrion: dark ellipse with cristae
            a, b = rng.uniform(0.12, 0.3) * cell_px, rng.uniform(0.05, 0.1) * cell_px
            th = rng.uniform(0, np.pi)
            y0, y1 = int(max(cy - a - 2, 0)), int(min(cy + a + 3, h))
            x0, x1 = int(max(cx - a - 2, 0)), int(min(cx + a + 3, w))
            if y1 <= y0 or x1 <= x0:
                continue
            dy, dx = yy[y0:y1] - cy, xx[:, x0:x1] - cx
            u = dy * math.cos(th) + dx * math.sin(th)
            v = -dy * math.sin(th) + dx * math.cos(th)
            rho = (u / a) ** 2 + (v / b) ** 2
            inside = np.clip(1.5 * (1 - rho), 0, 1)
            cristae = 0.5 + 0.5 * np.cos(2 * np.pi * u / max(b * 0.8, 1.5))
            ring = np.exp(-(((np.sqrt(rho) - 1) * b / 1.0) ** 2))
            img[y0:y1, x0:x1] -= inside * (0.2 + 0.15 * cristae) + 0.25 * ring
        else:  # vesicle: dark ring
            r = rng.uniform(0.02, 0.06) * cell_px + 1.5
            y0, y1 = int(max(cy - r - 3, 0)), int(min(cy + r + 4, h))
            x0, x1 = int(max(cx - r - 3, 0)), int(min(cx + r + 4, w))
            if y1 <= y0 or x1 <= x0:
                continue
            dist = np.sqrt((yy[y0:y1] - cy) ** 2 + (xx[:, x0:x1] - cx) ** 2)
            img[y0:y1, x0:x1] -= 0.35 * np.exp(-(((dist - r) / 0.9) ** 2))
    img = img * (1 - 0.75 * membrane)
    return normalize(img, 0.2, 99.9), {"cells": n, "cell_px": round(cell_px, 2), "organelles": n_org}


SCENES = {"fibres": fibres_scene, "lattice": lattice_scene, "cells": cells_scene}


def procedural_movie(
    kind: str,
    rng: np.random.Generator,
    frames: int,
    size: tuple[int, int],
    pixel_size: float | None = None,
    speed: float | None = None,
    rotation: float | None = None,
    deform: float | None = None,
):
    """A clean movie of a procedural kind, values in [0, 1].

    Parameters
    ----------
    kind : {"fibres", "lattice", "cells"}
    rng : numpy.random.Generator
    frames : int
    size : (int, int)
        Frame (H, W).
    pixel_size : float, optional
        Å per pixel recorded in the metadata (see :data:`DEFAULTS`).
    speed, rotation, deform : float, optional
        Drift (pixels/frame), rotation (rad/frame), peak elastic deformation
        over the movie (fraction of the frame size).

    Returns
    -------
    clean : ndarray (T, H, W) float32 in [0, 1]
    pixel_size : float
    meta : dict
    """
    d = DEFAULTS[kind]
    speed = d["speed"] if speed is None else float(speed)
    rotation = d["rotation"] if rotation is None else float(rotation)
    deform = d["deform"] if deform is None else float(deform)
    pixel_size = d["pixel_size"] if pixel_size is None else float(pixel_size)
    h, w = size
    deform_px = deform * min(h, w)
    pad = int(speed * frames * 1.3 + 3 * deform_px + 8)
    side = int(math.ceil(math.hypot(h, w))) + 2 * pad
    scene, info = SCENES[kind](rng, (side, side))
    motion = random_motion(
        rng, frames, (h, w), (side, side), speed=speed, rotation=rotation, deform=deform_px, deform_scale=0.3
    )
    clean = np.clip(warp_movie(scene, motion, order=1, mode="reflect"), 0, 1)
    meta = {"kind": kind, "scene": info, "speed_px_per_frame": speed, "rotation_rad_per_frame": rotation,
            "deform_fraction": deform}
    return clean, pixel_size, meta
