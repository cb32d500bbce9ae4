"""Simulated fluorescence (SIM) data: procedural structures, raw 3x3 SIM stacks, wide-field images.

The structures (:func:`render_structure`) are imaged by the SIM forward model of
:mod:`emcs.sim.forward` (illumination patterns, OTF, 2x2 binning) and recorded by the
one camera model (:func:`emcs.simulate.detector.camera_counts`: Poisson + Gaussian read
noise + an offset, uint16). :func:`noisy_widefield` makes the noisy inputs of the
VDL-SIM training pairs.

The forward-model names (``random_patterns``, ``clean_raw``, ``clean_widefield``,
``signal_level``, ``snr``, ``reorder``) are imported here from :mod:`emcs.sim.forward`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from emcs.errors import EmcsError
from emcs.sim.forward import (  # noqa: F401  (the forward model, re-exported for the generators' users)
    CAMERA_OFFSET,
    Pattern,
    clean_raw,
    clean_widefield,
    random_patterns,
    reorder,
    shift_to_sr_grid,
    signal_level,
    snr,
)
from emcs.sim.otf import Optics
from emcs.simulate.detector import camera_counts
from emcs.simulate.render import add_points

STRUCTURES = ("filaments", "tubules", "mesh", "vesicles")


# ----------------------------------------------------------------------------- structures
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
        add_points(img, ys, xs, w)
        if rng.random() < bundle_p:  # a parallel neighbour 80-200 nm away (at 40 nm px: 2-5 px)
            d = rng.uniform(2.0, 5.0) * rng.choice([-1, 1])
            add_points(img, ys + d * np.cos(theta), xs - d * np.sin(theta), w * rng.uniform(0.6, 1.0))


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
        add_points(img, c[:, 0], c[:, 1], w)
    add_points(img, pts[:, 0], pts[:, 1], rng.uniform(0.5, 2.0, n))  # junctions


def _draw_vesicles(img, rng, um, area):
    H, W = img.shape
    n = max(2, int(area * rng.uniform(0.3, 1.0)))
    for _ in range(n):
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        r = rng.uniform(0.05, 0.3) * um
        if rng.random() < 0.6:  # ring
            t = np.linspace(0, 2 * np.pi, max(8, int(4 * np.pi * r)), endpoint=False)
            w = np.full(t.shape, 0.5 * rng.uniform(0.4, 1.0))
            add_points(img, cy + r * np.sin(t), cx + r * np.cos(t), w)
        else:  # filled spot
            m = max(4, int(np.pi * r * r))
            rr, tt = r * np.sqrt(rng.random(m)), rng.uniform(0, 2 * np.pi, m)
            add_points(img, cy + rr * np.sin(tt), cx + rr * np.cos(tt), np.full(m, rng.uniform(0.1, 0.4)))


# ----------------------------------------------------------------------------- camera
def add_camera_noise(signal_photons: np.ndarray, rng, background: float = 10.0,
                     read_noise: float = 1.5, offset: float = CAMERA_OFFSET) -> np.ndarray:
    """Poisson shot noise + Gaussian read noise + offset, as uint16 counts (gain 1)."""
    lam = np.clip(signal_photons, 0, None) + background
    return camera_counts(lam, rng, readout_noise=read_noise, offset=offset, dtype=np.uint16)


def noisy_widefield(clean: np.ndarray, rng, photons: float | None = None) -> np.ndarray:
    """A noisy camera frame (float32 counts) from a clean wide-field image (p99 = 1).

    ``photons`` (default log-uniform 2..3000) scales the image, a background of 1-30
    photons and, half of the time, an out-of-focus haze are added, then Poisson noise
    and read noise (r.m.s. 0.8-3, drawn after the photon counts) on a 100-count offset.
    """
    S = photons if photons is not None else float(np.exp(rng.uniform(np.log(2.0), np.log(3000.0))))
    B = rng.uniform(1.0, 30.0)
    lam = clean * S + B
    if rng.random() < 0.5:  # out-of-focus haze
        lam = lam + rng.uniform(0.0, 0.4) * S * ndimage.gaussian_filter(clean, 12.0)
    counts = camera_counts(np.clip(lam, 0, None), rng, dtype=np.uint32)
    counts = counts + rng.normal(CAMERA_OFFSET, rng.uniform(0.8, 3.0), clean.shape)
    return counts.astype(np.float32)


def out_of_focus_light(layer: np.ndarray, optics: Optics, patterns: list[Pattern], mean_photons: float,
                       defocus_um: float = 1.0, phases: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Raw frames (A*P, H, W) and wide-field image (H, W) of an out-of-focus layer, in photons.

    ``layer`` (SR grid) lies ``defocus_um`` away from the focal plane and is lit by the
    same (z-invariant, 2-beam) pattern; its image is blurred by the defocused OTF
    (:func:`emcs.sim.otf.defocus_attenuation`), which keeps little of the pattern's
    modulation, so it reaches the camera as smooth, weakly modulated haze of mean
    ``mean_photons`` per pixel -- light that a 2-D Wiener reconstruction cannot
    reject and whose shot noise it amplifies.
    """
    wf = clean_widefield(layer, optics, defocus_um)
    gain = mean_photons / max(float(wf.mean()), 1e-12)
    return clean_raw(layer, optics, patterns, phases, defocus_um) * gain, wf * gain


def _check_out_of_focus(out_of_focus: float, defocus_um: float) -> None:
    """Out-of-focus haze parameters of :func:`simulate_movie`, in parameter words."""
    if not (np.isfinite(out_of_focus) and out_of_focus >= 0):
        raise EmcsError(f"out_of_focus must be a finite fraction >= 0 of the in-focus counts, "
                        f"got {out_of_focus}", param="out_of_focus")
    if not (np.isfinite(defocus_um) and defocus_um > 0):
        raise EmcsError(f"defocus_um must be a positive distance in um, got {defocus_um}",
                        param="defocus_um")


@dataclass
class SimMovie:
    """A simulated SIM movie (see :func:`simulate_movie`)."""

    raw: np.ndarray  # (T*A*P, H, W) uint16
    widefield: np.ndarray  # (T, H, W) uint16, a single uniform-illumination exposure per t
    truth: np.ndarray  # (T, 2H, 2W) float32 on the SR grid
    patterns: list[Pattern]
    info: dict = field(default_factory=dict)


def simulate_movie(frames: int = 1, size: tuple[int, int] = (128, 128), seed: int = 0,
                   counts: float | None = None, optics: Optics | None = None,
                   structure: str = "mixed", angles: int = 3, phases: int = 3,
                   background: float = 10.0, read_noise: float = 1.5,
                   drift_px: float = 0.7, out_of_focus: float = 0.0,
                   defocus_um: float = 1.0) -> SimMovie:
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
    out_of_focus : float
        Mean out-of-focus haze per pixel as a fraction of ``counts``: a second
        (mixed) structure ``defocus_um`` out of focus, :func:`out_of_focus_light`
        (0: none; drawn from its own random stream, so the in-focus structure and
        patterns are the same).
    defocus_um : float
        Distance of the out-of-focus layer from the focal plane, um (> 0; used only
        when ``out_of_focus`` > 0). At 1 um it keeps under 1 % of the pattern's
        modulation (:func:`emcs.sim.otf.defocus_attenuation`).

    Examples
    --------
    >>> r = simulate_movie(frames=2, size=(32, 32), seed=1)
    >>> r.raw.shape, r.widefield.shape, r.truth.shape
    ((18, 32, 32), (2, 32, 32), (2, 64, 64))
    """
    optics = optics or Optics()
    counts = 500.0 if counts is None else float(counts)
    if counts <= 0:
        raise EmcsError(f"counts must be positive, got {counts}", param="counts")
    _check_out_of_focus(out_of_focus, defocus_um)
    H, W = int(size[0]), int(size[1])
    if H < 16 or W < 16:
        raise EmcsError(f"frames of {H}x{W} pixels are too small for SIM (need at least 16x16)")
    rng = np.random.default_rng(seed)
    base = render_structure(structure, (2 * H, 2 * W), optics.pixel_nm / 2, rng)
    patterns = random_patterns(rng, optics, angles)
    direction = rng.uniform(0, 2 * np.pi)
    scale = None
    raws, wfs, truths = [], [], []
    haze_raw, haze_wf = 0.0, 0.0
    if out_of_focus > 0:
        layer = render_structure("mixed", (2 * H, 2 * W), optics.pixel_nm / 2,
                                 np.random.default_rng([seed, 1]))
        haze_raw, haze_wf = out_of_focus_light(layer, optics, patterns, out_of_focus * counts,
                                               defocus_um, phases)
    F = sfft.fft2(base)
    ky = np.fft.fftfreq(2 * H)[:, None]
    kx = np.fft.fftfreq(2 * W)[None, :]
    for t in range(frames):
        dy, dx = t * drift_px * np.sin(direction), t * drift_px * np.cos(direction)
        gt = np.clip(sfft.ifft2(F * np.exp(-2j * np.pi * (ky * dy + kx * dx))).real, 0, None)
        wf_clean = clean_widefield(gt, optics)
        if scale is None:
            scale = counts / max(signal_level(wf_clean), 1e-12)
        raw_clean = clean_raw(gt, optics, patterns, phases) * scale + haze_raw
        raws.append(add_camera_noise(raw_clean, rng, background, read_noise))
        wfs.append(add_camera_noise(wf_clean * scale + haze_wf, rng, background, read_noise)[None])
        truths.append(shift_to_sr_grid(gt * scale)[None])
    info = {
        "optics": optics.to_dict(),
        "counts": counts,
        "snr": snr(counts, background, read_noise),
        "background_photons": background,
        "read_noise_e": read_noise,
        "camera_offset": CAMERA_OFFSET,
        "structure": structure,
        "out_of_focus": {"fraction": out_of_focus, "mean_photons": out_of_focus * counts,
                         "defocus_um": defocus_um} if out_of_focus > 0 else None,
        "angles": angles,
        "phases": phases,
        "order": "angle-major",
        "patterns": [p.to_dict() for p in patterns],
    }
    return SimMovie(np.concatenate(raws), np.concatenate(wfs), np.concatenate(truths), patterns, info)


def widefield_path(out: str | os.PathLike) -> str:
    """``<stem>_widefield<suffix>`` next to ``out``."""
    out = os.fspath(out)
    stem, suffix = os.path.splitext(out)
    return f"{stem}_widefield{suffix}"


def write_sim_data(out, frames: int = 1, size: tuple[int, int] = (256, 256), seed: int = 0,
                   counts: float | None = None, truth=None, force: bool = False,
                   optics: Optics | None = None, structure: str = "mixed",
                   out_of_focus: float = 0.0, defocus_um: float = 1.0) -> dict:
    """Simulate a SIM movie and write it: raw stack, wide-field images, ground truth.

    Writes ``out`` (T*9 raw frames, uint16, angle-major order: frame
    ``t*9 + angle*3 + phase``), ``<stem>_widefield<suffix>`` (T single
    wide-field exposures at the same photon level as one raw frame) and, if
    ``truth`` is given, the ground truth (T frames, float32, on the 2x finer SR
    grid). Pixel sizes are stored (camera pixel, and half of it for the truth).
    ``out_of_focus`` and ``defocus_um`` add out-of-focus haze (see
    :func:`simulate_movie`); the truth holds the in-focus structure only.

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
        raise EmcsError(f"frames must be at least 1, got {frames}", param="frames")
    res = simulate_movie(frames, size, seed, counts, optics, structure,
                         out_of_focus=out_of_focus, defocus_um=defocus_um)
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
