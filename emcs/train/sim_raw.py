"""Training data of ``emcs train sim --input raw``: simulated raw SIM stacks, drawn fresh every step.

Each sample (:meth:`RawSampler.sample`):

- the object: a patch of a procedural structure from a cached pool
  (:func:`structure_pool`; filaments, tubules, vesicles and their mixtures -- one family,
  by default the ER-like ``mesh``, is held out for the benchmark), randomly rotated
  and flipped, on the 2x grid;
- illumination: 3 angles x 3 phases, orientation, per-angle angle (+-3 deg), |k|
  (0.72-0.88 f_c, +-3 % per angle), modulation (0.45-0.9, +-0.1) and phases drawn
  around the user's optics (:func:`emcs.sim.forward.random_patterns`);
- out-of-focus light in 80 % of the samples: another structure 0.5-2.5 um out of focus,
  mean 0-1.5 x the in-focus signal level
  (:func:`emcs.simulate.fluorescence.out_of_focus_light`);
- camera: SNR (:func:`emcs.sim.forward.snr`, in-focus signal) log-uniform in 1-100,
  background 2-30 photons, read noise 0.8-3 e-, Poisson + Gaussian, offset 100, uint16;
- input: the front-end channels of :func:`emcs.sim.rawnet.features` computed with the
  true pattern parameters disturbed as the estimator errs at low SNR (|k| +-0.2 %,
  orientation +-0.1 deg, phase +-0.15 rad, modulation x 0.6-1.1) -- estimating them
  for every sample would cost ~1 s each;
- target: the object itself on the 2x grid (in the input's normalised units), not a
  band-limited copy: the benchmark scores against the object, and the loss's optimum
  is then the best estimate of the object the data allow.

The loss leaves out ``border`` camera pixels at the patch edges (the front-end tapers them).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from emcs.errors import EmcsError
from emcs.sim.otf import Optics, check_sr_grid
from emcs.simulate import fluorescence as sm

__all__ = ["HELD_OUT", "RawSampler", "make_sample", "raw_data", "structure_pool", "training_kinds"]

#: the structure family left out of training by default (the benchmark tests on it)
HELD_OUT = "mesh"


def training_kinds(held_out: str | None) -> tuple[str, ...]:
    """Structure families drawn for training (all but ``held_out``)."""
    return tuple(k for k in sm.STRUCTURES if k != held_out)


def _render(kinds: tuple[str, ...], size: int, optics: Optics, rng) -> np.ndarray:
    """One structure of a training family, or (30 %) a mixture of two."""
    n = 2 if len(kinds) > 1 and rng.random() < 0.3 else 1
    picks = rng.choice(len(kinds), size=n, replace=False)
    img = sum(sm.render_structure(kinds[i], (size, size), optics.pixel_nm / 2, rng) for i in picks)
    return (img / max(float(img.max()), 1e-12)).astype(np.float32)


def structure_pool(path: str, n: int, size: int = 256, held_out: str | None = HELD_OUT, seed: int = 2000,
                   optics: Optics | None = None, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """``n`` structures (n, size, size) on the 2x grid, cached in the .npz file ``path``."""
    optics = optics or Optics()
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as z:
            if len(z["pool"]) >= n and z["pool"].shape[1] == size:
                return z["pool"][:n]
    kinds = training_kinds(held_out)
    out = []
    for i in range(n):
        out.append(_render(kinds, size, optics, np.random.default_rng(seed + i)))
        if progress:
            progress(1)
    pool = np.asarray(out)
    tmp = path + ".part.npz"
    np.savez(tmp, pool=pool)
    os.replace(tmp, path)
    return pool


def _crop(img: np.ndarray, size: int, rng) -> np.ndarray:
    y0 = int(rng.integers(0, img.shape[0] - size + 1))
    x0 = int(rng.integers(0, img.shape[1] - size + 1))
    out = np.rot90(img[y0:y0 + size, x0:x0 + size], int(rng.integers(4)))
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


def _photons_for_snr(value: float, background: float, read_noise: float) -> float:
    """The signal S with S / sqrt(S + B + sigma^2) = value."""
    v2 = value * value
    return 0.5 * (v2 + np.sqrt(v2 * v2 + 4 * v2 * (background + read_noise**2)))


def _as_estimated(patterns, rng):
    """The true patterns disturbed about as much as the estimator errs at low SNR."""
    out = []
    for p in patterns:
        f = 1 + rng.normal(0, 0.002)
        th = np.radians(rng.normal(0, 0.1))
        ky = f * (p.ky * np.cos(th) + p.kx * np.sin(th))
        kx = f * (p.kx * np.cos(th) - p.ky * np.sin(th))
        out.append(sm.Pattern(float(ky), float(kx), float(p.phase + rng.normal(0, 0.15)),
                              float(p.modulation * rng.uniform(0.6, 1.1))))
    return out


def make_sample(obj: np.ndarray, layer: np.ndarray | None, rng, optics: Optics,
                snr_range: tuple[float, float] = (1.0, 100.0)):
    """(input channels, target) of one object patch (2p, 2p) on the 2x grid (see the module notes)."""
    from emcs.sim.rawnet import features, normalise

    patterns = sm.random_patterns(rng, optics, k_rel=rng.uniform(0.72, 0.88), modulation=rng.uniform(0.45, 0.9))
    background, read_noise = rng.uniform(2.0, 30.0), rng.uniform(0.8, 3.0)
    level = float(np.exp(rng.uniform(*np.log(snr_range))))
    S = _photons_for_snr(level, background, read_noise)
    scale = S / max(sm.signal_level(sm.clean_widefield(obj, optics)), 1e-12)
    raw = sm.clean_raw(obj, optics, patterns) * scale
    if layer is not None:
        raw = raw + sm.out_of_focus_light(layer, optics, patterns, rng.uniform(0.0, 1.5) * S,
                                          rng.uniform(0.5, 2.5))[0]
    counts = sm.add_camera_noise(raw, rng, background, read_noise).astype(np.float64)
    p = obj.shape[0] // 2
    feats, _, _ = features(counts.reshape(3, 3, p, p), optics, _as_estimated(patterns, rng))
    x, norm = normalise(feats)
    return x, (sm.shift_to_sr_grid(obj * scale) / norm).astype(np.float32)


class RawSampler:
    """Batches of (input channels, target) drawn from a structure pool.

    Parameters
    ----------
    pool : array (N, S, S)
        Structures on the 2x grid (:func:`structure_pool`).
    patch : int
        Patch edge in camera pixels (the 2x grid patch is twice that).
    batch : int
    seed : int
    border : int
        Camera pixels at each patch edge left out of the loss.
    """

    def __init__(self, pool: np.ndarray, patch: int = 64, batch: int = 8, seed: int = 0, border: int = 8,
                 optics: Optics | None = None, snr_range: tuple[float, float] = (1.0, 100.0),
                 haze_p: float = 0.8):
        self.pool, self.patch, self.batch = pool, int(patch), int(batch)
        self.border = 2 * int(border)  # on the 2x grid
        self.optics = optics or Optics()
        self.snr_range, self.haze_p = snr_range, haze_p
        self.rng = np.random.default_rng(seed)

    def sample(self):
        xs, ys = [], []
        for _ in range(self.batch):
            obj = _crop(self.pool[int(self.rng.integers(len(self.pool)))], 2 * self.patch, self.rng)
            layer = None
            if self.rng.random() < self.haze_p:
                layer = _crop(self.pool[int(self.rng.integers(len(self.pool)))], 2 * self.patch, self.rng)
            x, y = make_sample(obj, layer, self.rng, self.optics, self.snr_range)
            xs.append(x)
            ys.append(y[None])
        return np.asarray(xs, np.float32), np.asarray(ys, np.float32)


def check_optics(optics: Optics) -> Optics:
    """``optics`` if its numbers are physical and its OTF fits the 2x grid; else :class:`EmcsError`
    naming the parameter (``wavelength``, ``na``, ``pixel_size``)."""
    for param, value in (("wavelength", optics.wavelength_nm), ("na", optics.na),
                         ("pixel_size", optics.pixel_nm)):
        if not (np.isfinite(value) and value > 0):
            raise EmcsError(f"{param} must be a positive number, got {value}", param=param)
    return check_sr_grid(optics)


def raw_data(cfg, work: str, hold_out: str | None = HELD_OUT,
             progress: Callable[[int], None] | None = None,
             optics: Optics | None = None) -> tuple[RawSampler, dict]:
    """The sampler of a :class:`emcs.train.sim.SimConfig` run and the card's description of its data.

    ``cfg.pool`` structures of ``2 * max(cfg.pool_size, cfg.patch + 16)`` SR pixels are
    rendered once (cached in ``work``) at half the camera pixel of ``optics`` (default
    :class:`~emcs.sim.otf.Optics`: 525 nm, NA 1.4, 80 nm); the raw stacks are simulated
    with these optics (train at yours: the card records them, and ``emcs sim-recon``
    notes optics far from them).
    """
    if hold_out is not None and hold_out not in sm.STRUCTURES:
        raise EmcsError(f"hold_out must be one of {', '.join(sm.STRUCTURES)} or none, got {hold_out!r}",
                        param="hold_out")
    optics = check_optics(optics or Optics())
    size = 2 * max(cfg.pool_size, cfg.patch + 16)
    path = os.path.join(work, f"structures{size}-{hold_out or 'none'}-{optics.pixel_nm:g}nm.npz")
    pool = structure_pool(path, cfg.pool, size, hold_out, optics=optics, progress=progress)
    sampler = RawSampler(pool, cfg.patch, cfg.batch, cfg.seed, optics=optics)
    return sampler, {"optics": optics.to_dict(), "training_data": {
        "source": "simulated raw SIM stacks drawn fresh every step (emcs.train.sim_raw)",
        "structures": f"{cfg.pool} procedural structures of {size}x{size} SR px (families "
                      f"{', '.join(training_kinds(hold_out))} and mixtures of two)",
        "held_out_family": hold_out,
        "optics": f"{optics.wavelength_nm:g} nm emission, NA {optics.na:g}, {optics.pixel_nm:g} nm camera "
                  f"pixels ({optics.pixel_nm / 2:g} nm SR pixels), 3 angles x 3 phases",
        "patterns": "|k| 0.72-0.88 f_c (+-3 % per angle), orientation random (+-3 deg per angle), "
                    "modulation 0.45-0.9 (+-0.1), random phases; the front-end is given the true "
                    "parameters disturbed like the estimator's errors",
        "snr_range": list(sampler.snr_range),
        "camera": "Poisson + Gaussian read noise 0.8-3 e-, background 2-30 photons, offset 100",
        "out_of_focus": f"{sampler.haze_p:.0%} of samples: a second structure 0.5-2.5 um out of focus, "
                        "mean 0-1.5 x the in-focus signal (emcs.simulate.fluorescence.out_of_focus_light)",
        "target": "the object on the 2x grid (emcs.sim.forward.shift_to_sr_grid)",
        "patch": f"{cfg.patch}x{cfg.patch} camera px, loss without a {sampler.border // 2}-px border"}}
