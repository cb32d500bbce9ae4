"""In-situ HRTEM movies of Au nanoparticles on amorphous carbon (abTEM multislice + ASE).

Physics
-------
- Specimen: an FCC Au cluster from ``ase.cluster`` (icosahedron, decahedron or
  truncated octahedron, a few nm, random orientation) resting on an amorphous
  carbon film (random positions, 0.1 atoms/Å^3, 2.0 g/cm^3, 20-40 Å thick).
- Exit wave: abTEM plane-wave multislice, Lobato potential parametrisation,
  infinite projection, 2 Å slices, simulation sampling equal to the pixel size
  (or finer, then binned) on CPU with numpy's FFT (deterministic), synchronous dask.
- Objective lens (numpy, :func:`ctf_transfer`, abTEM's sign convention
  ``C10 = -defocus``): aperture, defocus, Cs, partial temporal coherence
  (focal spread) and partial spatial coherence (illumination semi-angle),
  quasi-coherent envelopes; image = |IFFT(FFT(psi) x CTF)|^2.
- Dynamics: stage drift (smooth path), slow particle rotation about a random
  axis, surface-atom hopping towards high-coordination sites (reshaping);
  for sintering, two particles approach, touch and grow a neck by the same
  surface diffusion (atoms leave low-coordination sites first).

Defaults (:data:`DEFAULTS`): 300 kV, NCSI (Cs = -20 µm, defocus = -80 Å, i.e.
near the negative-Cs Scherzer focus), 20 mrad objective aperture, 30 Å focal
spread, 0.2 mrad illumination semi-angle, 0.2 Å pixels.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from emcs.simulate.extras import configure_abtem, require
from emcs.simulate.motion import smooth_path
from emcs.simulate.optics import wavelength

__all__ = [
    "DEFAULTS",
    "ctf_transfer",
    "carbon_support",
    "exit_wave",
    "hrtem_movie",
    "tilt_series_exit_waves",
    "sintering_exit_waves",
]

DEFAULTS = {
    "kv": 300.0,
    "defocus": -80.0,  # Å, abTEM convention (C10 = -defocus); overfocus for negative Cs
    "cs": -2e5,  # Å (-20 µm), negative-Cs imaging
    "aperture": 20.0,  # mrad objective aperture
    "focal_spread": 30.0,  # Å r.m.s.
    "illumination": 0.2,  # mrad illumination semi-angle
    "pixel_size": 0.2,  # Å
    "support": 30.0,  # Å amorphous carbon
    "speed": 0.25,  # stage drift, pixels per frame
    "rotation": 0.3,  # particle rotation, degrees per frame
    "hops": 2.0,  # surface atoms moved per frame
}
NN_AU = 2.884  # Å nearest-neighbour distance in Au


def ctf_transfer(shape: tuple[int, int], sampling: float, kv: float, defocus: float, cs: float,
                 aperture: float, focal_spread: float = 0.0, illumination: float = 0.0) -> np.ndarray:
    """Objective-lens wave transfer function on the FFT grid (complex64, (H, W)).

    ``chi = 2 pi / lambda (C10 alpha^2 / 2 + C30 alpha^4 / 4)`` with ``C10 = -defocus``
    (abTEM's convention), a sharp aperture (mrad), the temporal envelope
    ``exp(-(pi lambda Delta k^2)^2 / 2)`` and the spatial envelope
    ``exp(-(theta / lambda)^2 (d chi / d k)^2 / (4 pi^2) ...)`` in the usual Gaussian form.
    """
    lam = wavelength(kv)
    ky = np.fft.fftfreq(shape[0], sampling)[:, None]
    kx = np.fft.fftfreq(shape[1], sampling)[None, :]
    k2 = ky**2 + kx**2
    k = np.sqrt(k2)
    alpha = lam * k
    c10 = -defocus
    chi = 2 * np.pi / lam * (c10 * alpha**2 / 2 + cs * alpha**4 / 4)
    h = np.exp(-1j * chi) * (alpha <= aperture * 1e-3)
    if focal_spread > 0:
        h = h * np.exp(-0.5 * (np.pi * lam * focal_spread * k2) ** 2)
    if illumination > 0:
        grad = c10 * lam * k + cs * lam**3 * k**3  # (1/2pi) d chi / d k
        h = h * np.exp(-((np.pi * illumination * 1e-3 / lam) ** 2) * grad**2)
    return h.astype(np.complex64)


def carbon_support(rng: np.random.Generator, extent: tuple[float, float], thickness: float,
                   z0: float = 2.0) -> np.ndarray:
    """Amorphous carbon atom positions (Å): uniformly random at 0.1 atoms/Å^3 (2.0 g/cm^3).

    Uniform positions have no projected order (a jittered grid would show its
    columns in projection); close pairs barely matter for the projected potential.
    """
    n = int(round(extent[0] * extent[1] * thickness * 0.1))
    pos = rng.uniform(0.0, 1.0, (n, 3)) * [extent[0], extent[1], thickness]
    pos[:, 2] += z0
    return pos


def _surface_hops(rng: np.random.Generator, pos: np.ndarray, n_hops: int, target: np.ndarray | None = None,
                  protect: float = 0.0) -> np.ndarray:
    """Move ``n_hops`` weakly bound surface atoms to well-coordinated surface sites.

    Removal picks among the atoms with the fewest neighbours (within 3.3 Å);
    the new site, next to a surface atom (near ``target`` if given), is the
    candidate with the most neighbours that keeps >= 2.55 Å from all atoms.
    """
    pos = pos.copy()
    for _ in range(n_hops):
        tree = cKDTree(pos)
        coord = np.array([len(n) - 1 for n in tree.query_ball_point(pos, 3.3)])
        surface = np.flatnonzero(coord < 10)
        if len(surface) < 4:
            break
        weak = surface[coord[surface] <= np.percentile(coord[surface], 20)]
        if target is not None and protect > 0:
            far = np.linalg.norm(pos[weak] - target, axis=1) > protect
            if far.any():
                weak = weak[far]
        src = int(rng.choice(weak))
        if target is not None:
            d = np.linalg.norm(pos[surface] - target, axis=1)
            hosts = surface[np.argsort(d)[: max(4, len(surface) // 8)]]
        else:
            hosts = surface
        hosts = rng.choice(hosts, size=min(12, len(hosts)), replace=False)
        vec = rng.normal(size=(len(hosts) * 8, 3))
        vec *= NN_AU / np.linalg.norm(vec, axis=1, keepdims=True)
        cand = np.repeat(pos[hosts], 8, axis=0) + vec
        others = np.delete(pos, src, axis=0)
        t2 = cKDTree(others)
        dmin, _ = t2.query(cand)
        ok = dmin >= 2.55
        if not ok.any():
            continue
        cand = cand[ok]
        nb = np.array([len(n) for n in t2.query_ball_point(cand, 3.3)])
        best = cand[int(np.argmax(nb + rng.uniform(0, 0.5, len(nb))))]
        pos[src] = best
    return pos


def _cluster(rng: np.random.Generator, max_diameter: float) -> tuple[np.ndarray, str]:
    from emcs.simulate.stem import random_cluster

    return random_cluster(rng, max_diameter=max_diameter, min_diameter=0.55 * max_diameter)


def exit_wave(au: np.ndarray, carbon: np.ndarray, extent: tuple[float, float], gpts: tuple[int, int],
              kv: float, support: float) -> np.ndarray:
    """abTEM exit wave (complex64 (gpts)) of Au atoms above a carbon film; positions in Å."""
    Atoms = require("ase", "the HRTEM kinds").Atoms
    abtem = configure_abtem()
    top = support + 4.0
    au = au.copy()
    au[:, 2] += top - au[:, 2].min()
    height = float(au[:, 2].max()) + 4.0
    symbols = ["Au"] * len(au) + ["C"] * len(carbon)
    atoms = Atoms(symbols, positions=np.concatenate([au, carbon]), cell=[extent[0], extent[1], height], pbc=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pot = abtem.Potential(atoms, gpts=tuple(int(g) for g in gpts), slice_thickness=2.0,
                              projection="infinite", parametrization="lobato")
        wave = abtem.PlaneWave(energy=kv * 1e3).multislice(pot)
        arr = wave.array
        if hasattr(arr, "compute"):
            arr = arr.compute()
    return np.asarray(arr, dtype=np.complex64)


def _axis_rotation(axis: np.ndarray, degrees: float) -> Rotation:
    return Rotation.from_rotvec(axis / np.linalg.norm(axis) * math.radians(degrees))


def tilt_series_exit_waves(rng: np.random.Generator, grid: int, sampling: float, n: int,
                           step_deg: float = 1.5, kv: float | None = None, on_wave=None):
    """Exit waves of one random particle on carbon at ``n`` orientations ``step_deg`` apart."""
    kv = DEFAULTS["kv"] if kv is None else kv
    ext = (grid * sampling, grid * sampling)
    pos, name = _cluster(rng, max_diameter=0.6 * ext[0])
    support = float(rng.uniform(20, 40))
    carbon = carbon_support(rng, ext, support)
    axis = rng.normal(size=3)
    axis[2] *= 0.3  # mostly tilts, a little in-plane rotation
    waves = np.empty((n, grid, grid), np.complex64)
    center = np.array([ext[0] / 2, ext[1] / 2, 0.0])
    for i in range(n):
        p = _axis_rotation(axis, i * step_deg).apply(pos) + center
        waves[i] = exit_wave(p, carbon, ext, (grid, grid), kv, support)
        if on_wave:
            on_wave()
    return waves, {"particle": name, "support_A": round(support, 1), "step_deg": step_deg}


def _sintering_states(rng: np.random.Generator, ext: tuple[float, float], n_states: int,
                      hops_per_state: int, approach_states: int, approach_rate: float = 0.25):
    """Atom positions of two particles approaching then sintering, ``n_states`` snapshots.

    The gap between the surfaces closes at ``approach_rate`` Å per state
    (starting at most 3-6 Å), then atoms diffuse into the neck.
    """
    d_max = 0.32 * min(ext)
    a, name_a = _cluster(rng, d_max)
    b, name_b = _cluster(rng, d_max)
    ra = np.ptp(a, axis=0).max() / 2
    rb = np.ptp(b, axis=0).max() / 2
    ang = rng.uniform(0, 2 * np.pi)
    u = np.array([math.cos(ang), math.sin(ang), 0.0])
    center = np.array([ext[0] / 2, ext[1] / 2, 0.0])
    gap0 = min(rng.uniform(3.0, 6.0), approach_rate * approach_states)
    states = []
    pos = None
    for s in range(n_states):
        if s <= approach_states:
            frac = s / max(approach_states, 1)
            # surfaces meet (gap ~ -1 Å: first contact) at the end of the approach
            sep = ra + rb + gap0 * (1 - frac) - 1.0 * frac
            pa = a + center - u * sep * rb / (ra + rb)
            pb = b + center + u * sep * ra / (ra + rb)
            pos = np.concatenate([pa, pb])
            # drop overlapping atoms of b at contact
            tree = cKDTree(pa)
            d, _ = tree.query(pb)
            pos = np.concatenate([pa, pb[d >= 2.4]])
        else:
            contact = center - u * (sep * rb / (ra + rb) - ra)
            pos = _surface_hops(rng, pos, hops_per_state, target=contact, protect=4.0)
        states.append(pos.copy())
    return states, {"particles": [name_a, name_b], "gap_A": round(float(gap0), 2)}


def sintering_exit_waves(rng: np.random.Generator, grid: int, sampling: float, n: int, kv: float | None = None,
                         on_wave=None):
    """Exit waves of ``n`` stages of two particles sintering on carbon."""
    kv = DEFAULTS["kv"] if kv is None else kv
    ext = (grid * sampling, grid * sampling)
    support = float(rng.uniform(20, 40))
    carbon = carbon_support(rng, ext, support)
    states, meta = _sintering_states(rng, ext, n, hops_per_state=12, approach_states=n // 3,
                                    approach_rate=2.0)
    waves = np.empty((n, grid, grid), np.complex64)
    for i, pos in enumerate(states):
        waves[i] = exit_wave(pos, carbon, ext, (grid, grid), kv, support)
        if on_wave:
            on_wave()
    return waves, meta


def hrtem_movie(kind: str, rng: np.random.Generator, frames: int, size: tuple[int, int],
                pixel_size: float | None = None, kv: float | None = None, defocus: float | None = None,
                cs: float | None = None, aperture: float | None = None, focal_spread: float | None = None,
                illumination: float | None = None, support: float | None = None, speed: float | None = None,
                rotation: float | None = None, hops: float | None = None, progress=None):
    """Simulate an HRTEM movie frame by frame with abTEM (see the module docstring).

    Parameters
    ----------
    kind : {"hrtem-particle", "hrtem-sintering"}
    rng, frames, size
    pixel_size : float
        Å per output pixel (default 0.2). Simulated at this sampling, or at an
        integer fraction of it (binned) when coarser than 0.25 Å.
    kv, defocus, cs, aperture, focal_spread, illumination
        Microscope: kV, Å (abTEM convention), Å, mrad, Å, mrad.
    support : float
        Carbon film thickness (Å).
    speed : float
        Stage drift (pixels/frame).
    rotation : float
        Particle rotation (degrees/frame).
    hops : float
        Surface atoms moved per frame (reshaping / neck growth).
    progress : callable, optional
        Called after each frame.

    Returns
    -------
    clean : ndarray (T, H, W) float32
        Image intensity divided by its maximum over the movie (vacuum ~ 1/max).
    pixel_size : float
    meta : dict
    """
    from emcs.errors import EmcsError

    d = DEFAULTS
    p = d["pixel_size"] if pixel_size is None else float(pixel_size)
    kv = d["kv"] if kv is None else float(kv)
    defocus = d["defocus"] if defocus is None else float(defocus)
    cs = d["cs"] if cs is None else float(cs)
    aperture = d["aperture"] if aperture is None else float(aperture)
    focal = d["focal_spread"] if focal_spread is None else float(focal_spread)
    illum = d["illumination"] if illumination is None else float(illumination)
    support = d["support"] if support is None else float(support)
    speed = d["speed"] if speed is None else float(speed)
    rotation = d["rotation"] if rotation is None else float(rotation)
    hops = d["hops"] if hops is None else float(hops)
    if not 0.02 <= p <= 2.0:
        raise EmcsError(f"HRTEM pixel size must be between 0.02 and 2 Å, got {p}")
    if kv <= 0 or aperture <= 0 or support < 0 or focal < 0 or illum < 0:
        raise EmcsError("kV and aperture must be positive; support, focal spread, illumination >= 0")
    h, w = size
    binning = max(1, math.ceil(p / 0.25 - 1e-9))
    samp = p / binning
    max_angle = wavelength(kv) / (2 * samp) * 2 / 3 * 1e3
    if aperture > max_angle:
        raise EmcsError(f"objective aperture {aperture} mrad exceeds the simulated angular range "
                        f"{max_angle:.1f} mrad at {samp:.3f} Å sampling; use a smaller aperture or pixel size")
    gh, gw = h * binning, w * binning
    ext = (gh * samp, gw * samp)
    # the specimen is simulated in a window that drifts over a larger carbon film
    drift = smooth_path(rng, frames, speed * p, 2)
    drift -= drift.mean(axis=0)
    margin = np.abs(drift).max(axis=0) + 2.0
    film_ext = (ext[0] + 2 * margin[0], ext[1] + 2 * margin[1])
    film = carbon_support(rng, film_ext, support)
    axis = rng.normal(size=3)
    axis[2] *= 0.5
    if kind == "hrtem-sintering":
        n_approach = max(1, int(frames * 0.35))
        states, info = _sintering_states(rng, ext, frames, hops_per_state=max(1, int(round(hops * 2))),
                                         approach_states=n_approach)
    else:
        base, name = _cluster(rng, max_diameter=0.6 * min(ext))
        info = {"particle": name}
        states = []
        pos = base
        acc = 0.0
        for _ in range(frames):
            acc += hops
            k = int(acc)
            acc -= k
            if k:
                pos = _surface_hops(rng, pos, k)
            states.append(pos)
    ctf = ctf_transfer((gh, gw), samp, kv, defocus, cs, aperture, focal, illum)
    center = np.array([ext[0] / 2, ext[1] / 2, 0.0])
    # the particle also moves a little on the support (besides the stage drift)
    wander = smooth_path(rng, frames, 0.05, 2)
    origin = states[0].mean(axis=0) if kind == "hrtem-particle" else center
    out = np.empty((frames, h, w), np.float32)
    for t in range(frames):
        spec = states[t] - origin
        rot = _axis_rotation(axis, rotation * t)
        au = rot.apply(spec) + center
        au[:, :2] += wander[t] + drift[t]
        c = film.copy()
        c[:, 0] -= margin[0] - drift[t, 0]
        c[:, 1] -= margin[1] - drift[t, 1]
        keep = (c[:, 0] >= 0) & (c[:, 0] < ext[0]) & (c[:, 1] >= 0) & (c[:, 1] < ext[1])
        psi = exit_wave(au, c[keep], ext, (gh, gw), kv, support)
        img = np.fft.ifft2(np.fft.fft2(psi) * ctf)
        inten = (img.real**2 + img.imag**2).astype(np.float32)
        if binning > 1:
            inten = inten.reshape(h, binning, w, binning).mean(axis=(1, 3))
        out[t] = inten
        if progress:
            progress()
    out /= out.max()
    meta = {"scene": info, "model": "abTEM multislice (Lobato, infinite projection, 2 Å slices) + numpy CTF",
            "kv": kv, "defocus_A": defocus, "cs_A": cs, "aperture_mrad": aperture, "focal_spread_A": focal,
            "illumination_mrad": illum, "support_A": support, "simulation_sampling_A": samp,
            "binning": binning, "drift_px_per_frame": speed, "rotation_deg_per_frame": rotation,
            "hops_per_frame": hops}
    return out, p, meta
