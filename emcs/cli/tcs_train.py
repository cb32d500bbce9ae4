"""``emcs train tcs``: train or fine-tune a neural TCS decoder."""

from __future__ import annotations

from pathlib import Path

import typer

from emcs.cli._app import train_app
from emcs.cli._common import JSON_OPTION, QUIET_OPTION, Reporter, parse_ints, parse_range
from emcs.errors import EmcsError


def _quantize_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    lo, hi = parse_range(text, "--quantize-steps")
    if not 0 < lo <= hi <= 4:
        raise EmcsError(f"--quantize-steps must lie in (0, 4] like encode --quantize, got {text!r}")
    return lo, hi


@train_app.command("tcs")
def train_tcs(
    model: str = typer.Option("unfold", "--model", help="Network: unfold (default decoder) or tcsdl (paper)."),
    B: str = typer.Option("10,20,30", "--B", help="Frames per measurement to train on, comma-separated; a value given twice is drawn twice as often."),
    steps: int = typer.Option(3000, "--steps", min=1, help="Optimiser steps."),
    out: Path = typer.Option(..., "--out", "-o", help="Output weights, models/NAME.safetensors (+ .json card)."),
    data: Path = typer.Option(None, "--data", help="Folder of your own TIFF/MRC movies (default: simulated)."),
    patch: int = typer.Option(64, "--patch", help="Training patch edge in pixels."),
    batch: int = typer.Option(4, "--batch", min=1, help="Clips per step at B=10 (scaled by 10/B)."),
    resume: Path = typer.Option(None, "--resume", help="Checkpoint (.pt) to resume, or .safetensors to fine-tune."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (cosine decay)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    workdir: Path = typer.Option(None, "--workdir", help="Checkpoints and loss.csv (default: next to --out)."),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    max_minutes: float = typer.Option(None, "--max-minutes", help="Wall-clock budget; stops early, cosine follows it."),
    max_cpu_minutes: float = typer.Option(
        None, "--max-cpu-minutes", help="CPU-time budget (all threads of this process); fair on a shared machine."),
    density: str = typer.Option("0.35,0.65", "--density", help="Mask density range LO,HI."),
    dose: str = typer.Option("1,1000", "--dose", help="Mean counts/pixel range LO,HI for simulated shot noise."),
    width: int = typer.Option(None, "--width", help="unfold: denoiser channels (default 32)."),
    stages: int = typer.Option(None, "--stages", help="unfold: GAP + denoiser stages (default 5)."),
    quantize_steps: str = typer.Option(
        None, "--quantize-steps", help="LO,HI: quantize half the simulated measurements as `emcs encode --quantize "
        "STEP` does, STEP uniform in LO..HI (for decoding quantized containers)."),
    seed: int = typer.Option(0, "--seed", help="Data seed."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch."),
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train a TCS decoder on fresh simulated clips (or --data movies) with fresh random masks."""
    from emcs.tcs.nets.train import MODEL_NAMES, TrainConfig, train

    if model not in MODEL_NAMES:
        raise EmcsError(f"--model must be one of {', '.join(MODEL_NAMES)}, got {model!r}")
    if resume is not None and not resume.is_file():
        raise EmcsError("no such checkpoint", resume)
    model_config = {}
    if model == "unfold":
        if width is not None:
            model_config["width"] = width
        if stages is not None:
            model_config["stages"] = stages
    cfg = TrainConfig(
        model=model, Bs=parse_ints(B, "--B"), steps=steps, out=str(out),
        data=str(data) if data else None, patch=patch, batch=batch, lr=lr, device=device,
        seed=seed, workdir=str(workdir) if workdir else None,
        resume=str(resume) if resume else None, checkpoint_every=checkpoint_every,
        max_minutes=max_minutes, max_cpu_minutes=max_cpu_minutes, density_range=parse_range(density, "--density"),
        dose_range=parse_range(dose, "--dose"), model_config=model_config, threads=threads,
        quantize_range=_quantize_range(quantize_steps),
    )
    rep = Reporter(quiet, as_json)
    with rep.progress(f"Training {model}", steps) as advance:
        card = train(cfg, progress=advance, log=rep.info)
    rep.table(f"Trained {out}", [
        ("architecture", card["architecture"]),
        ("steps", str(card["training"]["steps"])),
        ("B range", str(card["B_range"])),
        ("card", str(out.with_suffix(".json"))),
    ])
    rep.emit_json({"out": str(out), "card": card})
