"""Recipe of ``emcs train sim``: the VDL-SIM network, simulated pairs or a user's pairs.

``--input raw`` trains the raw-input network (:mod:`emcs.sim.rawnet`) instead, on raw
stacks simulated fresh at every step (:mod:`emcs.train.sim_raw`); the loop, budgets,
checkpoints and card are the same.

Training pairs (as in the paper, with simulated instead of BioSR data):

- input: a wide-field frame of a procedural structure (filaments, tubules, mesh,
  vesicles; :mod:`emcs.simulate.fluorescence`) with Poisson + read noise added on the
  fly at a random photon level (2..3000 photons, SNR ~1-55,
  :func:`emcs.simulate.fluorescence.noisy_widefield`), a random background and
  sometimes a smooth out-of-focus haze;
- target: the Wiener SIM reconstruction (:func:`emcs.sim.wiener.reconstruct`,
  parameters estimated from the data) of a high-SNR simulated raw stack of the same
  structure (3000 photons per raw frame), after rolling-ball background removal
  (radius 5 SR pixels).

The Wiener reconstructions are the expensive part, so a pool of clean wide-field
images and targets is computed once (:func:`build_pool`, cached in the work folder)
and noisy patches are drawn from it at every step. The loop is
:func:`emcs.train.loop.run` (linear warm-up over min(100, steps / 10) steps, then a
cosine decay to 1 % over the remaining steps, L1 loss, no gradient clipping); the
checkpoint is ``checkpoint.pt`` in the work folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from emcs.errors import EmcsError
from emcs.sim.otf import Optics
from emcs.simulate.fluorescence import noisy_widefield

__all__ = ["POOL_KINDS", "PairSampler", "SimConfig", "build_pool", "make_pair", "train"]

POOL_KINDS = ("filaments", "filaments", "filaments", "tubules", "tubules", "mesh", "vesicles", "mixed", "mixed")


# ----------------------------------------------------------------------------- pool
def make_pair(seed: int, size: int = 160, optics: Optics | None = None, counts: float = 3000.0,
              wiener: float = 0.05, radius: float = 5.0, kind: str | None = None):
    """One training pair: clean wide-field (size, size) and target (2 size, 2 size).

    Both are normalised so the wide-field's 99th percentile is 1. ``kind`` ends
    in ``*`` when parameter estimation missed and the known parameters were used.
    """
    from emcs.sim.background import remove_background
    from emcs.sim.wiener import WienerSettings, reconstruct
    from emcs.simulate import fluorescence as sm

    optics = optics or Optics()
    rng = np.random.default_rng(seed)
    kind = kind or POOL_KINDS[rng.integers(len(POOL_KINDS))]
    gt = sm.render_structure(kind, (2 * size, 2 * size), optics.pixel_nm / 2, rng)
    patterns = sm.random_patterns(rng, optics)
    wf = sm.clean_widefield(gt, optics)
    scale = counts / max(sm.signal_level(wf), 1e-12)
    raw = sm.add_camera_noise(sm.clean_raw(gt, optics, patterns) * scale, rng)
    settings = WienerSettings(wiener=wiener)
    sr, est, _ = reconstruct(raw.reshape(3, 3, size, size), optics, settings=settings)
    # a simulation knows the truth: a missed pattern (|k| off by > 0.05/um) would
    # teach the network reconstruction artefacts, so redo it with the true parameters
    missed = any(min(np.hypot(e.ky - p.ky, e.kx - p.kx), np.hypot(e.ky + p.ky, e.kx + p.kx)) > 0.05
                 for e, p in zip(est, patterns, strict=False))
    if missed:
        sr, _, _ = reconstruct(raw.reshape(3, 3, size, size), optics, patterns, settings)
    sr = remove_background(sr, radius)
    return (wf * scale / counts).astype(np.float32), (sr / counts).astype(np.float32), kind + ("*" if missed else "")


def build_pool(path: str, n: int, size: int = 160, seed: int = 1000,
               progress: Callable[[int], None] | None = None, first: int = 0, **kw) -> dict:
    """Compute (or extend) a cached pool of pairs ``first..n-1`` in the .npz file ``path``."""
    wfs, srs, kinds = [], [], []
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as z:
            wfs, srs, kinds = list(z["wf"]), list(z["sr"]), list(z["kind"])
    for i in range(first + len(wfs), n):
        wf, sr, kind = make_pair(seed + i, size, **kw)
        wfs.append(wf)
        srs.append(sr)
        kinds.append(kind)
        if progress:
            progress(1)
        if (i + 1) % 20 == 0 or i + 1 == n:
            tmp = path + ".part.npz"
            np.savez(tmp, wf=np.asarray(wfs), sr=np.asarray(srs), kind=np.asarray(kinds))
            os.replace(tmp, path)
    n = n - first
    return {"wf": np.asarray(wfs[:n]), "sr": np.asarray(srs[:n]), "kind": np.asarray(kinds[:n])}


# ----------------------------------------------------------------------------- sampling
def _augment(lr: np.ndarray, sr: np.ndarray, rng):
    """Random transpose/flips that keep the SR grid aligned (SR pixel 2i = camera pixel i)."""
    if rng.random() < 0.5:
        lr, sr = lr.T, sr.T
    for ax in (0, 1):
        if rng.random() < 0.5:
            lr = np.flip(lr, ax)
            sr = np.roll(np.flip(sr, ax), -1, axis=ax)
    return np.ascontiguousarray(lr), np.ascontiguousarray(sr)


class PairSampler:
    """Draw normalised (input, target) patch batches.

    Parameters
    ----------
    wf, sr : arrays (N, H, W) and (N, 2H, 2W)
        Wide-field images and targets.
    simulated : bool
        True: ``wf`` are clean (p99 = 1) and noise is added per draw; False:
        ``wf`` are a user's measured frames used as they are.
    """

    def __init__(self, wf: np.ndarray, sr: np.ndarray, patch: int = 48, batch: int = 8,
                 seed: int = 0, simulated: bool = True, margin: int = 12):
        from emcs.sim.net import normalisation

        self.wf, self.sr = wf, sr
        self.patch, self.batch, self.simulated = patch, batch, simulated
        self.margin = margin if wf.shape[1] >= patch + 2 * margin + 2 else 0
        self.rng = np.random.default_rng(seed)
        self.sr_norm = [normalisation(s) for s in sr]
        if wf.shape[1] < patch or wf.shape[2] < patch:
            raise EmcsError(f"training frames of {wf.shape[1]}x{wf.shape[2]} are smaller than the "
                            f"{patch}x{patch} patch")

    def sample(self):
        from emcs.sim.net import normalisation

        xs, ys = [], []
        p, m = self.patch, self.margin
        for _ in range(self.batch):
            i = int(self.rng.integers(len(self.wf)))
            frame = noisy_widefield(self.wf[i], self.rng) if self.simulated else self.wf[i].astype(np.float32)
            lo, sc = normalisation(frame)
            H, W = frame.shape
            y0 = int(self.rng.integers(m, H - p - m + 1))
            x0 = int(self.rng.integers(m, W - p - m + 1))
            lr = (frame[y0:y0 + p, x0:x0 + p] - lo) / sc
            tlo, tsc = self.sr_norm[i]
            sr = (self.sr[i][2 * y0:2 * y0 + 2 * p, 2 * x0:2 * x0 + 2 * p] - tlo) / tsc
            lr, sr = _augment(lr, sr, self.rng)
            xs.append(lr)
            ys.append(sr)
        return np.asarray(xs, np.float32)[:, None], np.asarray(ys, np.float32)[:, None]


# ----------------------------------------------------------------------------- training
@dataclass
class SimConfig:
    """Options of one VDL-SIM training run (see ``emcs train sim --help``).

    ``input``: ``widefield`` (:mod:`emcs.sim.net`) or ``raw`` (:mod:`emcs.sim.rawnet`,
    data from :mod:`emcs.train.sim_raw`); ``max_minutes`` / ``max_cpu_minutes``: wall-clock
    / CPU-time budgets (the run stops at the first of them and ``steps``; with a time
    budget the cosine follows the budget's progress).
    """

    channels: int = 32
    blocks: int = 4
    steps: int = 4000
    batch: int = 8
    patch: int = 48
    lr: float = 1e-3
    pool: int = 240
    pool_size: int = 160
    seed: int = 0
    checkpoint_every: int = 200
    threads: int = 1
    input: str = "widefield"
    max_minutes: float | None = None
    max_cpu_minutes: float | None = None
    extra: dict = field(default_factory=dict)


#: final learning rate as a fraction of the peak
LR_FLOOR = 0.01

#: what the networks take and give, for the model card
CARD_IO = {
    "widefield": {
        "input": "one normalised wide-field frame ((x - p1) / (p99.9 - p1) of a 1-px-smoothed copy)",
        "output": "2x upsampled SR frame (same normalisation; multiply by the input's p99.9 - p1)"},
    "raw": {
        "input": "A x P raw frames of one time point -> emcs.sim.rawnet.features (wide-field, Wiener "
                 "w 0.05 and 0.3 on the 2x grid, pattern parameters estimated from the data), minus "
                 "p1 and divided by p99.9 - p1 of the 1-px-smoothed wide-field channel",
        "output": "SR frame on the 2x grid (multiply by the wide-field channel's p99.9 - p1)"},
}


def train(cfg: SimConfig, out: str, work_dir: str, sampler: PairSampler, resume: bool = False,
          init: str | None = None, card_extra: dict | None = None,
          log: Callable[[str], None] = print, advance: Callable[[int], None] | None = None) -> dict:
    """Train (or fine-tune from ``init``) and save ``out`` (+ model card).

    Returns the model card as written.
    """
    import time

    import torch

    from emcs.nn.weights import load_model
    from emcs.train.loop import Budget, Clock, Hooks, Schedule, read_checkpoint, restore, run

    if cfg.input == "raw":
        from emcs.sim.rawnet import ARCHITECTURE, BUILDERS, build
    else:
        from emcs.sim.net import ARCHITECTURE, BUILDERS, build

    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    os.makedirs(work_dir, exist_ok=True)
    ckpt = os.path.join(work_dir, "checkpoint.pt")
    if init:
        model, init_card = load_model(init, BUILDERS)
        cfg.channels = init_card["config"]["channels"]
        cfg.blocks = init_card["config"]["blocks"]
    else:
        model = build(cfg.channels, cfg.blocks)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, clock = 0, Clock()
    if resume:
        if not os.path.exists(ckpt):
            raise EmcsError("no checkpoint to resume from", ckpt)
        state = read_checkpoint(ckpt)
        step = restore(state, model, opt, ckpt)
        clock = Clock(state.get("elapsed", 0.0), state.get("cpu_elapsed", 0.0))
        sampler.rng = np.random.default_rng(cfg.seed + step)
        log(f"resumed from {ckpt} at step {step}")
    config = {"channels": cfg.channels, "blocks": cfg.blocks}
    card = {"architecture": ARCHITECTURE, "config": config, "name": os.path.splitext(os.path.basename(out))[0],
            "training": asdict(cfg)}
    card.update(CARD_IO[cfg.input])
    card.update(card_extra or {})
    t0, ema = time.time(), {"loss": None}
    timed = bool(cfg.max_minutes or cfg.max_cpu_minutes)
    schedule = Schedule(cfg.lr, LR_FLOOR, warmup=min(100, cfg.steps // 10), decay_after_warmup=not timed,
                        steps=cfg.steps)
    b = getattr(sampler, "border", 0)

    def loss_of(batch):
        x, y = batch
        d = model(torch.from_numpy(x)) - torch.from_numpy(y)
        return (d[..., b:d.shape[-2] - b, b:d.shape[-1] - b] if b else d).abs().mean()

    def after_step(done: int, loss: float, lr: float) -> None:
        ema["loss"] = loss if ema["loss"] is None else 0.98 * ema["loss"] + 0.02 * loss
        if done % 25 == 0 or done == cfg.steps:
            log(json.dumps({"step": done, "loss": round(ema["loss"], 5), "lr": round(lr, 7),
                            "elapsed_s": round(time.time() - t0, 1)}))

    def card_at(done: int) -> dict:
        card["training"]["steps_done"] = done
        if ema["loss"] is not None:
            card["training"]["final_loss_l1"] = round(ema["loss"], 5)
        return card

    hooks = Hooks(batch=lambda _step: sampler.sample(), loss=loss_of, card=card_at, after_step=after_step)
    written, _ = run(model, opt, hooks, out=out, checkpoint=ckpt, budget=Budget(cfg.steps, cfg.max_minutes, cfg.max_cpu_minutes), schedule=schedule,
                     start=step, clock=clock, every=cfg.checkpoint_every, clip_grad=None, advance=advance)
    return written
