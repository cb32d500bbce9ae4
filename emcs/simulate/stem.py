"""HAADF-STEM images in the incoherent approximation, with an abTEM probe.

Model (standard for Z-contrast imaging): the annular-dark-field signal is the
projected "Z-contrast object" ``O(r) = sum_j Z_j^n delta(r - r_j)`` (n = 1.7 for a
high-angle detector, smaller for low inner angles) convolved with the probe
intensity ``|psi(r)|^2``. The probe is the aberrated aperture-limited probe
``psi = IFFT[A(k) exp(-i chi(k))]`` with ``chi = 2 pi / lambda (C10 alpha^2 / 2 +
C30 alpha^4 / 4)`` (``C10 = -defocus``, abTEM's convention), blurred by a
Gaussian effective source. :func:`abtem_probe_profiles` computes the same probe
with abTEM (stored by :func:`emcs.simulate.build_cache`); without a cache the
numpy formula is used. Channelling, thickness non-linearity and
thermal-diffuse background are not modelled (documented limitation); about
2-5 ms per 256x256 image.

Specimens:

- crystals seen down a zone axis (projected column cells of Au/Pt fcc [001] and
  [110], Si and GaAs [110] dumbbells, SrTiO3 [001], MoS2 and hBN monolayers),
  one to four grains with grain boundaries, smooth thickness variation,
  vacancies, heavy dopant atoms and edge dislocations, sometimes a specimen edge;
- Au nanoparticles (ASE icosahedra, decahedra, truncated octahedra, randomly
  oriented) on an amorphous carbon support (random carbon atoms, 0.1 atoms/Å^3).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from emcs.simulate.extras import configure_abtem, require
from emcs.simulate.motion import smooth_path
from emcs.simulate.optics import wavelength
from emcs.simulate.procedural import _edge_dislocation, grain_columns
from emcs.simulate.render import normalize, smooth_field, splat

__all__ = [
    "DEFAULTS",
    "probe_profile",
    "abtem_probe_profiles",
    "crystal_scene",
    "particle_scene",
    "render_haadf",
    "sample_stem",
    "haadf_movie",
]

#: documented microscope defaults for the HAADF kinds
DEFAULTS = {
    "kv": 200.0,  # accelerating voltage
    "convergence": 25.0,  # probe semi-angle, mrad
    "defocus": 0.0,  # Å (abTEM convention: defocus = -C10)
    "cs": 0.0,  # Å, aberration-corrected
    "source": 0.4,  # Å, r.m.s. effective source size
    "inner": 60.0,  # detector inner angle, mrad
    "outer": 200.0,  # detector outer angle, mrad
    "pixel_size": {"haadf-crystal": 0.2, "haadf-particle": 0.25},  # Å
}
PROBE_DR = 0.02
PROBE_RMAX = 10.0


def z_exponent(inner: float) -> float:
    """Exponent n of the Z^n contrast: 1.7 for inner angles >= 60 mrad, lower for ADF."""
    return float(np.clip(1.3 + 0.4 * (inner - 20.0) / 40.0, 1.3, 1.7))


def _radial_profile(img: np.ndarray, sampling: float, dr: float = PROBE_DR, rmax: float = PROBE_RMAX):
    """Azimuthal average around the centre of mass, normalised to unit 2-D integral (per Å²)."""
    img = np.asarray(img, dtype=np.float64)
    img = img / img.sum()
    n0, n1 = img.shape
    yy, xx = np.indices(img.shape)
    cy, cx = (img * yy).sum(), (img * xx).sum()
    r = np.hypot(yy - cy, xx - cx) * sampling
    nb = int(rmax / dr) + 1
    idx = np.minimum((r / dr + 0.5).astype(np.int64), nb)
    sums = np.bincount(idx.ravel(), weights=img.ravel(), minlength=nb + 1)[:nb]
    cnt = np.bincount(idx.ravel(), minlength=nb + 1)[:nb]
    prof = np.where(cnt > 0, sums / np.maximum(cnt, 1), 0.0)
    # fill empty bins near the centre by interpolation
    good = cnt > 0
    rr = np.arange(nb) * dr
    prof = np.interp(rr, rr[good], prof[good]) / sampling**2
    norm = (prof * 2 * np.pi * np.maximum(rr, dr / 4)).sum() * dr
    return (prof / norm).astype(np.float32)


def _gaussian_blur_physical(img: np.ndarray, sampling: float, source: float) -> np.ndarray:
    if source <= 0:
        return img
    return ndimage.gaussian_filter(img, source / sampling, mode="wrap")


@functools.lru_cache(maxsize=64)
def probe_profile(kv: float, convergence: float, defocus: float = 0.0, cs: float = 0.0,
                  source: float = 0.4, sampling: float = 0.05, gpts: int = 512) -> np.ndarray:
    """Radial probe intensity (per Å², unit integral) sampled every 0.02 Å up to 10 Å (numpy).

    Parameters
    ----------
    kv : float
        Accelerating voltage (kV).
    convergence : float
        Probe semi-angle (mrad), sharp aperture.
    defocus : float
        Defocus in Å (abTEM convention, ``C10 = -defocus``).
    cs : float
        Spherical aberration C30 in Å.
    source : float
        r.m.s. width (Å) of the Gaussian effective source.
    """
    lam = wavelength(kv)
    k = np.fft.fftfreq(gpts, sampling)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    alpha = lam * np.sqrt(k2)
    aperture = (alpha <= convergence * 1e-3).astype(np.float64)
    chi = 2 * np.pi / lam * (-defocus * alpha**2 / 2 + cs * alpha**4 / 4)
    psi = np.fft.fftshift(np.fft.ifft2(aperture * np.exp(-1j * chi)))
    inten = np.abs(psi) ** 2
    inten = _gaussian_blur_physical(inten, sampling, source)
    return _radial_profile(inten, sampling)


#: parameter grid of the abTEM probes stored in the cache: kV, mrad, defocus Å, Cs Å, source Å
def _probe_grid():
    rows = []
    for kv in (200.0, 300.0):
        for conv in (18.0, 22.0, 25.0, 30.0):
            for df in (-40.0, 0.0, 40.0):
                for src in (0.3, 0.6):
                    rows.append((kv, conv, df, 0.0 if conv >= 22 else 5e4, src))
    return np.array(rows, dtype=np.float64)


def abtem_probe_profiles(dr: float = PROBE_DR):
    """Probe intensities computed with abTEM for the cached parameter grid.

    Returns
    -------
    params : ndarray (K, 5)
        kV, convergence (mrad), defocus (Å), Cs (Å), source size (Å).
    profiles : ndarray (K, R)
        Radial intensities as in :func:`probe_profile`.
    """
    abtem = configure_abtem()
    params = _probe_grid()
    profiles = []
    sampling = 0.05
    for kv, conv, df, cs, src in params:
        probe = abtem.Probe(energy=kv * 1e3, semiangle_cutoff=conv, defocus=df, Cs=cs,
                            sampling=sampling, extent=25.6, soft=False)
        inten = np.asarray(probe.build().intensity().compute().array, dtype=np.float64)
        inten = _gaussian_blur_physical(inten, sampling, src)
        profiles.append(_radial_profile(inten, sampling, dr))
    return params, np.stack(profiles)


def probe_transfer(shape: tuple[int, int], pixel_size: float, profile: np.ndarray,
                   dr: float = PROBE_DR) -> np.ndarray:
    """rfft2 transfer function of the probe intensity on a pixel grid (unit sum)."""
    h, w = shape
    dy = np.minimum(np.arange(h), h - np.arange(h)) * pixel_size
    dx = np.minimum(np.arange(w), w - np.arange(w)) * pixel_size
    r = np.hypot(dy[:, None], dx[None, :])
    kernel = np.interp(r / dr, np.arange(len(profile)), profile, right=0.0).astype(np.float32)
    kernel /= kernel.sum()
    return np.fft.rfft2(kernel).astype(np.complex64)


# ----------------------------------------------------------------------------- specimens
# projected column cells: (a1 Å, a2 Å as 2-vectors), [(frac u, frac v, weight-atoms list)]
def _cells():
    au, pt = 4.078, 3.924
    si, gaas = 5.431, 5.653
    return {
        "Au[001]": ((au / 2, 0.0), (0.0, au / 2), [(0, 0, [(79, 1)])], au),
        "Au[110]": ((au, 0.0), (0.0, au / math.sqrt(2)), [(0, 0, [(79, 1)]), (0.5, 0.5, [(79, 1)])], au / math.sqrt(2)),
        "Pt[001]": ((pt / 2, 0.0), (0.0, pt / 2), [(0, 0, [(78, 1)])], pt),
        "Si[110]": ((si, 0.0), (0.0, si / math.sqrt(2)),
                    [(0, 0, [(14, 1)]), (0.25, 0, [(14, 1)]), (0.5, 0.5, [(14, 1)]), (0.75, 0.5, [(14, 1)])],
                    si / math.sqrt(2)),
        "GaAs[110]": ((gaas, 0.0), (0.0, gaas / math.sqrt(2)),
                      [(0, 0, [(31, 1)]), (0.25, 0, [(33, 1)]), (0.5, 0.5, [(31, 1)]), (0.75, 0.5, [(33, 1)])],
                      gaas / math.sqrt(2)),
        "SrTiO3[001]": ((3.905, 0.0), (0.0, 3.905),
                        [(0, 0, [(38, 1)]), (0.5, 0.5, [(22, 1), (8, 1)]), (0.5, 0, [(8, 1)]), (0, 0.5, [(8, 1)])],
                        3.905),
        "MoS2": ((3.16, 0.0), (3.16 / 2, 3.16 * math.sqrt(3) / 2),
                 [(1 / 3, 1 / 3, [(42, 1)]), (2 / 3, 2 / 3, [(16, 2)])], None),
        "hBN": ((2.50, 0.0), (2.50 / 2, 2.50 * math.sqrt(3) / 2),
                [(1 / 3, 1 / 3, [(5, 1)]), (2 / 3, 2 / 3, [(7, 1)])], None),
    }


CRYSTALS = tuple(_cells())


def _grain_columns(rng, name, shape_a, center, angle, n_exp, thickness):
    a1, a2, basis, repeat = _cells()[name]
    a1, a2 = np.array(a1), np.array(a2)
    diag = math.hypot(*shape_a)
    n = int(diag / min(np.linalg.norm(a1), np.linalg.norm(a2))) + 3
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    origins = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2
    pts, wts = [], []
    for u, v, atoms in basis:
        zw = sum(cnt * z**n_exp for z, cnt in atoms)
        pts.append(origins + u * a1 + v * a2)
        wts.append(np.full(len(origins), zw))
    pts = np.concatenate(pts)
    wts = np.concatenate(wts)
    atoms_per_column = 1.0 if repeat is None else thickness / repeat
    c, s = math.cos(angle), math.sin(angle)
    pts = pts @ np.array([[c, -s], [s, c]]).T + center
    return pts, wts * atoms_per_column


def crystal_scene(rng: np.random.Generator, shape: tuple[int, int], pixel_size: float, n_exp: float = 1.7):
    """Column positions (pixels) and Z-contrast weights of a polycrystalline specimen."""
    h, w = shape
    ext = np.array([h, w]) * pixel_size
    name = str(rng.choice(CRYSTALS))
    n_grains = int(rng.choice([1, 1, 2, 3, 4]))
    seeds = rng.uniform(0, 1, (n_grains, 2)) * ext
    thickness = rng.uniform(30, 200)
    all_p, all_w = [], []
    tree = cKDTree(seeds)
    names = []
    for g in range(n_grains):
        gname = name
        if n_grains > 1 and rng.random() < 0.3:
            gname = str(rng.choice(CRYSTALS))
        names.append(gname)
        p, wt = _grain_columns(rng, gname, ext, ext / 2 + rng.uniform(-3, 3, 2), rng.uniform(0, np.pi), n_exp,
                               thickness)
        p, wt = grain_columns(p, wt, ext, 2, tree if n_grains > 1 else None, g)
        all_p.append(p)
        all_w.append(wt)
    pts = np.concatenate(all_p) / pixel_size
    wts = np.concatenate(all_w)

    n_disl = int(rng.choice([0, 0, 1, 2]))
    for _ in range(n_disl):
        core = rng.uniform(0.2, 0.8, 2) * [h, w]
        pts = pts + _edge_dislocation(pts, core, 2.5 / pixel_size, rng.uniform(0, 2 * np.pi))
    # thickness wedge / variation, vacancies, heavy dopants
    tmap = 1 + 0.25 * smooth_field(rng, (h, w), max(h, w) / 3)
    rr = np.clip(np.rint(pts[:, 0]).astype(int), 0, h - 1)
    cc = np.clip(np.rint(pts[:, 1]).astype(int), 0, w - 1)
    wts = wts * np.clip(tmap[rr, cc], 0.3, None)
    vac = rng.random(len(wts)) < rng.uniform(0, 0.03)
    wts = np.where(vac, wts * rng.uniform(0.3, 0.9), wts)
    dop = rng.random(len(wts)) < rng.uniform(0, 0.01)
    wts = np.where(dop, wts + rng.choice([79, 78, 74, 57]) ** n_exp, wts)
    wts = wts * (1 + 0.03 * rng.standard_normal(len(wts)))
    edge = None
    if rng.random() < 0.3:  # specimen edge: vacuum on one side of a wavy line
        th = rng.uniform(0, 2 * np.pi)
        d = (pts[:, 0] - h / 2) * math.sin(th) + (pts[:, 1] - w / 2) * math.cos(th)
        lim = rng.uniform(0.1, 0.4) * min(h, w)
        keep = d < lim + 0.03 * min(h, w) * np.sin(pts[:, 0] * 0.05 + pts[:, 1] * 0.03)
        pts, wts = pts[keep], wts[keep]
        edge = round(float(th), 3)
    info = {"crystal": names, "grains": n_grains, "thickness_A": round(float(thickness), 1),
            "dislocations": n_disl, "edge": edge}
    return pts, wts, info


@functools.lru_cache(maxsize=48)
def _cluster_positions(shape: str, a: int, b: int, c: int) -> np.ndarray:
    cluster = require("ase.cluster", "Au nanoparticles (the haadf-particle and HRTEM kinds)")
    if shape == "icosahedron":
        atoms = cluster.Icosahedron("Au", noshells=a)
    elif shape == "decahedron":
        atoms = cluster.Decahedron("Au", p=a, q=b, r=c)
    else:
        atoms = cluster.Octahedron("Au", length=a, cutoff=b)
    pos = atoms.get_positions()
    return pos - pos.mean(axis=0)


def random_cluster(rng: np.random.Generator, max_diameter: float = 40.0,
                   min_diameter: float = 0.0) -> tuple[np.ndarray, str]:
    """Atom positions (Å, centred) of a randomly shaped and oriented Au cluster (ASE).

    Tries random shapes and sizes; keeps the first whose diameter is between
    ``min_diameter`` and ``max_diameter`` (else the largest tried that fits, at
    least a 13-atom icosahedron).
    """
    best = None
    for _ in range(24):
        shape = str(rng.choice(["icosahedron", "decahedron", "octahedron"]))
        if shape == "icosahedron":
            args = (int(rng.integers(2, 8)), 0, 0)
        elif shape == "decahedron":
            args = (int(rng.integers(2, 6)), int(rng.integers(1, 4)), int(rng.integers(0, 3)))
        else:
            ln = int(rng.integers(4, 12))
            args = (ln, int(rng.integers(1, max(2, ln // 2))), 0)
        pos = _cluster_positions(shape, *args)
        diam = float(np.ptp(pos, axis=0).max())
        if diam <= max_diameter and (best is None or diam > best[0]):
            best = (diam, pos, f"{shape}{args}")
        if min_diameter <= diam <= max_diameter:
            break
    if best is None:
        best = (0.0, _cluster_positions("icosahedron", 2, 0, 0), "icosahedron(2, 0, 0)")
    from scipy.spatial.transform import Rotation

    rot = Rotation.random(random_state=np.random.default_rng(rng.integers(2**32)))
    return rot.apply(best[1]), best[2]


def particle_scene(rng: np.random.Generator, shape: tuple[int, int], pixel_size: float, n_exp: float = 1.7):
    """Atom positions (pixels) and weights of Au clusters on amorphous carbon."""
    h, w = shape
    ext = np.array([h, w]) * pixel_size
    n_part = int(rng.choice([1, 1, 2, 3]))
    pts, wts, names = [], [], []
    for _ in range(n_part):
        pos, name = random_cluster(rng, max_diameter=0.6 * float(ext.min()))
        names.append(name)
        center = ext * rng.uniform(0.25, 0.75, 2)
        pts.append(pos[:, :2] + center)
        wts.append(np.full(len(pos), 79.0**n_exp))
    support = rng.uniform(20, 80)  # Å of amorphous carbon
    n_c = int(ext[0] * ext[1] * support * 0.1)
    pts.append(rng.uniform(0, 1, (n_c, 2)) * ext)
    wts.append(np.full(n_c, 6.0**n_exp))
    pts = np.concatenate(pts) / pixel_size
    wts = np.concatenate(wts)
    return pts, wts, {"particles": names, "support_A": round(float(support), 1)}


def render_haadf(points: np.ndarray, weights: np.ndarray, shape: tuple[int, int], pixel_size: float,
                 profile: np.ndarray) -> np.ndarray:
    """Splat the Z-contrast object and convolve it with the probe intensity (float32)."""
    obj = splat(points, weights, shape)
    out = np.fft.irfft2(np.fft.rfft2(obj) * probe_transfer(shape, pixel_size, profile), s=shape)
    return np.clip(out, 0, None).astype(np.float32)


# ----------------------------------------------------------------------------- sampling
def _cached_profiles():
    from emcs.simulate.cache import load_cache

    cache = load_cache()
    if cache is None or "probe_profiles" not in cache:
        return None
    return cache["probe_params"], cache["probe_profiles"]


def random_probe(rng: np.random.Generator):
    """A random probe: (params dict, radial profile); abTEM's from the cache when present."""
    cached = _cached_profiles()
    if cached is not None:
        params, profiles = cached
        k = int(rng.integers(len(params)))
        kv, conv, df, cs, src = (float(x) for x in params[k])
        return {"kv": kv, "convergence": conv, "defocus": df, "cs": cs, "source": src, "probe": "abtem"}, \
            np.asarray(profiles[k])
    from emcs.simulate.cache import warn_missing

    warn_missing("abTEM probe cache", "STEM probes are computed with numpy instead, so the scans differ "
                 "from those made with the cache")
    kv = float(rng.choice([200.0, 300.0]))
    conv = float(rng.choice([18.0, 22.0, 25.0, 30.0]))
    df = float(rng.choice([-40.0, 0.0, 40.0]))
    src = float(rng.choice([0.3, 0.6]))
    cs = 0.0 if conv >= 22 else 5e4
    return {"kv": kv, "convergence": conv, "defocus": df, "cs": cs, "source": src, "probe": "numpy"}, \
        probe_profile(kv, conv, df, cs, src)


def _scene(rng, kind, shape, pixel_size, n_exp):
    if kind == "haadf-particle":
        return particle_scene(rng, shape, pixel_size, n_exp)
    return crystal_scene(rng, shape, pixel_size, n_exp)


def _scan_noise(rng, img, amount):
    """Row-wise scan jitter (flyback instability) of ``amount`` pixels r.m.s."""
    h, w = img.shape
    jitter = ndimage.gaussian_filter1d(rng.standard_normal(h), 1.0) * amount
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    return ndimage.map_coordinates(img, [yy, xx + jitter[:, None].astype(np.float32)], order=1, mode="reflect")


def sample_stem(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A clean HAADF-like image (H, W) float32 in [0, 1]; see the module docstring."""
    h, w = (int(s) for s in size)
    kind = "haadf-particle" if rng.random() < 0.4 else "haadf-crystal"
    pixel_size = float(np.exp(rng.uniform(np.log(0.08), np.log(0.5))))
    pts, wts, _ = _scene(rng, kind, (h, w), pixel_size, float(rng.uniform(1.5, 1.8)))
    _, profile = random_probe(rng)
    img = render_haadf(pts, wts, (h, w), pixel_size, profile)
    # weak background: thickness-dependent diffuse scattering
    img = img + float(img.mean()) * rng.uniform(0, 0.3) * (1 + 0.3 * smooth_field(rng, (h, w), max(h, w) / 5))
    if rng.random() < 0.5:
        img = _scan_noise(rng, img, rng.uniform(0.05, 0.4))
    return normalize(img, 0.05, 99.95)


def haadf_movie(kind: str, rng: np.random.Generator, frames: int, size: tuple[int, int],
                pixel_size: float | None = None, kv: float | None = None, convergence: float | None = None,
                defocus: float | None = None, cs: float | None = None, source: float | None = None,
                inner: float | None = None, outer: float | None = None, speed: float = 0.3,
                rotation: float = 0.0005, jitter: float = 0.1, order: int = 3,
                profile: np.ndarray | None = None):
    """HAADF frames of one specimen; frames differ by scan drift (serial acquisition).

    The drift path is continuous in time: every pixel is seen at its own scan
    time (row by row), so drift also shears each frame, as in a real scan.
    ``profile`` (a radial probe intensity, e.g. abTEM's from the cache)
    replaces the probe computed from the microscope parameters.
    Returns (clean (T, H, W) in [0, 1], pixel_size, meta).
    """
    h, w = size
    p = DEFAULTS["pixel_size"][kind] if pixel_size is None else float(pixel_size)
    kv = DEFAULTS["kv"] if kv is None else float(kv)
    conv = DEFAULTS["convergence"] if convergence is None else float(convergence)
    df = DEFAULTS["defocus"] if defocus is None else float(defocus)
    cs = DEFAULTS["cs"] if cs is None else float(cs)
    src = DEFAULTS["source"] if source is None else float(source)
    inner = DEFAULTS["inner"] if inner is None else float(inner)
    outer = DEFAULTS["outer"] if outer is None else float(outer)
    from emcs.errors import EmcsError

    if not 0 < inner < outer:
        raise EmcsError(f"detector angles must satisfy 0 < inner < outer, got {inner}, {outer} mrad")
    if p <= 0 or kv <= 0 or conv <= 0:
        raise EmcsError("pixel size, kV and convergence angle must be positive")
    n_exp = z_exponent(inner)
    pad = int(speed * frames * 1.5 + 0.1 * max(h, w) + 8)
    side = int(math.ceil(math.hypot(h, w))) + 2 * pad
    pts, wts, info = _scene(rng, kind, (side, side), p, n_exp)
    if profile is None:
        profile = probe_profile(kv, conv, df, cs, src)
    scene = render_haadf(pts, wts, (side, side), p, profile)
    scene = scene + float(scene.mean()) * 0.1 * (1 + 0.3 * smooth_field(rng, (side, side), side / 5))
    scene = np.clip(scene / np.percentile(scene, 99.95), 0, 1)  # a pure scale: vacuum stays 0
    # continuous drift: position as a function of scan time (frames), sampled per row
    path = smooth_path(rng, frames + 1, speed, 2)
    angle = smooth_path(rng, frames + 1, rotation, 1)[:, 0]
    filt = ndimage.spline_filter(scene, order=order, mode="mirror") if order > 1 else scene
    out = np.empty((frames, h, w), np.float32)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64) - (h - 1) / 2,
                         np.arange(w, dtype=np.float64) - (w - 1) / 2, indexing="ij")
    tt = np.arange(frames + 1)
    c0 = (side - 1) / 2 - path.mean(axis=0)
    for f in range(frames):
        t_row = f + (np.arange(h) + 0.5) / h  # scan time of each row
        dy = np.interp(t_row, tt, path[:, 0])[:, None]
        dx = np.interp(t_row, tt, path[:, 1])[:, None]
        th = np.interp(t_row, tt, angle)[:, None]
        jit = jitter * ndimage.gaussian_filter1d(rng.standard_normal(h), 1.0)[:, None]
        ys = np.cos(th) * yy - np.sin(th) * xx + c0[0] + dy
        xs = np.sin(th) * yy + np.cos(th) * xx + c0[1] + dx + jit
        out[f] = ndimage.map_coordinates(filt, [ys, xs], order=order, mode="mirror", prefilter=False)
    meta = {"scene": info, "model": "incoherent Z^n x probe intensity", "z_exponent": round(n_exp, 3),
            "kv": kv, "convergence_mrad": conv, "defocus_A": df, "cs_A": cs, "source_A": src,
            "detector_mrad": [inner, outer], "drift_px_per_frame": speed}
    return np.clip(out, 0, 1), p, meta
