"""Held-out and tuning HAADF-STEM scans for the DLSS safeguard benchmark.

Neither set was ever seen by the shipped network (``models/dlss-unet-s4-10.json``:
trained on procedural textures, ``emcs.simulate.sample_stem`` and the AtomSegNet /
ISBI images), and the safeguard's thresholds were chosen on the tuning set only.

- **held-out** (``heldout(n)``, seeds 9000+): crystals *absent* from the training
  sampler (``emcs.simulate.stem.CRYSTALS``): wurtzite GaN [11-20], diamond Si [001],
  bcc W [001] and [111], rocksalt PbTe [001], ordered Cu3Au [001]; one to three
  grains, thickness variation, vacancies, an amorphous surface layer, a numpy
  probe (200/300 kV, 18-30 mrad, defocus, finite source) at four magnifications
  (nearest column spacing 5-20 pixels);
- **tuning** (``tuning(n)``, seeds 7000+): ``emcs.simulate.sample_stem`` scenes
  (the training crystals and Au particles).

Both go through the same scan model, unlike the training detector model
(``emcs.simulate.textures.degrade``): Poisson counts (8-300 per pixel at the mean),
Gaussian read noise, per-line offsets and gain (flyback), line jitter and a slow
drift shear; then min-max normalisation as for the public crops.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from emcs.simulate import sample_stem
from emcs.simulate.procedural import grain_columns
from emcs.simulate.render import smooth_field
from emcs.simulate.stem import probe_profile, render_haadf

S3 = math.sqrt(3.0)
# projected column cells: a1, a2 (Å), [(u, v, Z, atoms per repeat)], repeat along the beam (Å)
CELLS = {
    "GaN[11-20]": ((3.189 * S3, 0.0), (0.0, 5.185),
                   [(5 / 6, 0, 31, 1), (1 / 3, 0, 31, 1), (1 / 6, 0.5, 31, 1), (2 / 3, 0.5, 31, 1),
                    (5 / 6, 0.377, 7, 1), (1 / 3, 0.377, 7, 1), (1 / 6, 0.877, 7, 1), (2 / 3, 0.877, 7, 1)],
                   3.189),
    "Si[001]": ((5.431 / 4, 5.431 / 4), (5.431 / 4, -5.431 / 4), [(0, 0, 14, 1)], 5.431),
    "W[001]": ((3.165 / 2, 3.165 / 2), (3.165 / 2, -3.165 / 2), [(0, 0, 74, 1)], 3.165),
    "W[111]": ((3.165 * math.sqrt(2 / 3), 0.0), (3.165 * math.sqrt(2 / 3) / 2, 3.165 / math.sqrt(2)),
               [(0, 0, 74, 1)], 3.165 * S3 / 2),
    "PbTe[001]": ((6.46 / 2, 0.0), (0.0, 6.46 / 2), [(0, 0, 82, 1), (0, 0, 52, 1)], 6.46),
    "Cu3Au[001]": ((3.75, 0.0), (0.0, 3.75),
                   [(0, 0, 79, 1), (0.5, 0.5, 29, 1), (0.5, 0, 29, 1), (0, 0.5, 29, 1)], 3.75),
}


def _spacing(name: str) -> float:
    """Nearest projected column spacing (Å) of a cell."""
    a1, a2, basis, _ = CELLS[name]
    a1, a2 = np.array(a1), np.array(a2)
    pts = np.array([u * a1 + v * a2 for u, v, _, _ in basis])
    shifts = [i * a1 + j * a2 for i in (-1, 0, 1) for j in (-1, 0, 1)]
    d = [np.linalg.norm(p - q - t) for p in pts for q in pts for t in shifts]
    return min(x for x in d if x > 0.3)


def _grain(name, ext, centre, angle, thickness, n_exp=1.7):
    a1, a2, basis, repeat = CELLS[name]
    a1, a2 = np.array(a1), np.array(a2)
    n = int(math.hypot(*ext) / min(np.linalg.norm(a1), np.linalg.norm(a2))) + 3
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    origins = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2
    pts = np.concatenate([origins + u * a1 + v * a2 for u, v, _, _ in basis])
    wts = np.concatenate([np.full(len(origins), cnt * z**n_exp * thickness / repeat)
                          for _, _, z, cnt in basis])
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, -s], [s, c]]).T + centre, wts


def crystal(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """A clean held-out HAADF image (size x size, arbitrary units) and what it shows."""
    name = str(rng.choice(list(CELLS)))
    spacing_px = float(np.exp(rng.uniform(np.log(5.0), np.log(20.0))))
    pixel = _spacing(name) / spacing_px
    ext = np.array([size, size]) * pixel
    n_grains = int(rng.choice([1, 1, 2, 3]))
    seeds = rng.uniform(0, 1, (n_grains, 2)) * ext
    tree = cKDTree(seeds) if n_grains > 1 else None
    thickness = rng.uniform(40, 250)
    pts, wts = [], []
    for g in range(n_grains):
        p, w = _grain(name, ext, ext / 2 + rng.uniform(-2, 2, 2), rng.uniform(0, np.pi), thickness)
        p, w = grain_columns(p, w, ext, 2, tree, g)
        pts.append(p)
        wts.append(w)
    pts, wts = np.concatenate(pts) / pixel, np.concatenate(wts)
    tmap = 1 + 0.3 * smooth_field(rng, (size, size), size / 3)
    rr, cc = (np.clip(np.rint(pts[:, k]).astype(int), 0, size - 1) for k in (0, 1))
    wts = wts * np.clip(tmap[rr, cc], 0.3, None) * (1 + 0.04 * rng.standard_normal(len(wts)))
    wts = np.where(rng.random(len(wts)) < rng.uniform(0, 0.04), wts * rng.uniform(0.2, 0.8), wts)
    n_amorph = int(size * size * pixel**2 * rng.uniform(0.5, 3.0))  # light surface atoms
    pts = np.concatenate([pts, rng.uniform(0, size, (n_amorph, 2))])
    wts = np.concatenate([wts, np.full(n_amorph, 8.0**1.7 * rng.uniform(1, 4))])
    kv, conv = float(rng.choice([200.0, 300.0])), float(rng.uniform(18, 30))
    profile = probe_profile(kv, conv, float(rng.uniform(-30, 30)), 0.0, float(rng.uniform(0.3, 0.7)))
    img = render_haadf(pts, wts, (size, size), pixel, profile)
    img = img + float(img.mean()) * rng.uniform(0.05, 0.3)
    info = {"crystal": name, "grains": n_grains, "column_spacing_px": round(spacing_px, 1),
            "pixel_size_A": round(pixel, 4), "kv": kv, "convergence_mrad": round(conv, 1)}
    return img.astype(np.float32), info


def scan(rng: np.random.Generator, clean: np.ndarray,
         dose_range: tuple[float, float] = (8.0, 300.0)) -> tuple[np.ndarray, dict]:
    """Record a clean image like a STEM scan (mean dose log-uniform in ``dose_range``
    counts per pixel); min-max normalised to [0, 1]."""
    h, w = clean.shape
    x = clean / max(float(clean.mean()), 1e-12)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    drift = rng.uniform(-0.02, 0.02, 2)  # pixels per scan line: a slow shear
    jitter = ndimage.gaussian_filter1d(rng.standard_normal(h), 1.0) * rng.uniform(0.05, 0.5)
    x = ndimage.map_coordinates(x, [yy + drift[0] * yy, xx + drift[1] * yy + jitter[:, None]],
                                order=1, mode="reflect")
    dose = float(np.exp(rng.uniform(np.log(dose_range[0]), np.log(dose_range[1]))))
    gain = 1 + rng.uniform(0, 0.03) * rng.standard_normal((h, 1))
    counts = rng.poisson(np.clip(x * gain, 0, None) * dose).astype(np.float64)
    counts += rng.uniform(0.2, 2.0) * rng.standard_normal((h, w))
    counts += rng.uniform(0, 0.03) * dose * rng.standard_normal((h, 1))  # line offsets
    lo, hi = counts.min(), counts.max()
    return ((counts - lo) / (hi - lo)).astype(np.float32), {"dose": round(dose, 1)}


def heldout(n: int, size: int = 512) -> list[tuple[str, np.ndarray, dict]]:
    """``n`` held-out scans ``(name, image, info)`` of crystals the network never saw."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(9000 + i)
        clean, info = crystal(rng, size)
        img, noise = scan(rng, clean)
        out.append((f"held:{i}", img, {**info, **noise}))
    return out


def tuning(n: int, size: int = 384) -> list[tuple[str, np.ndarray, dict]]:
    """``n`` tuning scans (training-like scenes, the held-out scan model), seeds 7000+."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(7000 + i)
        img, noise = scan(rng, sample_stem(rng, size) + 0.05)
        out.append((f"tune:{i}", img, noise))
    return out
