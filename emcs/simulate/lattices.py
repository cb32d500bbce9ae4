"""Procedural atomic-resolution HAADF-STEM scenes with scan artefacts (DLSS training data).

A fast, physically motivated stand-in for multislice simulation: in the incoherent
Z-contrast approximation a HAADF image is the projected column weights (about
``Z^1.7`` times the thickness) convolved with the probe intensity (Pennycook &
Jesson, Ultramicroscopy 37:14, 1991). Columns sit on random 2-D Bravais lattices
(square, rectangular, centred, hexagonal, honeycomb, oblique) with a random
1-4 column basis (dumbbells too), rotation, homogeneous and smooth strain, vacancies
and column-to-column weight noise. Scenes (:func:`lattice_scene`):

- ``particles``: faceted or round nanoparticles (sometimes twinned, projected
  thickness falling to the edge) on an amorphous support film with vacuum beyond its
  edge, or partly in vacuum;
- ``crystal``: an extended crystal of one to three grains (grain boundaries), a
  thickness gradient, sometimes a specimen edge (wedge into vacuum);
- ``monolayer``: a 2-D crystal (hexagonal / honeycomb, two or three species) with
  pores, substitutions, hydrocarbon contamination and sometimes a rotated second
  layer (moire);
- ``clusters``: many small particles on a support at low magnification.

Nearest column spacings are drawn log-uniformly in 3-32 pixels (lattice periods ~3-45
px), the probe is a Gaussian core (0.12-0.3 column spacings) with a wide tail, and
a diffuse background follows the projected mass. :func:`scan_record` then records
the image like a real scan: the scene as seen by a drifting, jittering, flyback-
distorted beam is the target; the recorded scan adds Poisson counts (3-1000 per pixel
at the mean), Gaussian read noise, per-line offsets and gain (flyback streaks), partial
streaks and detector lag along the fast axis.

None of it reuses the held-out benchmark's crystals or scan model
(``benchmarks/dlss_heldout.py``): cells are random, not the cells of real
materials, and every parameter is drawn from a continuous range.

>>> import numpy as np
>>> noisy, target = lattice_pair(np.random.default_rng(0), 64)
>>> noisy.shape, target.shape, noisy.dtype
((64, 64), (64, 64), dtype('float32'))
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from emcs.simulate.detector import camera_counts
from emcs.simulate.render import gaussian_psf_fft, smooth_field, splat

__all__ = ["SCENES", "SPACING", "lattice_columns", "lattice_pair", "lattice_scene", "random_cell", "scan_record"]

#: scene kinds of :func:`lattice_scene` and how often each is drawn
SCENES = {"particles": 0.35, "crystal": 0.25, "monolayer": 0.25, "clusters": 0.15}
#: range of the nearest column spacing (pixels)
SPACING = (3.0, 32.0)
S3 = math.sqrt(3.0)


# --------------------------------------------------------------------------- columns
def random_cell(rng: np.random.Generator, kinds=None) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """A random projected cell: lattice vectors (2, 2), rows a1, a2, and a basis ``[(u, v, weight)]``.

    Scaled so that the nearest column spacing is 1.
    """
    kind = str(rng.choice(kinds or ["square", "rectangular", "centred", "hexagonal", "honeycomb", "oblique"]))
    b = rng.uniform(1.1, 1.9)
    vectors = {
        "square": ((1, 0), (0, 1)), "rectangular": ((1, 0), (0, b)), "centred": ((1, 0), (0, b)),
        "hexagonal": ((1, 0), (0.5, S3 / 2)), "honeycomb": ((1, 0), (0.5, S3 / 2)),
    }
    if kind == "oblique":
        g = rng.uniform(math.radians(60), math.radians(120))
        c = rng.uniform(0.8, 1.5)
        vectors["oblique"] = ((1, 0), (c * math.cos(g), c * math.sin(g)))
    cell = np.array(vectors[kind], float)
    basis = [(0.0, 0.0, 1.0)]
    if kind == "centred":
        basis.append((0.5, 0.5, float(rng.uniform(0.1, 1.0))))
    if kind == "honeycomb":
        basis = [(1 / 3, 1 / 3, 1.0), (2 / 3, 2 / 3, float(rng.uniform(0.1, 1.0)))]
    if rng.random() < 0.3:  # dumbbell
        r, t = rng.uniform(0.12, 0.3), rng.uniform(0, 2 * math.pi)  # drawn in this order
        u, v = r * np.array([math.cos(t), math.sin(t)])
        basis.append((float(u), float(v), float(rng.uniform(0.3, 1.0))))
    for _ in range(int(rng.choice([0, 0, 1, 2]))):
        u, v = rng.uniform(0, 1, 2)
        basis.append((float(u), float(v), float(rng.uniform(0.05, 1.0))))
    pts = np.array([u * cell[0] + v * cell[1] for u, v, _ in basis])
    shifts = np.array([i * cell[0] + j * cell[1] for i in (-1, 0, 1) for j in (-1, 0, 1)])
    d = np.linalg.norm(pts[:, None, None] - pts[None, :, None] - shifts[None, None], axis=-1)
    nearest = float(d[d > 1e-6].min())
    if nearest < 0.25:  # basis atoms on top of each other: keep the primitive cell
        basis = basis[:1]
        nearest = 1.0
    return cell / nearest, basis


def lattice_columns(rng: np.random.Generator, cell: np.ndarray, basis, spacing: float, angle: float,
                    box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Column positions (N, 2) (row, col, pixels) and weights (N,) of one grain filling ``box``.

    ``box`` = (row0, col0, row1, col1); a homogeneous strain (up to 3 %), a random origin,
    vacancies and weight noise are drawn here.
    """
    c, s = math.cos(angle), math.sin(angle)
    strain = np.eye(2) + rng.uniform(-0.03, 0.03, (2, 2))
    vec = spacing * cell @ np.array([[c, s], [-s, c]]) @ strain
    r0, c0, r1, c1 = box
    centre = np.array([(r0 + r1) / 2, (c0 + c1) / 2]) + rng.uniform(-1, 1, 2) * spacing
    area = abs(float(np.linalg.det(vec)))
    n = int(math.ceil(math.hypot(r1 - r0, c1 - c0) * max(np.linalg.norm(vec, axis=1)) / area / 2)) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    origins = centre + i.reshape(-1, 1) * vec[0] + j.reshape(-1, 1) * vec[1]
    pts = np.concatenate([origins + u * vec[0] + v * vec[1] for u, v, _ in basis])
    wts = np.concatenate([np.full(len(origins), w) for _, _, w in basis])
    keep = (pts[:, 0] >= r0) & (pts[:, 0] < r1) & (pts[:, 1] >= c0) & (pts[:, 1] < c1)
    pts, wts = pts[keep], wts[keep]
    wts = wts * (1 + rng.uniform(0, 0.15) * rng.standard_normal(len(wts)))
    vacant = rng.random(len(wts)) < rng.uniform(0, 0.04)
    wts[vacant] *= rng.uniform(0, 0.6, int(vacant.sum()))
    return pts, np.clip(wts, 0, None)


def _at(field: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``field`` at the nearest pixel of each point (points clipped to the grid)."""
    r = np.clip(np.rint(pts[:, 0]).astype(int), 0, field.shape[0] - 1)
    c = np.clip(np.rint(pts[:, 1]).astype(int), 0, field.shape[1] - 1)
    return field[r, c]


def _warp(rng: np.random.Generator, pts: np.ndarray, n: int, spacing: float) -> np.ndarray:
    """Smooth local strain / bending: displace points by a smooth field (up to 0.08 spacings)."""
    amp = rng.uniform(0, 0.08) * spacing
    corr = n / rng.uniform(1, 4)
    return pts + amp * np.stack([_at(smooth_field(rng, (n, n), corr), pts) for _ in range(2)], 1)


def _grains(rng, n: int, spacing: float, box, count: int, cell=None, basis=None):
    """Columns of ``count`` grains (Voronoi regions, one lattice, each its own orientation) in ``box``."""
    if cell is None:
        cell, basis = random_cell(rng)
    r0, c0, r1, c1 = box
    seeds = rng.uniform([r0, c0], [r1, c1], (count, 2))
    out_p, out_w = [], []
    base = rng.uniform(0, math.pi)
    for g in range(count):
        p, w = lattice_columns(rng, cell, basis, spacing, base + (g > 0) * rng.uniform(0.1, 1.0), box)
        if count > 1:
            d = np.linalg.norm(p[:, None] - seeds[None], axis=-1)
            keep = d.argmin(1) == g
            p, w = p[keep], w[keep]
        out_p.append(p)
        out_w.append(w)
    return _warp(rng, np.concatenate(out_p), n, spacing), np.concatenate(out_w)


def _shape_mask(rng: np.random.Generator, n: int, centre, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(inside mask, projected thickness in [0, 1]) of a faceted or round particle."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    if rng.random() < 0.6:  # faceted: intersection of half-planes
        k = int(rng.integers(5, 9))
        normals = np.sort(rng.uniform(0, 2 * math.pi, k))
        dist = np.max([(dy * math.sin(t) + dx * math.cos(t)) / (radius * rng.uniform(0.8, 1.1))
                       for t in normals], axis=0)
    else:
        e = rng.uniform(0.7, 1.0)
        t = rng.uniform(0, math.pi)
        u, v = dy * math.cos(t) + dx * math.sin(t), -dy * math.sin(t) + dx * math.cos(t)
        dist = np.hypot(u, v / e) / radius
    inside = dist < 1
    flat = rng.uniform(0, 1)
    thick = np.sqrt(np.clip(1 - dist**2, 0, 1)) * (1 - flat) + flat * inside
    return inside, thick


def _amorphous(rng, n: int, spacing: float, density: float, weight: float, mask=None):
    """Random light atoms (an amorphous film) at ``density`` per spacing^2, where ``mask`` is set."""
    count = int(n * n / spacing**2 * density)
    pts = rng.uniform(0, n, (count, 2))
    if mask is not None:
        pts = pts[_at(mask, pts) > rng.random(len(pts))]
    return pts, np.full(len(pts), weight) * rng.uniform(0.5, 1.5, len(pts))


def _support(rng, n: int, spacing: float):
    """An amorphous support film covering the field or ending at a wavy edge (vacuum beyond)."""
    mask = np.ones((n, n))
    if rng.random() < 0.5:
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
        t = rng.uniform(0, 2 * math.pi)
        d = (yy - n / 2) * math.cos(t) + (xx - n / 2) * math.sin(t) + rng.uniform(-0.4, 0.4) * n
        d += smooth_field(rng, (n, n), n / 6) * n * 0.05
        mask = 1 / (1 + np.exp(-np.clip(d / rng.uniform(1, 4), -50, 50)))
    return _amorphous(rng, n, spacing, rng.uniform(1, 6), rng.uniform(0.02, 0.12), mask)


def _particles(rng, n: int, spacing: float):
    sp, sw = _support(rng, n, spacing)
    pts, wts = [sp], [sw]
    for _ in range(int(rng.integers(1, 4))):
        radius = n * math.exp(rng.uniform(math.log(0.15), math.log(1.5)))
        centre = rng.uniform(-0.2, 1.2, 2) * n
        inside, thick = _shape_mask(rng, n, centre, radius)
        if not inside.any():
            continue
        twin = 2 if rng.random() < 0.3 else 1
        p, w = _grains(rng, n, spacing, (0, 0, n, n), twin)
        keep = _at(inside, p)
        p, w = p[keep], w[keep] * _at(thick, p[keep]) * rng.uniform(0.5, 1.0)
        pts.append(p)
        wts.append(w)
    return pts, wts


def _crystal(rng, n: int, spacing: float):
    p, w = _grains(rng, n, spacing, (0, 0, n, n), int(rng.choice([1, 1, 2, 3])))
    thick = 1 + rng.uniform(0, 0.5) * smooth_field(rng, (n, n), n / 3)
    if rng.random() < 0.35:  # specimen edge: a wedge into vacuum
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
        t = rng.uniform(0, 2 * math.pi)
        d = ((yy - n / 2) * math.cos(t) + (xx - n / 2) * math.sin(t)) / n + rng.uniform(-0.3, 0.3)
        thick = thick * np.clip(d * rng.uniform(2, 10), 0, 1)
    w = w * np.clip(_at(thick, p), 0, None)
    a, aw = _amorphous(rng, n, spacing, rng.uniform(0, 3), rng.uniform(0.02, 0.1))
    return [p, a], [w, aw]


def _monolayer(rng, n: int, spacing: float):
    cell, basis = random_cell(rng, ["hexagonal", "honeycomb", "honeycomb"])
    if rng.random() < 0.5 and len(basis) == 2:  # third species above the hollow site (MoS2-like)
        basis = [*basis, (0.0, 0.0, float(rng.uniform(0.05, 0.5)))]
    p, w = _grains(rng, n, spacing, (0, 0, n, n), int(rng.choice([1, 1, 2])), cell, basis)
    heavy = rng.random(len(w)) < rng.uniform(0, 0.02)  # substitutions
    w[heavy] *= rng.uniform(1.5, 4.0, int(heavy.sum()))
    pts, wts = [p], [w]
    if rng.random() < 0.3:  # a rotated second layer over part of the field: moire
        q, v = lattice_columns(rng, cell, basis, spacing * rng.uniform(0.97, 1.03), rng.uniform(0, math.pi),
                               (0, 0, n, n))
        region = smooth_field(rng, (n, n), n / 4) > rng.uniform(-1, 0.5)
        keep = _at(region, q)
        pts.append(q[keep])
        wts.append(v[keep])
    holes = smooth_field(rng, (n, n), n * rng.uniform(0.04, 0.15))
    pore = holes > np.quantile(holes, 1 - rng.uniform(0.02, 0.3)) if rng.random() < 0.8 else holes > 99
    for k, q in enumerate(pts):
        keep = ~_at(pore, q)
        pts[k], wts[k] = q[keep], wts[k][keep]
    dirt = smooth_field(rng, (n, n), n * rng.uniform(0.05, 0.2)) > rng.uniform(0.5, 2.5)
    a, aw = _amorphous(rng, n, spacing, rng.uniform(2, 8), rng.uniform(0.1, 0.6), dirt & ~pore)
    return [*pts, a], [*wts, aw]


def _clusters(rng, n: int, spacing: float):
    spacing = min(spacing, 8.0)
    sp, sw = _support(rng, n, spacing)
    pts, wts = [sp], [sw]
    for _ in range(int(rng.integers(3, 30))):
        radius = math.exp(rng.uniform(math.log(2.0), math.log(max(3.0, n / 5))))
        centre = rng.uniform(0, n, 2)
        box = (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius)
        cell, basis = random_cell(rng)
        p, w = lattice_columns(rng, cell, basis, spacing, rng.uniform(0, math.pi), box)
        r = np.linalg.norm(p - centre, axis=1) / radius
        keep = r < 1
        pts.append(p[keep])
        wts.append(w[keep] * np.sqrt(1 - r[keep] ** 2) * rng.uniform(0.5, 1.0))
    return pts, wts


_BUILDERS = {"particles": _particles, "crystal": _crystal, "monolayer": _monolayer, "clusters": _clusters}


def lattice_scene(rng: np.random.Generator, size: int, kind: str | None = None,
                  pad: int = 16) -> tuple[np.ndarray, dict]:
    """A clean HAADF-STEM scene on a ``(size + 2 pad)`` square canvas, and what it shows.

    Returns the canvas (float64, arbitrary units, the margin ``pad`` lets
    :func:`scan_record` distort without edges) and ``{"kind", "spacing_px"}``.
    """
    kind = kind or str(rng.choice(list(SCENES), p=list(SCENES.values())))
    n = size + 2 * pad
    spacing = math.exp(rng.uniform(*np.log(SPACING)))
    pts, wts = _BUILDERS[kind](rng, n, spacing)
    obj = splat(np.concatenate(pts), np.concatenate(wts), (n, n)).astype(np.float64)
    spec = np.fft.rfft2(obj)
    core = gaussian_psf_fft((n, n), spacing * rng.uniform(0.12, 0.3))
    tail = gaussian_psf_fft((n, n), spacing * rng.uniform(0.6, 2.0))
    t = rng.uniform(0, 0.3)
    img = np.fft.irfft2(spec * ((1 - t) * core + t * tail), s=(n, n))
    # diffuse background that follows the projected mass (thermal diffuse / multiple scattering)
    img += rng.uniform(0, 0.3) * np.fft.irfft2(spec * gaussian_psf_fft((n, n), spacing * rng.uniform(2, 6)),
                                               s=(n, n))
    return np.clip(img, 0, None), {"kind": kind, "spacing_px": round(spacing, 2)}


# --------------------------------------------------------------------------- the scan
def _distort(rng: np.random.Generator, canvas: np.ndarray, size: int, pad: int) -> np.ndarray:
    """The ``size`` square the beam visits: slow drift, line jitter, flyback bending, line glitches."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    drift = rng.uniform(-0.03, 0.03, 2) if rng.random() < 0.7 else np.zeros(2)
    jitter = rng.standard_normal(size) * rng.uniform(0, 0.5)
    jitter = ndimage.gaussian_filter1d(jitter, rng.uniform(0.3, 3.0)) if rng.random() < 0.5 else jitter
    if rng.random() < 0.2:  # a few lines jump (glitches)
        rows = rng.random(size) < rng.uniform(0.002, 0.02)
        jitter[rows] += rng.uniform(-2, 2, int(rows.sum()))
    flyback = rng.uniform(0, 3) * np.exp(-xx / rng.uniform(2, 30)) if rng.random() < 0.4 else 0.0
    rows = pad + yy * (1 + drift[0])
    cols = pad + xx + drift[1] * yy + jitter[:, None] + flyback
    return ndimage.map_coordinates(canvas, [rows, cols], order=1, mode="nearest")


def scan_record(rng: np.random.Generator, canvas: np.ndarray, size: int, pad: int = 16):
    """Scan a clean canvas: ``(recorded, target)``, each ``size`` x ``size`` float32.

    ``target`` is the scene as the distorted scan saw it, min-max scaled to [0, 1]
    (noise-free); ``recorded`` adds a background, Poisson counts (3-1000 per pixel at
    the mean), Gaussian read noise, per-line offset and gain (flyback streaks), partial
    streaks after random pixels of a line and detector lag along the fast axis, in the
    same units as ``target``. The fast axis is the second one, or the first half the time.
    """
    seen = _distort(rng, canvas, size, pad)
    seen = (seen - seen.min()) / (np.ptp(seen) + 1e-12)
    signal = seen + rng.uniform(0, 0.1)
    lag = rng.uniform(0.2, 1.5) if rng.random() < 0.4 else 0.0
    if lag:  # detector afterglow along the fast scan axis (part of what the scan saw)
        k = np.exp(-np.arange(int(math.ceil(lag * 5)) + 1) / lag)
        kern = np.concatenate([np.zeros(len(k) - 1), k / k.sum()])
        signal = ndimage.convolve1d(signal, kern, axis=1, mode="nearest")
    dose = math.exp(rng.uniform(math.log(3.0), math.log(1000.0))) / max(float(signal.mean()), 1e-3)
    noisy = camera_counts(signal * dose, rng).astype(np.float64) / dose
    noisy += rng.standard_normal(signal.shape) * rng.uniform(0, 0.03)
    lines = (size, 1)
    noisy = noisy * (1 + rng.uniform(0, 0.04) * rng.standard_normal(lines))
    noisy += rng.standard_normal(lines) * (rng.uniform(0, 0.05) if rng.random() < 0.6 else 0.0)
    if rng.random() < 0.3:  # streaks: an offset from a random pixel to the end of a few lines
        rows = np.flatnonzero(rng.random(size) < rng.uniform(0.005, 0.05))
        for r in rows:
            noisy[r, int(rng.integers(size)):] += rng.uniform(-0.15, 0.15)
    target = signal
    if rng.random() < 0.5:
        noisy, target = noisy.T, target.T
    return noisy.astype(np.float32), target.astype(np.float32)


def lattice_pair(rng: np.random.Generator, size: int, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One training pair ``(recorded scan, noise-free target)`` of a random :func:`lattice_scene`."""
    canvas, _ = lattice_scene(rng, size, kind)
    return scan_record(rng, canvas, size)
