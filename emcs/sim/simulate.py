"""Simulated SIM data: procedural structures, raw 3x3 SIM stacks, wide-field images.

Image formation (``shared/refs/sim.md`` sections 1 and 5): the ground truth
``s`` lives on a grid twice as fine as the camera (the SR grid). For angle
``a`` and phase step ``n`` the sample is lit by

    I_an(r) = 1 + m_a cos(2 pi k_a . r + phi_a + 2 pi n / N_p),

the product is blurred with the ideal wide-field OTF, binned 2x2 onto the camera
grid, scaled to a photon budget, and Poisson + Gaussian read noise + a camera
offset are added (uint16 counts).

Coordinates: the origin is the centre of camera pixel (0, 0); SR pixel ``p``
sits at camera coordinate ``p / 2`` (so camera pixel ``i`` is SR pixel ``2 i``).
Pattern wave vectors are in cycles/um as (ky, kx); phases refer to that origin.

Frame order of a raw stack (``angle-major``): time point ``t``, angle ``a``,
phase ``n`` is frame ``t * A * P + a * P + n``. ``phase-major`` is
``t * A * P + n * A + a``.

SNR: for a frame with noise-free signal ``S`` photons (99th percentile of the
signal above background), background ``B`` photons and read noise ``sigma`` (e-),
``SNR = S / sqrt(S + B + sigma^2)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from emcs.errors import EmcsError
from emcs.sim.otf import Optics, otf

STRUCTURES = ("filaments", "tubules", "mesh", "vesicles")
CAMERA_OFFSET = 100.0


# ----------------------------------------------------------------------------- structures
def _splat(img: np.ndarray, ys: np.ndarray, xs: np.ndarray, w: np.ndarray) -> None:
    """Add point weights ``w`` at sub-pixel positions (bilinear), dropping points outside."""
    H, W = img.shape
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    fy, fx = ys - y0, xs - x0
    for dy, dx, ww in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                       (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        img += np.bincount(yy[ok] * W + xx[ok], weights=(w * ww)[ok], minlength=H * W).reshape(H, W)


def _curve(rng, shape, length_px, curvature, step=0.5):
    """Points of a random smooth curve (persistent random walk), in pixels."""
    n = max(2, int(length_px / step))
    y, x = rng.uniform(-0.1, 1.1) * shape[0], rng.uniform(-0.1, 1.1) * shape[1]
    theta = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, curvature, n))
    ys = y + np.cumsum(step * np.sin(theta))
    xs = x + np.cumsum(step * np.cos(theta))
    return ys, xs, theta


def _draw_curves(img, rng, count, length_px, curvature, bundle_p=0.0, intensity=(0.4, 1.0)):
    step = 0.5
    for _ in range(count):
        ys, xs, theta = _curve(rng, img.shape, rng.uniform(*length_px), curvature, step)
        w = np.full(ys.shape, rng.uniform(*intensity) * step)
        _splat(img, ys, xs, w)
        if rng.random() < bundle_p:  # a parallel neighbour 80-200 nm away (at 40 nm px: 2-5 px)
            d = rng.uniform(2.0, 5.0) * rng.choice([-1, 1])
            _splat(img, ys + d * np.cos(theta), xs - d * np.sin(theta), w * rng.uniform(0.6, 1.0))


def render_structure(kind: str, shape: tuple[int, int], pixel_nm: float, rng) -> np.ndarray:
    """A procedural fluorescent structure on a grid of ``pixel_nm`` nm pixels.

    Parameters
    ----------
    kind : {'filaments', 'tubules', 'mesh', 'vesicles', 'mixed'}
        F-actin-like dense filaments (with bundles), microtubule-like long
        smooth tubules, an ER-like polygonal mesh, vesicles (rings and spots),
        or a mixture.
    shape : (int, int)
        Output shape.
    pixel_nm : float
        Pixel size in nm (densities and lengths are physical).
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray
        float32 image, maximum 1.
    """
    img = np.zeros(shape, np.float64)
    um = 1e3 / pixel_nm  # pixels per micrometre
    area = shape[0] * shape[1] / um**2  # um^2
    if kind == "mixed":
        kinds = list(rng.choice(STRUCTURES, size=2, replace=False))
    else:
        kinds = [kind]
    for k in kinds:
        if k == "filaments":
            _draw_curves(img, rng, max(1, int(area * rng.uniform(0.3, 0.9))), (1.5 * um, 8 * um),
                         curvature=0.015, bundle_p=0.35, intensity=(0.3, 1.0))
        elif k == "tubules":
            _draw_curves(img, rng, max(1, int(area * rng.uniform(0.1, 0.3))), (5 * um, 20 * um),
                         curvature=0.006, bundle_p=0.15, intensity=(0.6, 1.0))
        elif k == "mesh":
            _draw_mesh(img, rng, um, area)
        elif k == "vesicles":
            _draw_vesicles(img, rng, um, area)
        else:
            raise ValueError(f"unknown structure {k!r}; choose from {STRUCTURES + ('mixed',)}")
    img = ndimage.gaussian_filter(img, 0.6)
    peak = np.percentile(img, 99.9)
    peak = peak if peak > 0 else max(img.max(), 1e-12)
    return np.clip(img / peak, 0, 1.5).astype(np.float32) / 1.5


def _draw_mesh(img, rng, um, area):
    from scipy.spatial import Delaunay

    H, W = img.shape
    n = max(4, int(area * rng.uniform(0.8, 2.0)))
    pts = np.column_stack([rng.uniform(-0.05, 1.05, n) * H, rng.uniform(-0.05, 1.05, n) * W])
    tri = Delaunay(pts)
    edges = set()
    for s in tri.simplices:
        for i in range(3):
            a, b = sorted((s[i], s[(i + 1) % 3]))
            edges.add((a, b))
    for a, b in edges:
        if rng.random() < 0.3:
            continue
        p, q = pts[a], pts[b]
        mid = (p + q) / 2 + rng.normal(0, 0.1, 2) * np.linalg.norm(q - p)
        t = np.linspace(0, 1, max(2, int(2 * np.linalg.norm(q - p))))[:, None]
        c = (1 - t) ** 2 * p + 2 * (1 - t) * t * mid + t**2 * q  # quadratic Bezier
        w = np.full(len(t), 0.5 * rng.uniform(0.5, 1.0))
        _splat(img, c[:, 0], c[:, 1], w)
    _splat(img, pts[:, 0], pts[:, 1], rng.uniform(0.5, 2.0, n))  # junctions


def _draw_vesicles(img, rng, um, area):
    H, W = img.shape
    n = max(2, int(area * rng.uniform(0.3, 1.0)))
    for _ in range(n):
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        r = rng.uniform(0.05, 0.3) * um
        if rng.random() < 0.6:  # ring
            t = np.linspace(0, 2 * np.pi, max(8, int(4 * np.pi * r)), endpoint=False)
            w = np.full(t.shape, 0.5 * rng.uniform(0.4, 1.0))
            _splat(img, cy + r * np.sin(t), cx + r * np.cos(t), w)
        else:  # filled spot
            m = max(4, int(np.pi * r * r))
            rr, tt = r * np.sqrt(rng.random(m)), rng.uniform(0, 2 * np.pi, m)
            _splat(img, cy + rr * np.sin(tt), cx + rr * np.cos(tt), np.full(m, rng.uniform(0.1, 0.4)))


# ----------------------------------------------------------------------------- patterns
@dataclass
class Pattern:
    """One illumination angle: wave vector (cycles/um), phase of step 0 (rad), modulation."""

    ky: float
    kx: float
    phase: float
    modulation: float

    @property
    def k(self) -> float:
        return float(np.hypot(self.ky, self.kx))

    @property
    def angle_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.ky, self.kx)))

    def to_dict(self) -> dict:
        return {"ky": self.ky, "kx": self.kx, "k": self.k, "angle_deg": self.angle_deg,
                "phase": self.phase, "modulation": self.modulation}


def random_patterns(rng, optics: Optics, angles: int = 3, k_rel: float = 0.8,
                    modulation: float = 0.8, jitter: bool = True) -> list[Pattern]:
    """Illumination patterns at ``angles`` evenly spaced orientations.

    With ``jitter`` the orientation offset, the per-angle orientation (+-3 deg),
    |k| (+-3 %), modulation (+-0.1) and phases (uniform) are randomised.
    """
    theta0 = rng.uniform(0, np.pi / angles) if jitter else 0.0
    out = []
    for a in range(angles):
        th = theta0 + a * np.pi / angles + (np.radians(rng.uniform(-3, 3)) if jitter else 0.0)
        kk = k_rel * optics.cutoff * (rng.uniform(0.97, 1.03) if jitter else 1.0)
        m = float(np.clip(modulation + (rng.uniform(-0.1, 0.1) if jitter else 0.0), 0.05, 1.0))
        ph = float(rng.uniform(0, 2 * np.pi)) if jitter else 0.0
        out.append(Pattern(float(kk * np.sin(th)), float(kk * np.cos(th)), ph, m))
    return out


# ----------------------------------------------------------------------------- image formation
def _sr_coords(shape_sr, optics: Optics):
    """Camera-centred physical coordinates (um) of the centres of fine-grid pixels."""
    d = optics.pixel_nm * 1e-3 / 2
    y = (np.arange(shape_sr[0]) - 0.5) * d  # fine pixel j is at SR coordinate j - 0.5
    x = (np.arange(shape_sr[1]) - 0.5) * d
    return y[:, None], x[None, :]


def _blur_bin(img_hr: np.ndarray, H_hr: np.ndarray) -> np.ndarray:
    """Blur a fine-grid image with the OTF and bin 2x2 onto the camera grid."""
    blurred = sfft.irfft2(sfft.rfft2(img_hr) * H_hr, s=img_hr.shape)
    h, w = blurred.shape[0] // 2, blurred.shape[1] // 2
    return blurred[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))


def _rotated_otf(shape_hr, optics: Optics) -> np.ndarray:
    H = otf(shape_hr, optics.pixel_nm / 2, optics.cutoff)
    return H[:, : shape_hr[1] // 2 + 1]


def clean_raw(gt: np.ndarray, optics: Optics, patterns: list[Pattern], phases: int = 3) -> np.ndarray:
    """Noise-free raw SIM frames (A*P, H, W) on the camera grid, angle-major order.

    ``gt`` has shape (2H, 2W) on the SR grid; one unit of ``gt`` under uniform
    illumination gives one unit of camera signal.
    """
    Hk = _rotated_otf(gt.shape, optics)
    y, x = _sr_coords(gt.shape, optics)
    frames = []
    for p in patterns:
        arg = 2 * np.pi * (p.ky * y + p.kx * x) + p.phase
        for n in range(phases):
            illum = 1.0 + p.modulation * np.cos(arg + 2 * np.pi * n / phases)
            frames.append(_blur_bin(gt * illum, Hk))
    return np.clip(np.asarray(frames), 0, None)


def clean_widefield(gt: np.ndarray, optics: Optics) -> np.ndarray:
    """Noise-free wide-field image (H, W) of a fine-grid ground truth (uniform light)."""
    return np.clip(_blur_bin(gt, _rotated_otf(gt.shape, optics)), 0, None)


def signal_level(clean: np.ndarray) -> float:
    """The 'S' of the SNR definition: 99th percentile of a noise-free frame."""
    return float(np.percentile(clean, 99))


def add_camera_noise(signal_photons: np.ndarray, rng, background: float = 10.0,
                     read_noise: float = 1.5, offset: float = CAMERA_OFFSET) -> np.ndarray:
    """Poisson shot noise + Gaussian read noise + offset, as uint16 counts (gain 1)."""
    lam = np.clip(signal_photons, 0, None) + background
    counts = rng.poisson(lam).astype(np.float64) + rng.normal(offset, read_noise, lam.shape)
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)


def snr(photons: float, background: float = 10.0, read_noise: float = 1.5) -> float:
    """SNR = S / sqrt(S + B + sigma^2) (see the module docstring)."""
    return float(photons / np.sqrt(photons + background + read_noise**2))


def shift_to_sr_grid(gt: np.ndarray) -> np.ndarray:
    """Resample a fine-grid ground truth onto the SR grid (half a fine pixel shift)."""
    F = sfft.fft2(gt)
    ky = np.fft.fftfreq(gt.shape[0])[:, None]
    kx = np.fft.fftfreq(gt.shape[1])[None, :]
    out = sfft.ifft2(F * np.exp(2j * np.pi * 0.5 * (ky + kx))).real  # value at j + 0.5
    return np.clip(out, 0, None).astype(np.float32)


def reorder(frames: np.ndarray, angles: int, phases: int, order: str) -> np.ndarray:
    """Convert a block of A*P angle-major frames to ``order`` (or back: the same call)."""
    if order == "angle-major":
        return frames
    blk = frames.reshape(frames.shape[0] // (angles * phases), angles, phases, *frames.shape[1:])
    return blk.transpose(0, 2, 1, *range(3, blk.ndim)).reshape(frames.shape)


@dataclass
class SimResult:
    raw: np.ndarray  # (T*A*P, H, W) uint16
    widefield: np.ndarray  # (T, H, W) uint16, a single uniform-illumination exposure per t
    truth: np.ndarray  # (T, 2H, 2W) float32 on the SR grid
    patterns: list[Pattern]
    info: dict = field(default_factory=dict)


def simulate_movie(frames: int = 1, size: tuple[int, int] = (128, 128), seed: int = 0,
                   counts: float | None = None, optics: Optics | None = None,
                   structure: str = "mixed", angles: int = 3, phases: int = 3,
                   background: float = 10.0, read_noise: float = 1.5,
                   drift_px: float = 0.7) -> SimResult:
    """Simulate a SIM movie: raw stacks, wide-field exposures and the ground truth.

    Parameters
    ----------
    frames : int
        Time points T; the structure drifts by ``drift_px`` SR pixels per frame.
    size : (int, int)
        Camera frame shape (H, W).
    seed : int
        Everything is determined by the seed.
    counts : float or None
        Photon level S of one raw frame (and of each wide-field exposure),
        see :func:`snr`. None: 500 photons (SNR ~ 22).
    optics : Optics
        Default: 525 nm, NA 1.4, 80 nm camera pixels.
    structure : str
        See :func:`render_structure`.

    Examples
    --------
    >>> r = simulate_movie(frames=2, size=(32, 32), seed=1)
    >>> r.raw.shape, r.widefield.shape, r.truth.shape
    ((18, 32, 32), (2, 32, 32), (2, 64, 64))
    """
    optics = optics or Optics()
    counts = 500.0 if counts is None else float(counts)
    if counts <= 0:
        raise EmcsError(f"--counts must be positive, got {counts}")
    H, W = int(size[0]), int(size[1])
    if H < 16 or W < 16:
        raise EmcsError(f"frames of {H}x{W} pixels are too small for SIM (need at least 16x16)")
    rng = np.random.default_rng(seed)
    base = render_structure(structure, (2 * H, 2 * W), optics.pixel_nm / 2, rng)
    patterns = random_patterns(rng, optics, angles)
    direction = rng.uniform(0, 2 * np.pi)
    scale = None
    raws, wfs, truths = [], [], []
    F = sfft.fft2(base)
    ky = np.fft.fftfreq(2 * H)[:, None]
    kx = np.fft.fftfreq(2 * W)[None, :]
    for t in range(frames):
        dy, dx = t * drift_px * np.sin(direction), t * drift_px * np.cos(direction)
        gt = np.clip(sfft.ifft2(F * np.exp(-2j * np.pi * (ky * dy + kx * dx))).real, 0, None)
        wf_clean = clean_widefield(gt, optics)
        if scale is None:
            scale = counts / max(signal_level(wf_clean), 1e-12)
        raw_clean = clean_raw(gt, optics, patterns, phases) * scale
        raws.append(add_camera_noise(raw_clean, rng, background, read_noise))
        wfs.append(add_camera_noise(wf_clean * scale, rng, background, read_noise)[None])
        truths.append(shift_to_sr_grid(gt * scale)[None])
    info = {
        "optics": optics.to_dict(),
        "counts": counts,
        "snr": snr(counts, background, read_noise),
        "background_photons": background,
        "read_noise_e": read_noise,
        "camera_offset": CAMERA_OFFSET,
        "structure": structure,
        "angles": angles,
        "phases": phases,
        "order": "angle-major",
        "patterns": [p.to_dict() for p in patterns],
    }
    return SimResult(np.concatenate(raws), np.concatenate(wfs), np.concatenate(truths), patterns, info)


def widefield_path(out: str | os.PathLike) -> str:
    """``<stem>_widefield<suffix>`` next to ``out``."""
    out = os.fspath(out)
    stem, suffix = os.path.splitext(out)
    return f"{stem}_widefield{suffix}"


def write_sim_data(out, frames: int = 1, size: tuple[int, int] = (256, 256), seed: int = 0,
                   counts: float | None = None, truth=None, force: bool = False,
                   optics: Optics | None = None, structure: str = "mixed") -> dict:
    """Simulate a SIM movie and write it: raw stack, wide-field images, ground truth.

    Writes ``out`` (T*9 raw frames, uint16, angle-major order: frame
    ``t*9 + angle*3 + phase``), ``<stem>_widefield<suffix>`` (T single
    wide-field exposures at the same photon level as one raw frame) and, if
    ``truth`` is given, the ground truth (T frames, float32, on the 2x finer SR
    grid). Pixel sizes are stored (camera pixel, and half of it for the truth).

    Returns
    -------
    dict
        Files, shapes, pixel sizes (nm), optics, SNR and the pattern parameters.
    """
    from emcs.io import check_output, write_stack

    out = os.fspath(out)
    wf_out = widefield_path(out)
    for p in (out, wf_out) + ((os.fspath(truth),) if truth is not None else ()):
        check_output(p, force)
    if frames < 1:
        raise EmcsError(f"--frames must be at least 1, got {frames}")
    res = simulate_movie(frames, size, seed, counts, optics, structure)
    px = res.info["optics"]["pixel_nm"]
    write_stack(out, res.raw, pixel_size=px * 10.0, force=force)
    write_stack(wf_out, res.widefield, pixel_size=px * 10.0, force=force)
    files = {"raw": out, "widefield": wf_out}
    shapes = {"raw": list(res.raw.shape), "widefield": list(res.widefield.shape)}
    if truth is not None:
        write_stack(os.fspath(truth), res.truth, pixel_size=px * 5.0, force=force)
        files["truth"] = os.fspath(truth)
        shapes["truth"] = list(res.truth.shape)
    summary = {"files": files, "shapes": shapes,
               "pixel_size_nm": {"raw": px, "widefield": px, "truth": px / 2},
               "frames": frames, "seed": seed}
    summary.update(res.info)
    return summary
