"""Recipe of ``emcs train tcs``: the neural TCS decoders (tcs-unfold, tcs-tcsdl).

A sample is B consecutive frames of a movie patch, fresh random masks and the TCS
measurement (:class:`emcs.tcs.operator.TcsOperator`) of the *noisy* frames; the
target is the clean frames (simulated clips, :func:`emcs.simulate.clips.training_clip`)
or the raw frames themselves (a user's movies, :class:`emcs.train.folders.FolderClips`,
for which no clean truth exists). Every step draws a fresh batch from a generator
seeded by ``(seed, step)``, so a resumed run sees exactly the data an uninterrupted
run would have seen. Measurement and target are divided by the measurement's
intensity scale, as at decode time. The loop is :func:`emcs.train.loop.run` (cosine
decay to 2 %, no warm-up, gradient-norm clip 1.0); the loss log is a CSV file in the
work folder.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import math
import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emcs.errors import EmcsError
from emcs.simulate.clips import HELDOUT_KINDS, STANDIN_FRACTION, TRAIN_KINDS, available_kinds
from emcs.tcs.nets import ARCHITECTURES, BUILDERS, build_network

__all__ = ["DESCRIPTIONS", "LR_FLOOR", "MODEL_NAMES", "Batch", "TcsConfig", "batch_size_for", "draw_batch",
           "make_batch", "make_card", "model_loss", "quantize_counts", "train"]

#: short model names (``--model``), from the one network map :data:`emcs.tcs.nets.ARCHITECTURES`
MODEL_NAMES = tuple(ARCHITECTURES)
#: final learning rate as a fraction of the peak
LR_FLOOR = 0.02

#: one-paragraph description of each architecture for the model card
DESCRIPTIONS = {
    "unfold": (
        "Deep-unfolded GAP (emcs.tcs.nets.unfold): start from Ybar = Y / sum_b C_b in every frame, "
        "then K stages of [GAP data-consistency step x += lambda_k C (Y - A x) / R with the real masks "
        "(learned lambda_k), residual CNN denoiser]. Each denoiser sees (x_b, C_b, Ybar) per frame at half "
        "resolution (2x2 pixel-unshuffle), frames folded into the batch for 3x3 convs, mixed along time by "
        "(3,1,1) convs plus a frame-mean context branch. Mask-, B- and frame-size-agnostic."
    ),
    "tcsdl": (
        "TCS-DL = BIRNAT (Zheng et al. 2021, Patterns 2:100292; Cheng et al. ECCV 2020) as in the paper's "
        "Methods: first-frame CNN on [Ybar, Ybar*C_1..C_B] (5x5, 3x3, 1x1, 3x3/2 convs, 3 residual groups, "
        "SAGAN self-attention, transposed conv decoder), forward RNN fed by Eq. 3 and backward RNN fed by "
        "Eq. 4, LeakyReLU 0.01, loss 0.5 MSE(fwd) + 0.5 MSE(bwd). Changes for our budget and for bounded "
        "memory: widths scaled by cnn_width (first-frame CNN; 0.25 = 8/16/32 channels instead of 32/64/128) "
        "and rnn_width (RNN cells; 0.5 = 5/10/10 instead of 10/20/20); self-attention within "
        "window x window blocks of the half-resolution map instead of globally; the first layer takes "
        "b_max + 1 channels, zero-padded for smaller B, so one network serves B <= b_max."
    ),
}


@dataclass
class TcsConfig:
    """Options of one TCS training run (see ``emcs train tcs --help``)."""

    model: str = "unfold"
    Bs: tuple[int, ...] = (10, 20, 30)
    steps: int = 3000
    out: str = "tcs-unfold.safetensors"
    data: str | None = None
    patch: int = 64
    batch: int = 4
    lr: float = 1e-3
    device: str = "cpu"
    seed: int = 0
    workdir: str | None = None
    resume: str | None = None
    checkpoint_every: int = 100
    max_minutes: float | None = None
    max_cpu_minutes: float | None = None
    density_range: tuple[float, float] = (0.35, 0.65)
    dose_range: tuple[float, float] = (1.0, 1000.0)
    model_config: dict = field(default_factory=dict)
    threads: int | None = None
    quantize_range: tuple[float, float] | None = None
    #: mask kinds drawn per sample (:data:`emcs.simulate.masks.MASK_KINDS`); empty: the encoder's masks
    mask_kinds: tuple[str, ...] = ()
    #: processes drawing batches ahead of the optimiser (0: in the training process); same batches either way
    workers: int = 0


# --------------------------------------------------------------------------- batches
@dataclass
class Batch:
    """One training batch (numpy, float32).

    y : (N, H, W) measurements of the noisy frames, frames scaled to ~[0, 1].
    masks : (N, B, H, W) float masks (0/1).
    target : (N, B, H, W) frames to recover.
    """

    y: np.ndarray
    masks: np.ndarray
    target: np.ndarray
    sources: dict = field(default_factory=dict)


def quantize_counts(y: np.ndarray, step: float) -> np.ndarray:
    """Summed counts as ``emcs encode --quantize STEP`` stores and a reader gets them back."""
    from emcs.tcs.container import anscombe_codes, anscombe_values

    return anscombe_values(anscombe_codes(y, step), step).astype(np.float32)


def make_batch(
    rng: np.random.Generator,
    B: int,
    size: int,
    batch: int,
    *,
    density_range: tuple[float, float] = (0.5, 0.5),
    dose_range: tuple[float, float] = (1.0, 1000.0),
    folder=None,
    use_simulator: bool = True,
    quantize_range: tuple[float, float] | None = None,
    quantize_fraction: float = 0.5,
    kinds: tuple[str, ...] = TRAIN_KINDS,
    mask_kinds: tuple[str, ...] = (),
) -> Batch:
    """Draw a batch: clips, fresh masks (random seed and density), noisy measurement.

    For simulated clips the dose (mean counts per pixel) is log-uniform in
    ``dose_range``; the target is the clean clip. With ``quantize_range``, a
    ``quantize_fraction`` of the simulated measurements are quantized as
    ``emcs encode --quantize STEP`` does, with STEP uniform in the range. For
    ``folder`` clips (:class:`emcs.train.folders.FolderClips`) no noise is added and
    the target is the raw clip. With ``mask_kinds``, each sample's masks are one of
    these hardware-like kinds (:func:`emcs.simulate.masks.structured_masks`) instead of
    the encoder's seeded Bernoulli masks.
    """
    from emcs.simulate.clips import shot_noise_counts, training_clip
    from emcs.simulate.masks import structured_masks
    from emcs.tcs.operator import TcsOperator

    ys, ms, ts = [], [], []
    sources: dict[str, int] = {}
    for _ in range(batch):
        # The order of the draws is kept from earlier releases, so that a seed gives the same batches.
        if folder is not None:
            clean = folder.clip(rng, B, size)
            counts, scale = clean, 1.0
            src = "folder"
        else:
            clean, src = training_clip(rng, B, size, use_simulator, kinds)
            dose = math.exp(rng.uniform(math.log(dose_range[0]), math.log(dose_range[1])))
            counts, scale = shot_noise_counts(rng, clean, dose)
        sources[src] = sources.get(src, 0) + 1
        density = float(rng.uniform(*density_range))
        if mask_kinds:
            kind = mask_kinds[int(rng.integers(len(mask_kinds)))]
            op = TcsOperator.from_masks(structured_masks(rng, kind, B, (size, size), density))
        else:
            op = TcsOperator.generated(int(rng.integers(2**32)), B, (size, size), density)
        y = op.forward(counts)
        if folder is None and quantize_range is not None and rng.random() < quantize_fraction:
            y = quantize_counts(y, float(rng.uniform(*quantize_range)))
        ys.append((y * scale).astype(np.float32))
        ms.append(op.masks().astype(np.float32))
        ts.append(clean)
    return Batch(np.stack(ys), np.stack(ms), np.stack(ts), sources)


# --------------------------------------------------------------------------- training
#: the user-movie folders opened in this process (one per ``--data``; workers open their own)
_FOLDERS: dict[str, object] = {}


def draw_batch(cfg: TcsConfig, kinds: tuple[str, ...], at: int) -> tuple[int, Batch]:
    """(B, batch) of step ``at``: a function of ``(cfg.seed, at)`` alone, in any process."""
    folder = None
    if cfg.data:
        from emcs.train.folders import FolderClips

        folder = _FOLDERS.get(cfg.data) or _FOLDERS.setdefault(cfg.data, FolderClips(cfg.data))
    rng = np.random.default_rng([cfg.seed, at])
    B = int(rng.choice(cfg.Bs))
    return B, make_batch(rng, B, cfg.patch, batch_size_for(B, cfg.batch), density_range=cfg.density_range,
                         dose_range=cfg.dose_range, folder=folder, quantize_range=cfg.quantize_range,
                         kinds=kinds, mask_kinds=tuple(cfg.mask_kinds))


def model_loss(model, y, masks, target):
    """The training loss of a model: its own ``loss`` method if any, else MSE."""
    import torch.nn.functional as F

    if hasattr(model, "loss"):
        return model.loss(y, masks, target)
    return F.mse_loss(model(y, masks), target)


def batch_size_for(B: int, batch: int) -> int:
    """Clips per step for B frames: ``batch`` at B = 10, scaled by 10 / B (same frames per step)."""
    return max(1, round(batch * 10 / B))


def _check(cfg: TcsConfig) -> Path:
    for B in cfg.Bs:
        if not 2 <= B <= 64:
            raise EmcsError(f"B values must be between 2 and 64, got {B}", param="B")
    if cfg.workers < 0:
        raise EmcsError(f"workers must be 0 or more, got {cfg.workers}", param="workers")
    if cfg.patch < 16 or cfg.patch % 4:
        raise EmcsError(f"patch must be a multiple of 4 and at least 16, got {cfg.patch}", param="patch")
    out = Path(cfg.out)
    if out.suffix != ".safetensors":
        raise EmcsError("out must end in .safetensors", out, param="out")
    return out


def train(cfg: TcsConfig, progress: Callable[[int], None] | None = None, log=print) -> dict:
    """Run (or resume, or fine-tune) a training run; save the final model with its card.

    ``cfg.resume`` is a checkpoint (``.pt``, continued) or shipped weights
    (``.safetensors``, fine-tuned from step 0). Returns the card written next to ``cfg.out``.
    """
    import torch

    from emcs.nn.device import pick_device
    from emcs.tcs.operator import measurement_scale
    from emcs.train.folders import FolderClips
    from emcs.train.loop import (
        Budget,
        Clock,
        Hooks,
        Prefetch,
        Schedule,
        read_checkpoint,
        restore,
        run,
    )

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = _check(cfg)
    device = pick_device(cfg.device)
    workdir = Path(cfg.workdir) if cfg.workdir else out.parent / f".{out.stem}-train"
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "loss.csv"
    folder = FolderClips(cfg.data) if cfg.data else None
    if folder is not None:
        folder.check(max(cfg.Bs), cfg.patch)
    kinds = available_kinds(TRAIN_KINDS)
    if folder is None and kinds != TRAIN_KINDS:
        log(f"ASE is not installed: kinds {', '.join(k for k in TRAIN_KINDS if k not in kinds)} are left out of "
            "the simulated clips (pip install 'emcs[sim]')")
    model_config = dict(cfg.model_config)
    if cfg.model == "tcsdl":
        model_config.setdefault("b_max", max(cfg.Bs))
    if cfg.model not in MODEL_NAMES:
        raise EmcsError(f"model must be one of {', '.join(MODEL_NAMES)}, got {cfg.model!r}", param="model")
    torch.manual_seed(cfg.seed)  # the initial weights too are a function of the seed
    model = build_network(cfg.model, **model_config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, clock = 0, Clock()
    init_from: dict | None = None  # the shipped weights a fine-tune started from
    counts: dict[str, int] = {}  # training clips per source
    first_step: dict[str, int] = {}  # first step that used each source
    if folder is not None:
        _FOLDERS[cfg.data] = folder
    if cfg.resume and Path(cfg.resume).suffix == ".safetensors":
        model, init_from = _fine_tune_start(cfg, device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    elif cfg.resume:
        state = read_checkpoint(cfg.resume, device)
        step = restore(state, model, opt, cfg.resume)
        clock = Clock(state.get("elapsed", 0.0), state.get("cpu_elapsed", 0.0))
        init_from = state.get("init_from") or None
        counts.update(state.get("counts", {}))
        first_step.update(state.get("first_step", {}))
    new_log = not (cfg.resume and log_path.exists())
    drawn = {"B": 0}
    recent: list[float] = []

    draw = functools.partial(draw_batch, cfg, kinds)
    fetch = Prefetch(draw, step, cfg.workers) if cfg.workers > 0 else contextlib.nullcontext(draw)

    def batch(at: int):
        B, b = fetcher(at)
        drawn["B"] = B
        for src, k in b.sources.items():
            counts[src] = counts.get(src, 0) + k
            first_step.setdefault(src, at)
        y, m, t = (torch.from_numpy(a).to(device) for a in (b.y, b.masks, b.target))
        s = measurement_scale(y, m)  # as decode_measurements does
        return y / s[:, None, None], m, t / s[:, None, None, None]

    with fetch as fetcher, open(log_path, "w" if new_log else "a", newline="") as logf:
        writer = csv.writer(logf)
        if new_log:
            writer.writerow(["step", "elapsed_s", "B", "loss", "psnr_db", "lr"])

        def after_step(done: int, loss: float, lr: float) -> None:
            recent.append(loss)
            writer.writerow([done, f"{clock.wall():.1f}", drawn["B"], f"{loss:.6g}",
                             f"{-10 * math.log10(max(loss, 1e-12)):.3f}", f"{lr:.3g}"])
            if done % cfg.checkpoint_every == 0:
                logf.flush()
                mean = sum(recent) / len(recent)
                log(f"step {done}: mean loss {mean:.5f} ({-10 * math.log10(max(mean, 1e-12)):.2f} dB), "
                    f"lr {lr:.2e}, {clock.wall():.0f} s")
                recent.clear()

        hooks = Hooks(
            batch=batch,
            loss=lambda b: model_loss(model, *b),
            card=lambda at: make_card(cfg, model, out, at, clock.wall(), counts, first_step,
                                      cpu_seconds=clock.cpu(), init_from=init_from, kinds=kinds),
            state=lambda: {"counts": counts, "first_step": first_step, "init_from": init_from},
            after_step=after_step,
        )
        card, _ = run(model, opt, hooks, out=out, checkpoint=workdir / "checkpoint.pt",
                      budget=Budget(cfg.steps, cfg.max_minutes, cfg.max_cpu_minutes),
                      schedule=Schedule(cfg.lr, LR_FLOOR), start=step, clock=clock,
                      every=cfg.checkpoint_every, advance=progress)
    return card


def _fine_tune_start(cfg: TcsConfig, device):
    """The shipped network of ``cfg.resume`` (with its own config) and where it came from.

    Its config is kept, except that an unfold network grows to ``stages`` stages when
    more are asked for (:meth:`emcs.tcs.nets.unfold.UnfoldNet.grown`)."""
    from emcs.nn.weights import load_model

    rpath = Path(cfg.resume)
    loaded, card = load_model(rpath, BUILDERS)
    if card["architecture"] != ARCHITECTURES[cfg.model]:
        raise EmcsError(f"these weights are {card['architecture']!r}, not model {cfg.model}", rpath)
    stages = cfg.model_config.get("stages")
    if cfg.model == "unfold" and stages and stages != loaded.config["stages"]:
        if stages < loaded.config["stages"]:
            raise EmcsError(f"stages can only grow in a fine-tune: these weights have {loaded.config['stages']}, "
                            f"got {stages}", rpath, param="stages")
        loaded = loaded.grown(stages)
    prev = card.get("training", {})
    return loaded.to(device), {"name": card.get("name"), "steps": prev.get("steps"),
                               "wall_clock_s": prev.get("wall_clock_s"), "cpu_s": prev.get("cpu_s"),
                               "command": prev.get("command"), "stages": card.get("config", {}).get("stages")}


# --------------------------------------------------------------------------- model card
def make_card(cfg: TcsConfig, model, out: Path, step: int, seconds: float, counts: dict,
              first_step: dict, cpu_seconds: float | None = None, init_from: dict | None = None,
              kinds: tuple[str, ...] = TRAIN_KINDS) -> dict:
    """The model card of a (finished or snapshot) training run; metrics are added by evaluation."""
    prog = Path(sys.argv[0]).name
    argv = ["emcs" if prog == "__main__.py" else prog, *sys.argv[1:]]  # python -m emcs is the emcs command
    trained = sorted(set(cfg.Bs))  # a B given twice in --B is drawn twice as often
    card = {
        "architecture": ARCHITECTURES[cfg.model],
        "config": dict(model.config),
        "name": out.stem,
        "description": DESCRIPTIONS[cfg.model],
        "rank": 0 if cfg.model == "unfold" else 1,  # find_model prefers lower ranks
        "B_range": [min(cfg.Bs), max(cfg.Bs)],
        "B_trained": trained,
        "B_draw_weights": {str(b): cfg.Bs.count(b) / len(cfg.Bs) for b in trained},
        "density_range": list(cfg.density_range),
        "training": {
            "data": training_data_description(cfg, kinds),
            "clips_by_source": dict(counts),
            "first_step_by_source": dict(first_step),
            "steps": step,
            "wall_clock_s": round(seconds, 1),
            "cpu_s": None if cpu_seconds is None else round(cpu_seconds, 1),
            "patch": cfg.patch,
            "clips_per_step_at_B10": cfg.batch,
            "optimizer": f"Adam, lr {cfg.lr} cosine-decayed to {100 * LR_FLOOR:g} %, grad-norm clip 1.0",
            "loss": ("0.5 MSE(forward) + 0.5 MSE(backward)" if cfg.model == "tcsdl" else "MSE")
            + " on frames divided by the mean of Ybar (as at decode time)",
            "options": asdict(cfg),
            "command": " ".join(shlex.quote(a) for a in argv),
        },
        "metrics": {},
    }
    if init_from:
        card["training"]["fine_tuned_from"] = init_from
    return card


def simulator_description(kinds: tuple[str, ...] = TRAIN_KINDS) -> str:
    """Words for the model card: where simulated training clips come from."""
    return (f"emcs.simulate.sample_movie kinds {', '.join(kinds)} ({100 - 100 * STANDIN_FRACTION:.0f} %) "
            f"+ procedural stand-in movies ({100 * STANDIN_FRACTION:.0f} %); held-out kinds {HELDOUT_KINDS}")


def training_data_description(cfg: TcsConfig, kinds: tuple[str, ...] = TRAIN_KINDS) -> str:
    if cfg.data:
        return (f"user movies in {cfg.data}: random {cfg.patch}x{cfg.patch} crops of B consecutive "
                "frames, normalised per movie (0.1/99.9 percentiles); target = raw frames")
    return (f"{simulator_description(kinds)}; {cfg.patch}x{cfg.patch} patches, shot noise at a "
            f"log-uniform mean dose of {cfg.dose_range[0]:g}..{cfg.dose_range[1]:g} counts/pixel; fresh "
            f"random masks per sample ({_mask_words(cfg)}), density uniform in {cfg.density_range}; "
            "target = clean frames; "
            f"data generator seed {cfg.seed} (held-out evaluation uses other seeds)"
            + ("" if cfg.quantize_range is None else
               f"; half of the measurements quantized as `emcs encode --quantize STEP` does, STEP uniform in "
               f"{cfg.quantize_range[0]:g}..{cfg.quantize_range[1]:g}"))


def _mask_words(cfg: TcsConfig) -> str:
    if not cfg.mask_kinds:
        return "the encoder's seeded Bernoulli masks"
    return "hardware-like kinds " + ", ".join(cfg.mask_kinds) + " drawn uniformly (emcs.simulate.masks)"
