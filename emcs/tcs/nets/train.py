"""Training loop for the neural TCS decoders (``emcs train tcs``).

Every step draws a fresh batch (:func:`emcs.tcs.nets.data.make_batch`) from a
generator seeded by ``(seed, step)``, so a resumed run sees exactly the data
an uninterrupted run would have seen. The learning rate follows a cosine
decay over the run's progress, which is the largest of ``step / steps``,
``elapsed / max_minutes`` and ``cpu time / max_cpu_minutes``, so a wall-clock
or CPU-time budget ends with a cooled-down model (a CPU-time budget is fair
between runs that share a machine). Checkpoints (own state dict, ``torch.save``) go to ``workdir`` and are
loaded with ``weights_only=True``; the loss log is a CSV file.
"""

from __future__ import annotations

import csv
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emcs.errors import EmcsError

MODEL_NAMES = ("unfold", "tcsdl")

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
class TrainConfig:
    """Options of one training run (see ``emcs train tcs --help``)."""

    model: str = "unfold"
    Bs: tuple[int, ...] = (10, 20, 30)
    steps: int = 3000
    out: str = "models/tcs-unfold.safetensors"
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


def build_model(name: str, config: dict | None = None):
    """A fresh network by short name ('unfold' or 'tcsdl') with constructor kwargs."""
    from emcs.tcs.nets.tcsdl import TcsDlNet
    from emcs.tcs.nets.unfold import UnfoldNet

    config = dict(config or {})
    if name == "unfold":
        return UnfoldNet(**config)
    if name == "tcsdl":
        return TcsDlNet(**config)
    raise EmcsError(f"--model must be one of {', '.join(MODEL_NAMES)}, got {name!r}")


def model_loss(model, y, masks, target):
    """The training loss of a model: its own ``loss`` method if any, else MSE."""
    import torch.nn.functional as F

    if hasattr(model, "loss"):
        return model.loss(y, masks, target)
    return F.mse_loss(model(y, masks), target)


def batch_size_for(B: int, batch: int) -> int:
    """Clips per step for B frames: ``batch`` at B = 10, scaled by 10 / B (same frames per step)."""
    return max(1, round(batch * 10 / B))


def _to_torch(batch, device):
    import torch

    return tuple(torch.from_numpy(a).to(device) for a in (batch.y, batch.masks, batch.target))


def train(cfg: TrainConfig, progress: Callable[[int], None] | None = None, log=print) -> dict:
    """Run (or resume) a training run; save the final model with its card.

    Returns the card written next to ``cfg.out``.
    """
    import torch

    from emcs.nn.device import pick_device
    from emcs.nn.weights import save_model
    from emcs.tcs.nets.data import FolderClips, make_batch
    from emcs.tcs.physics import mask_sum

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    for B in cfg.Bs:
        if not 2 <= B <= 64:
            raise EmcsError(f"--B values must be between 2 and 64, got {B}")
    if cfg.patch < 16 or cfg.patch % 4:
        raise EmcsError(f"--patch must be a multiple of 4 and at least 16, got {cfg.patch}")
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    if out.suffix != ".safetensors":
        raise EmcsError("--out must end in .safetensors", out)
    workdir = Path(cfg.workdir) if cfg.workdir else out.parent / f".{out.stem}-train"
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt_path = workdir / "checkpoint.pt"
    log_path = workdir / "loss.csv"
    folder = FolderClips(cfg.data) if cfg.data else None
    if folder is not None:
        folder.check(max(cfg.Bs), cfg.patch)
    model_config = dict(cfg.model_config)
    if cfg.model == "tcsdl":
        model_config.setdefault("b_max", max(cfg.Bs))
    model = build_model(cfg.model, model_config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, elapsed, cpu_elapsed = 0, 0.0, 0.0
    init_from: dict | None = None  # the shipped weights a fine-tune started from
    counts: dict[str, int] = {}  # training clips per source
    first_step: dict[str, int] = {}  # first step that used each source
    if cfg.resume:
        rpath = Path(cfg.resume)
        if rpath.suffix == ".safetensors":  # fine-tune from shipped weights
            from emcs.nn.weights import load_model
            from emcs.tcs.nets.api import BUILDERS

            loaded, card = load_model(rpath, BUILDERS)
            if card["architecture"] != model_architecture(cfg.model):
                raise EmcsError(f"these weights are {card['architecture']!r}, not --model {cfg.model}", rpath)
            model = loaded.to(device)  # the shipped network with its own config
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            prev = card.get("training", {})
            init_from = {"name": card.get("name"), "steps": prev.get("steps"),
                         "wall_clock_s": prev.get("wall_clock_s"), "cpu_s": prev.get("cpu_s"),
                         "command": prev.get("command")}
        else:
            try:
                state = torch.load(rpath, map_location=device, weights_only=True)
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["opt"])
            except (OSError, RuntimeError, KeyError) as exc:
                raise EmcsError(f"cannot resume from this checkpoint ({exc})", rpath) from exc
            step, elapsed = int(state["step"]), float(state["elapsed"])
            cpu_elapsed = float(state.get("cpu_elapsed", 0.0))
            init_from = state.get("init_from") or None
            counts.update(state.get("counts", {}))
            first_step.update(state.get("first_step", {}))
    budget = cfg.max_minutes * 60.0 if cfg.max_minutes else None
    cpu_budget = cfg.max_cpu_minutes * 60.0 if cfg.max_cpu_minutes else None
    c0 = time.process_time() - cpu_elapsed
    new_log = not (cfg.resume and log_path.exists())
    logf = open(log_path, "w" if new_log else "a", newline="")
    writer = csv.writer(logf)
    if new_log:
        writer.writerow(["step", "elapsed_s", "B", "loss", "psnr_db", "lr"])
    t0 = time.time() - elapsed
    recent: list[float] = []

    def frac() -> float:
        p = step / cfg.steps
        if budget:
            p = max(p, (time.time() - t0) / budget)
        if cpu_budget:
            p = max(p, (time.process_time() - c0) / cpu_budget)
        return min(p, 1.0)

    def checkpoint():
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
             "elapsed": time.time() - t0, "cpu_elapsed": time.process_time() - c0,
             "counts": counts, "first_step": first_step, "init_from": init_from},
            tmp,
        )
        os.replace(tmp, ckpt_path)

    def card():
        return make_card(cfg, model, out, step, time.time() - t0, counts, first_step,
                         cpu_seconds=time.process_time() - c0, init_from=init_from)

    model.train()
    try:
        while frac() < 1.0:
            rng = np.random.default_rng([cfg.seed, step])
            B = int(rng.choice(cfg.Bs))
            nb = batch_size_for(B, cfg.batch)
            batch = make_batch(
                rng, B, cfg.patch, nb, density_range=cfg.density_range,
                dose_range=cfg.dose_range, folder=folder, quantize_range=cfg.quantize_range,
            )
            for src, k in batch.sources.items():
                counts[src] = counts.get(src, 0) + k
                first_step.setdefault(src, step)
            y, m, t = _to_torch(batch, device)
            s = (y / mask_sum(m)).mean(dim=(1, 2)).clamp_min(1e-3)  # as decode_measurements does
            y, t = y / s[:, None, None], t / s[:, None, None, None]
            lr = cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac())))
            for g in opt.param_groups:
                g["lr"] = lr
            loss = model_loss(model, y, m, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            lv = loss.item()
            recent.append(lv)
            writer.writerow([step, f"{time.time() - t0:.1f}", B, f"{lv:.6g}",
                             f"{-10 * math.log10(max(lv, 1e-12)):.3f}", f"{lr:.3g}"])
            if progress is not None:
                progress(1)
            if step % cfg.checkpoint_every == 0:
                logf.flush()
                checkpoint()
                save_model(out, model, card())  # a usable snapshot while training runs
                model.train()
                mean = sum(recent) / len(recent)
                log(f"step {step}: mean loss {mean:.5f} ({-10 * math.log10(max(mean, 1e-12)):.2f} dB), "
                    f"lr {lr:.2e}, {time.time() - t0:.0f} s")
                recent.clear()
    finally:
        logf.close()
    checkpoint()
    model.eval()
    return save_model(out, model, card())


def make_card(cfg: TrainConfig, model, out: Path, step: int, seconds: float, counts: dict,
              first_step: dict, cpu_seconds: float | None = None, init_from: dict | None = None) -> dict:
    """The model card of a (finished or snapshot) training run; metrics are added by evaluation."""
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]]
    trained = sorted(set(cfg.Bs))  # a B given twice in --B is drawn twice as often
    card = {
        "architecture": model_architecture(cfg.model),
        "config": dict(model.config),
        "name": out.stem,
        "description": DESCRIPTIONS[cfg.model],
        "rank": 0 if cfg.model == "unfold" else 1,  # find_model prefers lower ranks
        "B_range": [min(cfg.Bs), max(cfg.Bs)],
        "B_trained": trained,
        "B_draw_weights": {str(b): cfg.Bs.count(b) / len(cfg.Bs) for b in trained},
        "density_range": list(cfg.density_range),
        "training": {
            "data": training_data_description(cfg),
            "clips_by_source": dict(counts),
            "first_step_by_source": dict(first_step),
            "steps": step,
            "wall_clock_s": round(seconds, 1),
            "cpu_s": None if cpu_seconds is None else round(cpu_seconds, 1),
            "patch": cfg.patch,
            "clips_per_step_at_B10": cfg.batch,
            "optimizer": f"Adam, lr {cfg.lr} cosine-decayed to 2 %, grad-norm clip 1.0",
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


def model_architecture(name: str) -> str:
    from emcs.tcs.nets import tcsdl, unfold

    return {"unfold": unfold.ARCHITECTURE, "tcsdl": tcsdl.ARCHITECTURE}[name]


def training_data_description(cfg: TrainConfig) -> str:
    if cfg.data:
        return (f"user movies in {cfg.data}: random {cfg.patch}x{cfg.patch} crops of B consecutive "
                "frames, normalised per movie (0.1/99.9 percentiles); target = raw frames")
    from emcs.tcs.nets.data import simulator_description

    return (f"{simulator_description()}; {cfg.patch}x{cfg.patch} patches, shot noise at a "
            f"log-uniform mean dose of {cfg.dose_range[0]:g}..{cfg.dose_range[1]:g} counts/pixel; fresh "
            f"random masks per sample, density uniform in {cfg.density_range}; target = clean frames; "
            f"data generator seed {cfg.seed} (held-out evaluation uses other seeds)"
            + ("" if cfg.quantize_range is None else
               f"; half of the measurements quantized as `emcs encode --quantize STEP` does, STEP uniform in "
               f"{cfg.quantize_range[0]:g}..{cfg.quantize_range[1]:g}"))
