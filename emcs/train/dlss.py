"""Recipe of ``emcs train dlss``: the DLSS supersampling network.

Training pairs are made on the fly (:mod:`emcs.simulate.textures`): a clean STEM-like
image (procedural HAADF textures, plus :func:`emcs.simulate.sample_stem` when ASE is
installed), a scanning-detector model, a random pitch ``s`` in 4 ... 10 and a random
grid phase. The target is the noise-free signal; the loss
(:func:`masked_loss`) is the mean squared error over the unmeasured pixels (measured
ones are pasted back at inference) relative to that of bilinear interpolation on the
same patch, so that clean and noisy patches and every pitch count alike (a stand-in
for DLSS-STEM's coverage normaliser p(c)).

``--data DIR`` fine-tunes on a user's own full-resolution scans
(:func:`emcs.train.folders.user_crop_source`): random crops of them are the target
(as recorded), subsampled for the input; a quarter of every batch stays synthetic.
The loop is :func:`emcs.train.loop.run` (100 warm-up steps, cosine decay to 1 %,
gradient-norm clip 1.0); one generator seeded by ``(seed, first step)`` draws the
batches of a session.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emcs.dlss.sampling import NET_FACTORS
from emcs.dlss.supersample import TARGETS
from emcs.errors import EmcsError
from emcs.nn.ensemble import dihedral
from emcs.simulate.lattices import lattice_pair
from emcs.simulate.textures import PROBE_BLUR, clean_image, degrade

__all__ = ["LOSS_FLOOR", "PROBE_BLUR", "make_batch", "make_example", "masked_loss", "train_dlss",
           "validation_set"]

#: default ``floor`` of :func:`masked_loss` (``--loss-floor``)
LOSS_FLOOR = 1e-3
#: learning-rate schedule: warm-up steps and final fraction of the peak
WARMUP, LR_FLOOR = 100, 0.01


def make_example(
    rng: np.random.Generator,
    noisy: np.ndarray,
    target: np.ndarray,
    factor: int,
    offset: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Features (4, P, P) and target (1, P, P) for one patch, grid at ``offset``."""
    from emcs.dlss.supersample import features

    oy, ox = offset
    sparse = noisy[oy::factor, ox::factor]
    feats = features(sparse, factor, noisy.shape, offset)
    return feats, target[None]


def make_batch(
    rng: np.random.Generator,
    batch: int,
    patch: int,
    factors: tuple[int, ...] = NET_FACTORS,
    simulated: bool = False,
    user_crops: Callable | None = None,
    user_fraction: float = 0.75,
    user_noise: bool = False,
    probe_blur: tuple[float, float] = PROBE_BLUR,
    lattice_fraction: float = 0.0,
    target: str = "scan",
):
    """A training batch: features (B, 4, P, P), targets (B, 1, P, P), pitches (B,), recorded (B,).

    The first ``user_fraction`` of the patches come from ``user_crops`` when it is
    given. A user's scan is its own target (``recorded`` is True: its measured
    pixels are their own targets, so :func:`masked_loss` leaves them out), unless
    ``user_noise``: then the scan is taken as clean and passed through the
    simulated detector (:func:`~emcs.simulate.textures.degrade`) like a synthetic image.
    ``simulated``: also draw :func:`emcs.simulate.sample_stem` images (see
    :func:`~emcs.simulate.textures.clean_image`); ``probe_blur``: see
    :func:`~emcs.simulate.textures.stem_texture`. The next ``lattice_fraction`` of the
    patches are atomic-resolution scenes recorded with scan artefacts
    (:func:`emcs.simulate.lattices.lattice_pair`); the rest are synthetic textures.
    ``target="blurred"``: each target is the full scan as DLSS-STEM scores it, through
    :func:`emcs.dlss.smoothing.paper_blur`; for a synthetic patch the noise-free signal
    with the measured pixels at their recorded values (the scan's expected value given
    the samples), so the blurred target is exact where the input knows it.
    """
    from emcs.dlss.smoothing import paper_blur

    xs, ys, ss, rec = [], [], [], []
    n_user = int(round(user_fraction * batch)) if user_crops is not None else 0
    n_lattice = min(batch - n_user, int(round(lattice_fraction * batch)))
    for i in range(batch):
        s = int(rng.choice(factors))
        recorded = False
        if i < n_user and user_noise:
            noisy, truth = degrade(rng, user_crops(rng, patch))
        elif i < n_user:
            noisy = user_crops(rng, patch)
            truth, recorded = noisy, True
        elif i < n_user + n_lattice:
            noisy, truth = lattice_pair(rng, patch)
        else:
            noisy, truth = degrade(rng, clean_image(rng, patch, simulated, probe_blur))
        k = int(rng.integers(8))  # dihedral augmentation
        noisy, truth = dihedral(noisy, k), dihedral(truth, k)
        off = (int(rng.integers(s)), int(rng.integers(s)))
        if target == "blurred":
            truth = noisy if recorded else truth.copy()
            truth[off[0]::s, off[1]::s] = noisy[off[0]::s, off[1]::s]
            truth = paper_blur(truth)
        f, t = make_example(rng, noisy, truth, s, off)
        xs.append(f)
        ys.append(t)
        ss.append(s)
        rec.append(recorded)
    return np.stack(xs), np.stack(ys), np.array(ss), np.array(rec)


def masked_loss(pred, target, feats, pitches, floor: float = LOSS_FLOOR, all_pixels: bool = False, recorded=None):
    """Relative MSE over unmeasured pixels (or every pixel), in per-patch [0, 1] units.

    Each patch's MSE is divided by (the bilinear MSE of that patch + ``floor``), so
    clean, easy patches count as much as noisy ones (the network must not do
    worse than bilinear where bilinear is already good) and every pitch counts
    alike. A larger ``floor`` moves towards a plain MSE: patches whose bilinear
    MSE is below it then count by their absolute error, so noisy scans (where
    telling noise from unresolved structure matters most) weigh more. With
    ``all_pixels`` the measured pixels count too (their target is
    the noise-free signal, so the network learns to denoise them for
    ``emcs supersample --denoise-measured``), except in the patches flagged in
    ``recorded`` (a user's scan as its own target: there the measured pixels
    would only teach the network to copy its input). Returns
    ``(loss, per-patch MSE)``.
    """
    import torch

    from emcs.dlss.supersample import normalize_tiles

    _, lo, scale = normalize_tiles(feats)
    free = 1 - feats[:, 2:3]
    if all_pixels:
        keep = torch.ones(len(free), dtype=torch.bool)
        if recorded is not None:
            keep = ~torch.as_tensor(np.asarray(recorded, bool))
        free = torch.where(keep[:, None, None, None], torch.ones_like(free), free)
    n = free.flatten(1).sum(1)
    per = (((pred - target) / scale) ** 2 * free).flatten(1).sum(1) / n
    per_bl = (((feats[:, :1] - target) / scale) ** 2 * free).flatten(1).sum(1) / n
    return (per / (per_bl.detach() + floor)).mean(), per


def validation_set(seed: int, n: int, patch: int, simulated: bool = False, target: str = "scan"):
    """A fixed synthetic validation set (never the real held-out crops)."""
    rng = np.random.default_rng(seed + 10_000)
    return make_batch(rng, n, patch, NET_FACTORS, simulated, target=target)[:3]


def _check(steps, patch, batch, out, factors, loss_floor, probe_blur, data_fraction, data_zoom,
           lattice_fraction=0.0, target="scan"):
    """Validated (out, factors, probe_blur, data_zoom)."""
    if target not in TARGETS:
        raise EmcsError(f"target must be one of {', '.join(TARGETS)}, got {target!r}", param="target")
    if steps < 1:
        raise EmcsError("steps must be >= 1", param="steps")
    if patch < 32 or patch % 8:
        raise EmcsError("patch must be a multiple of 8, at least 32", param="patch")
    if batch < 1:
        raise EmcsError("batch must be >= 1", param="batch")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise EmcsError("the output must be a .safetensors file", out)
    if not out.parent.is_dir():
        raise EmcsError(f"the output folder {out.parent} does not exist", out)
    factors = tuple(int(f) for f in factors)
    if not factors or any(f not in NET_FACTORS for f in factors):
        raise EmcsError(f"factors must lie in {min(NET_FACTORS)}..{max(NET_FACTORS)}, got {list(factors)}",
                        param="factors")
    if not 0.0 < loss_floor <= 1.0:
        raise EmcsError(f"loss_floor must be in (0, 1], got {loss_floor}", param="loss_floor")
    probe_blur = (float(probe_blur[0]), float(probe_blur[1]))
    if not 0.0 <= probe_blur[0] <= probe_blur[1] <= 8.0:
        raise EmcsError(f"probe_blur must be LO,HI with 0 <= LO <= HI <= 8, got {list(probe_blur)}",
                        param="probe_blur")
    if not 0.0 <= data_fraction <= 1.0:
        raise EmcsError("data_fraction must be between 0 and 1", param="data_fraction")
    if not 0.0 <= lattice_fraction <= 1.0:
        raise EmcsError(f"lattice_fraction must be between 0 and 1, got {lattice_fraction}",
                        param="lattice_fraction")
    data_zoom = (float(data_zoom[0]), float(data_zoom[1]))
    if not 0.25 <= data_zoom[0] <= data_zoom[1] <= 4.0:
        raise EmcsError(f"data_zoom must be LO,HI with 0.25 <= LO <= HI <= 4, got {list(data_zoom)}",
                        param="data_zoom")
    return out, factors, probe_blur, data_zoom


def _initial_model(init, context, width, blocks, seed):
    """(model, config, card of ``init`` or None): fresh, or the weights ``init`` (fine-tuning)."""
    import torch

    from emcs.dlss.net import DLSSNet
    from emcs.nn.weights import load_model

    config = {"width": int(width), "blocks": int(blocks)}
    if context:
        config["context"] = int(context)
    if not init:
        torch.manual_seed(seed)
        return DLSSNet(**config), config, None
    from emcs.dlss.net import BUILDERS

    model, init_card = load_model(init, BUILDERS)
    config = dict(init_card["config"])
    if context is not None and int(context) != int(config.get("context", 0)):
        config["context"] = int(context)  # grow (zero-initialised) or drop the branch
        grown = DLSSNet(**config)
        grown.load_state_dict({k: v.float() for k, v in model.state_dict().items()
                               if not k.startswith("ctx_") or context}, strict=False)
        model = grown
    return model.float(), config, init_card


def train_dlss(
    steps: int,
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    data_fraction: float = 0.75,
    data_noise: bool = False,
    data_zoom: tuple[float, float] = (1.0, 1.0),
    lattice_fraction: float = 0.0,
    patch: int = 128,
    batch: int = 8,
    resume: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    width: int = 48,
    blocks: int = 2,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int = 1,
    save_every: int = 200,
    init: str | os.PathLike | None = None,
    context: int | None = None,
    all_pixels: bool = True,
    loss_floor: float = LOSS_FLOOR,
    probe_blur: tuple[float, float] = PROBE_BLUR,
    max_minutes: float | None = None,
    factors: tuple[int, ...] = NET_FACTORS,
    target: str = "scan",
    command: str = "",
    log: Callable[[str], None] = print,
    advance: Callable[[int], None] | None = None,
) -> dict:
    """Train (or fine-tune) the DLSS network and save it as fp16 safetensors + card.

    Parameters
    ----------
    steps : int
        Total optimiser steps (a resumed run continues up to this number).
    out : path
        ``.safetensors`` destination (written at every checkpoint and at the end).
    data : path, optional
        Folder of the user's full-resolution scans to fine-tune on.
    data_fraction : float
        Share of each batch drawn from ``data`` (the rest is synthetic).
    data_noise : bool
        Treat the scans in ``data`` as clean and add the simulated detector noise
        (for clean renderings); by default each scan is its own target.
    data_zoom : (float, float)
        Magnification range for the ``data`` crops (:func:`emcs.train.folders.zoomed_crop`),
        e.g. (0.5, 2): a few scans then teach their structures at several sizes.
        Default (1, 1): crops as recorded.
    lattice_fraction : float
        Share of each batch drawn from atomic-resolution lattice scenes with scan
        artefacts (:func:`emcs.simulate.lattices.lattice_pair`), after the ``data``
        share; the rest are the synthetic textures.
    patch, batch : int
        Patch edge (pixels) and patches per step.
    resume : path, optional
        Training-state checkpoint to continue from.
    checkpoint : path, optional
        Where training state is saved (default ``OUT`` with suffix ``.ckpt``).
    width, blocks : int
        Network size (see :class:`emcs.dlss.net.DLSSNet`).
    lr : float
        Peak Adam learning rate (cosine decay to 1 % of it).
    init : path, optional
        Start from these shipped weights (fine-tuning); the card's config wins,
        except ``context``.
    context : int, optional
        Residual blocks of the context branch (:class:`emcs.dlss.net.DLSSNet`);
        with ``init`` a branch is added to (or kept from) the initial weights.
    all_pixels : bool
        Count the measured pixels in the loss too (see :func:`masked_loss`).
    loss_floor : float
        ``floor`` of :func:`masked_loss` (in squared [0, 1] units): each
        patch's MSE is divided by (its bilinear MSE + ``loss_floor``).
    probe_blur : (float, float)
        Range of the procedural images' probe blur sigma (pixels), see
        :func:`emcs.simulate.textures.stem_texture`.
    max_minutes : float, optional
        Wall-clock budget (training time, summed over resumes). The learning-rate
        schedule follows whichever of steps or time runs out first, and training
        stops when either is used up.
    factors : tuple of int
        Grid pitches to draw from (each in 4..10); a pitch given twice is drawn
        twice as often. The network still serves the whole range.
    target : {"scan", "blurred"}
        What the network learns to output: the full-resolution scan (measured
        pixels are pasted back at inference), or, as DLSS-STEM trains, the full
        scan blurred by its 5 x 5, sigma 2.5 px Gaussian (every pixel in the
        loss; nothing pasted back at inference).

    Returns
    -------
    dict
        The model card written.
    """
    import time

    import torch

    from emcs.dlss.net import DLSSNet
    from emcs.dlss.supersample import run_net
    from emcs.simulate.extras import have
    from emcs.train.folders import user_crop_source
    from emcs.train.loop import Budget, Clock, Hooks, Schedule, read_checkpoint, restore, run

    out, factors, probe_blur, data_zoom = _check(steps, patch, batch, out, factors, loss_floor, probe_blur,
                                                 data_fraction, data_zoom, lattice_fraction, target)
    if target == "blurred":
        all_pixels = True  # every output pixel is an estimate; nothing is pasted back
    torch.set_num_threads(max(1, int(threads)))
    checkpoint = Path(checkpoint) if checkpoint else out.with_suffix(".ckpt")
    user_crops = user_crop_source(data, patch, data_zoom) if data else None
    simulated = have("ase")
    if not simulated:
        log("ASE is not installed: training on procedural textures only, without emcs.simulate.sample_stem "
            "(pip install 'emcs[sim]')")
    model, config, init_card = _initial_model(init, context, width, blocks, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start, history, clock = 0, [], Clock()
    if resume:
        resume = Path(resume)
        if not resume.is_file():
            raise EmcsError("no such checkpoint", resume)
        state = read_checkpoint(resume)
        cfg = json.loads(state["config"]) if "config" in state else config
        if cfg != config and not init:
            config = cfg
            model = DLSSNet(**config)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
        start = restore(state, model, opt, resume)
        history = json.loads(state.get("history", "[]"))
        clock = Clock(state.get("elapsed", 0.0))
        log(f"resumed from {resume} at step {start}")
    rng = np.random.default_rng([seed, start])
    vx, vy, vs = validation_set(seed, 32, patch, simulated, target)
    vx_t, vy_t = torch.from_numpy(vx), torch.from_numpy(vy)
    t0, ema = time.time(), {"loss": None}

    def evaluate() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            pred = torch.cat([run_net(model, vx_t[i : i + 8]) for i in range(0, len(vx_t), 8)])
            _, per = masked_loss(pred, vy_t, vx_t, vs)
            _, per_bl = masked_loss(vx_t[:, :1], vy_t, vx_t, vs)
        model.train()
        return float(per.mean().sqrt()), float(per_bl.mean().sqrt())

    def draw(_step: int):
        x, y, s, rec = make_batch(rng, batch, patch, factors, simulated, user_crops, data_fraction, data_noise,
                                  probe_blur, lattice_fraction, target)
        return torch.from_numpy(x), torch.from_numpy(y), s, rec

    def loss_of(b):
        xt, yt, s, rec = b
        rec = None if target == "blurred" else rec  # a recorded scan's blurred samples are fair targets
        return masked_loss(run_net(model, xt), yt, xt, s, floor=loss_floor, all_pixels=all_pixels, recorded=rec)[0]

    def after_step(done: int, loss: float, lr_now: float) -> None:
        ema["loss"] = loss if ema["loss"] is None else 0.98 * ema["loss"] + 0.02 * loss
        if done % 50 == 0:
            rate = (done - start) * batch / (time.time() - t0)
            log(f"step {done}/{steps} loss {ema['loss']:.5f} lr {lr_now:.2e} {rate:.1f} patches/s")

    def card(step: int) -> dict:
        rmse, rmse_bl = evaluate()
        history.append({"step": step, "val_rmse": rmse, "val_rmse_bilinear": rmse_bl})
        log(f"checkpoint {step}: val rmse net {rmse:.4f} bilinear {rmse_bl:.4f}")
        return _card(options, config, init_card, step, clock.wall() / 60, rmse, rmse_bl)

    options = {"factors": factors, "data": data, "data_fraction": data_fraction, "data_noise": data_noise,
               "data_zoom": data_zoom, "lattice_fraction": lattice_fraction, "simulated": simulated, "probe_blur": probe_blur, "all_pixels": all_pixels,
               "loss_floor": loss_floor, "output_target": target, "init": init, "batch": batch, "patch": patch, "lr": lr, "seed": seed,
               "command": command}
    hooks = Hooks(batch=draw, loss=loss_of, card=card, after_step=after_step,
                  state=lambda: {"config": json.dumps(config), "history": json.dumps(history)})
    written, done = run(model, opt, hooks, out=out, checkpoint=checkpoint, budget=Budget(steps, max_minutes),
                        schedule=Schedule(lr, LR_FLOOR, warmup=WARMUP), start=start, clock=clock,
                        every=save_every, advance=advance)
    if done < steps:
        log(f"time budget of {max_minutes} minutes used up at step {done}")
    return written


def _target_text(output_target: str, data: bool, data_noise: bool) -> str:
    """The card's description of the training target."""
    clean = "noise-free signal (synthetic" + (" and --data scans" if data and data_noise else "") + ")"
    if output_target == "blurred":
        return ("DLSS-STEM's blurred full scan (5x5 Gaussian, sigma 2.5 px) of the " + clean
                + " with the measured pixels at their recorded values"
                + ("; of the recorded scan (--data)" if data and not data_noise else ""))
    return clean + ("; recorded scan, measured pixels left out of the loss (--data)" if data and not data_noise else "")


def _card(o: dict, config: dict, init_card: dict | None, step: int, minutes: float, rmse: float,
          rmse_bl: float) -> dict:
    """The model card of the DLSS network at ``step``; ``o``: the options of :func:`train_dlss`."""
    from emcs.dlss.net import ARCHITECTURE

    data, zoom, blur, factors = o["data"], o["data_zoom"], o["probe_blur"], o["factors"]
    # the pitches the network has been trained on: this run's and, for a fine-tune, its start's
    served = sorted(set(factors) | set((init_card or {}).get("factors", ())))
    return {
        "architecture": ARCHITECTURE,
        "config": config,
        "task": "DLSS-STEM supersampling of regular sparse scans (one unified network)",
        "factors": served,
        "coverages": [f"1/{s * s}" for s in served],
        "factor_draw_weights": {str(f): factors.count(f) / len(factors) for f in sorted(set(factors))},
        "inputs": "bilinear, nearest fill, sample mask, s/10; each tile min-max normalised by its samples",
        "output": ("bilinear + predicted residual; measured positions pasted back" if o["output_target"] == "scan"
                   else "bilinear + predicted residual = the full scan through DLSS-STEM's 5x5, sigma 2.5 px "
                        "Gaussian; nothing pasted back"),
        "output_target": o["output_target"],
        "training_data": (
            "procedural HAADF/ADF-STEM textures (emcs.simulate.textures.stem_texture)"
            + (" + emcs.simulate.sample_stem" if o["simulated"] else "")
            + (f" + scans from {data} ({o['data_fraction']:.0%} of each batch"
               + (", simulated detector noise added" if o["data_noise"] else ", as recorded")
               + (f", magnified {zoom[0]:g}-{zoom[1]:g}x" if zoom != (1.0, 1.0) else "") + ")"
               if data else "")
            + (f" + atomic-resolution lattice scenes with scan artefacts (emcs.simulate.lattices, "
               f"{o['lattice_fraction']:.0%} of each batch)" if o["lattice_fraction"] else "")
            + f"; probe blur sigma {blur[0]:g}-{blur[1]:g} px"
            + "; Poisson noise 2-2000 counts/px, read noise, detector lag, scan-line offsets"
        ),
        "target": _target_text(o["output_target"], bool(data), o["data_noise"]),
        "loss": (f"per-patch MSE over {'all' if o['all_pixels'] else 'unmeasured'} pixels / "
                 f"(bilinear MSE + {o['loss_floor']:g})"),
        "fine_tuned_from": (None if not o["init"] else
                            {"path": str(o["init"]), "steps": init_card.get("steps"),
                             "training_minutes": init_card.get("training_minutes"),
                             "loss": init_card.get("loss"), "command": init_card.get("command")}),
        "steps": step,
        "training_minutes": round(minutes, 1),
        "batch": o["batch"],
        "patch": o["patch"],
        "learning_rate": o["lr"],
        "seed": o["seed"],
        "command": o["command"],
        "synthetic_validation_rmse": {"net": rmse, "bilinear": rmse_bl},
    }
