"""``emcs train tcs|dlss|sim``: train or fine-tune the networks (:mod:`emcs.train`)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import typer

from emcs.cli._app import train_app
from emcs.cli._common import (
    FORCE_OPTION,
    JSON_OPTION,
    QUIET_OPTION,
    Reporter,
    parse_ints,
    parse_range,
)
from emcs.errors import EmcsError


def _quantize_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    lo, hi = parse_range(text, "--quantize-steps")
    if not 0 < lo <= hi <= 4:
        raise EmcsError(f"--quantize-steps must lie in (0, 4] like encode --quantize, got {text!r}")
    return lo, hi


def _mask_kinds(text: str | None) -> tuple[str, ...]:
    from emcs.simulate.masks import MASK_KINDS

    if not text:
        return ()
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in MASK_KINDS]
    if bad:
        raise EmcsError(f"--mask-kinds must name kinds among {', '.join(MASK_KINDS)}, got {', '.join(bad)}")
    return kinds


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
    stages: int = typer.Option(None, "--stages", help="unfold: GAP + denoiser stages (default 5). With --resume WEIGHTS.safetensors: grow those weights to this many stages (the added ones start near identity)."),
    quantize_steps: str = typer.Option(
        None, "--quantize-steps", help="LO,HI: quantize half the simulated measurements as `emcs encode --quantize "
        "STEP` does, STEP uniform in LO..HI (for decoding quantized containers)."),
    seed: int = typer.Option(0, "--seed", help="Data seed."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch."),
    workers: int = typer.Option(
        0, "--workers", min=0, help="Processes that draw batches ahead of the optimiser (0: none; the batches are "
        "the same either way). Use them when a GPU trains faster than one core simulates."),
    mask_kinds: str = typer.Option(None, "--mask-kinds", help="Mask kinds to draw, comma-separated (bernoulli, shifted, blocks2, blocks4, rows, cols, xor); default: the encoder's masks."),
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train a TCS decoder on fresh simulated clips (or --data movies) with fresh random masks."""
    from emcs.train.tcs import MODEL_NAMES, TcsConfig, train

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
    cfg = TcsConfig(
        model=model, Bs=parse_ints(B, "--B"), steps=steps, out=str(out),
        data=str(data) if data else None, patch=patch, batch=batch, lr=lr, device=device,
        seed=seed, workdir=str(workdir) if workdir else None,
        resume=str(resume) if resume else None, checkpoint_every=checkpoint_every,
        max_minutes=max_minutes, max_cpu_minutes=max_cpu_minutes, density_range=parse_range(density, "--density"),
        dose_range=parse_range(dose, "--dose"), model_config=model_config, threads=threads,
        quantize_range=_quantize_range(quantize_steps), mask_kinds=_mask_kinds(mask_kinds), workers=workers,
    )
    rep = Reporter(quiet, as_json)
    with rep.progress(f"Training {model}", steps, unit="steps") as advance:
        card = train(cfg, progress=advance, log=rep.info)
    rep.table(f"Trained {out}", [
        ("architecture", card["architecture"]),
        ("steps", str(card["training"]["steps"])),
        ("B range", str(card["B_range"])),
        ("card", str(out.with_suffix(".json"))),
    ])
    rep.emit_json({"out": str(out), "card": card})


@train_app.command("dlss")
def train_dlss_cmd(
    steps: int = typer.Option(4000, "--steps", help="Optimiser steps (total, also when resuming)."),
    out: Path = typer.Option(Path("dlss-unet-s4-10.safetensors"), "--out", "-o", help="Weights to write (.safetensors + .json card)."),
    data: Path = typer.Option(None, "--data", help="Folder of your own full-resolution scans to fine-tune on."),
    data_fraction: float = typer.Option(0.75, "--data-fraction", help="Share of each batch drawn from --data (rest synthetic)."),
    data_noise: bool = typer.Option(False, "--data-noise", help="Treat --data scans as clean and add simulated detector noise."),
    data_zoom: str = typer.Option("1,1", "--data-zoom", help="Magnification range LO,HI for --data crops (e.g. 0.5,2: each scan's structures at several sizes)."),
    lattice_fraction: float = typer.Option(0.0, "--lattice-fraction", help="Share of each batch from atomic-resolution lattice scenes with scan artefacts (after --data)."),
    patch: int = typer.Option(128, "--patch", help="Training patch edge (pixels, multiple of 8)."),
    batch: int = typer.Option(8, "--batch", help="Patches per step."),
    resume: Path = typer.Option(None, "--resume", help="Training-state checkpoint to continue from."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Where to save training state (default OUT.ckpt)."),
    init: Path = typer.Option(None, "--init", help="Start from these weights (fine-tuning), e.g. the shipped model."),
    width: int = typer.Option(48, "--width", help="Network width (channels at half resolution)."),
    context: int = typer.Option(None, "--context", min=0, help="Residual blocks of the wide context branch (0: none)."),
    loss_pixels: str = typer.Option("all", "--loss-pixels", help="Pixels in the loss: all (also denoise measured ones) or unmeasured."),
    loss_floor: float = typer.Option(1e-3, "--loss-floor", help="Each patch's MSE is divided by (its bilinear MSE + this); larger weighs noisy patches more (towards plain MSE)."),
    probe_blur: str = typer.Option("0,1.5", "--probe-blur", help="Probe blur sigma range LO,HI (pixels) of the synthetic images; larger: scans oversampled relative to the probe."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for torch."),
    save_every: int = typer.Option(200, "--save-every", help="Checkpoint every N steps."),
    max_minutes: float = typer.Option(None, "--max-minutes", help="Stop (with the learning rate decayed) after this much training time."),
    factors: str = typer.Option("4,5,6,7,8,9,10", "--factors", help="Grid pitches to train on; a pitch given twice is drawn twice as often."),
    target: str = typer.Option("scan", "--target", help="What the network outputs: scan (full resolution, samples pasted back) or blurred (DLSS-STEM's 5x5, sigma 2.5 px blurred scan)."),
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train (or fine-tune with --data/--init) the DLSS supersampling network.

    Example: emcs train dlss --steps 4000 --out models/my-dlss.safetensors
    """
    from emcs.train.dlss import train_dlss

    if loss_pixels not in ("all", "unmeasured"):
        raise EmcsError(f"--loss-pixels must be all or unmeasured, got {loss_pixels!r}")
    rep = Reporter(quiet, as_json)
    if out.exists() and resume is None and init is None:
        rep.warn(f"{out} exists and will be replaced by the new training run")
    command = "emcs " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    bar = rep.show_progress

    def log(msg: str) -> None:
        if not bar and not quiet and not as_json:
            typer.echo(msg, err=True)

    with rep.progress("Training", steps, unit="steps") as advance:
        card = train_dlss(
            steps,
            out,
            data=data,
            data_fraction=data_fraction,
            data_noise=data_noise,
            data_zoom=parse_range(data_zoom, "--data-zoom"),
            lattice_fraction=lattice_fraction,
            patch=patch,
            batch=batch,
            resume=resume,
            checkpoint=checkpoint,
            width=width,
            lr=lr,
            seed=seed,
            threads=threads,
            save_every=save_every,
            init=init,
            context=context,
            all_pixels=loss_pixels == "all",
            loss_floor=loss_floor,
            probe_blur=parse_range(probe_blur, "--probe-blur"),
            max_minutes=max_minutes,
            factors=parse_ints(factors, "--factors"),
            target=target,
            command=command,
            log=log,
            advance=advance,
        )
    summary = {
        "out": str(out),
        "steps": card["steps"],
        "parameters": card["parameters"],
        "synthetic_validation_rmse": card["synthetic_validation_rmse"],
    }
    rep.info(json.dumps(summary))
    rep.emit_json(summary)


@train_app.command("sim")
def train_sim(
    out: str = typer.Option(..., "--out", "-o", help="Weights to write (.safetensors; model card beside it)."),
    channels: int = typer.Option(32, "--channels", help="Feature width (16, 32, 64)."),
    blocks: int = typer.Option(4, "--blocks", help="Residual blocks."),
    steps: int = typer.Option(4000, "--steps", help="Optimiser steps."),
    batch: int = typer.Option(8, "--batch", help="Patches per step."),
    patch: int = typer.Option(48, "--patch", help="Input patch size (targets are 2x)."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (cosine schedule)."),
    pool: int = typer.Option(240, "--pool", help="Simulated training images (Wiener targets computed once, cached)."),
    data_widefield: str = typer.Option(None, "--data-widefield", help="Your own wide-field movie (T x H x W) ..."),
    data_sr: str = typer.Option(None, "--data-sr", help="... and its SIM reconstructions (T x 2H x 2W) for fine-tuning."),
    init: str = typer.Option(None, "--init", help="Start from these weights (fine-tuning)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in the work folder."),
    work_dir: str = typer.Option(None, "--work-dir", help="Checkpoints and the data pool (default: <out>.work/)."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="CPU threads for torch."),
    checkpoint_every: int = typer.Option(200, "--checkpoint-every"),
    input_kind: str = typer.Option("widefield", "--input", help="widefield: the VDL-SIM network (one wide-field frame in); raw: the raw-input network (angles x phases raw frames in, simulated raw stacks)."),
    hold_out: str = typer.Option("mesh", "--hold-out", help="--input raw: structure family left out of training (filaments, tubules, mesh, vesicles, or none)."),
    wavelength: float = typer.Option(None, "--wavelength", metavar="NM", help="--input raw: emission wavelength of your microscope in nm (default 525)."),
    na: float = typer.Option(None, "--na", help="--input raw: numerical aperture of your objective (default 1.4)."),
    pixel_size: float = typer.Option(None, "--pixel-size", metavar="NM", help="--input raw: camera pixel size in nm, in the sample (default 80)."),
    max_minutes: float = typer.Option(None, "--max-minutes", help="Wall-clock budget; stops early, cosine follows it."),
    max_cpu_minutes: float = typer.Option(None, "--max-cpu-minutes", help="CPU-time budget of this process; fair on a shared machine."),
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train the VDL-SIM network (wide-field or raw input) on simulated data, or fine-tune it on your own pairs."""
    import numpy as np

    from emcs.train.sim import PairSampler, SimConfig, build_pool, train

    rep = Reporter(quiet, as_json)
    if input_kind not in ("widefield", "raw"):
        raise EmcsError(f"--input must be widefield or raw, got {input_kind!r}")
    if input_kind == "raw" and data_widefield is not None:
        raise EmcsError("--data-widefield/--data-sr pairs train the wide-field network; drop --input raw")
    optics_given = {k: v for k, v in (("wavelength_nm", wavelength), ("na", na), ("pixel_nm", pixel_size))
                    if v is not None}
    if optics_given and input_kind != "raw":
        raise EmcsError("--wavelength, --na and --pixel-size set the optics of --input raw training")
    if not out.endswith(".safetensors"):
        raise EmcsError("weights must be a .safetensors file", out)
    if os.path.exists(out) and not (force or resume):
        raise EmcsError("already exists; use --force to overwrite it (or --resume)", out)
    for name, v in (("--channels", channels), ("--blocks", blocks), ("--batch", batch), ("--pool", pool)):
        if v < 1:
            raise EmcsError(f"{name} must be at least 1, got {v}")
    if steps < 0:
        raise EmcsError(f"--steps must be >= 0, got {steps}")
    if patch < 16:
        raise EmcsError(f"--patch must be at least 16, got {patch}")
    if (data_widefield is None) != (data_sr is None):
        raise EmcsError("give both --data-widefield and --data-sr (pairs), or neither")
    work = work_dir or os.path.splitext(out)[0] + ".work"
    os.makedirs(work, exist_ok=True)
    cfg = SimConfig(channels=channels, blocks=blocks, steps=steps, batch=batch, patch=patch, lr=lr,
                      pool=pool, seed=seed, checkpoint_every=max(1, checkpoint_every), threads=threads,
                      input=input_kind, max_minutes=max_minutes, max_cpu_minutes=max_cpu_minutes)
    command = "emcs " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if input_kind == "raw":
        from emcs.train.sim_raw import raw_data

        with rep.progress("Rendering structures", pool, unit="structures") as advance:
            from emcs.sim.otf import Optics

            sampler, data_desc = raw_data(cfg, work, None if hold_out == "none" else hold_out, advance,
                                          Optics(**optics_given))
    elif data_widefield is not None:
        from emcs.io import read_stack

        wf, _ = read_stack(data_widefield)
        sr, _ = read_stack(data_sr)
        if wf.shape[0] != sr.shape[0] or sr.shape[1:] != (2 * wf.shape[1], 2 * wf.shape[2]):
            raise EmcsError(f"SR stack of shape {sr.shape} does not pair with the wide-field stack "
                            f"{wf.shape} (need T x 2H x 2W)", data_sr)
        sampler = PairSampler(wf.astype(np.float32), sr.astype(np.float32), patch, batch, seed,
                              simulated=False, margin=0)
        data_desc = {"training_data": f"user pairs {data_widefield} + {data_sr} ({wf.shape[0]} frames)"}
    else:
        pool_path = os.path.join(work, f"pool{cfg.pool_size}.npz")
        with rep.progress("Simulating pairs", pool, unit="pairs") as advance:
            data = build_pool(pool_path, pool, cfg.pool_size, progress=advance)
        sampler = PairSampler(data["wf"], data["sr"], patch, batch, seed, simulated=True)
        kinds, counts = np.unique(data["kind"], return_counts=True)
        data_desc = {"training_data": {
            "source": "simulated (emcs.train.sim.make_pair)",
            "images": pool, "image_size_camera_px": cfg.pool_size,
            "structures": {str(k): int(c) for k, c in zip(kinds, counts, strict=False)},
            "optics": "525 nm emission, NA 1.4, 80 nm camera pixels (40 nm SR pixels)",
            "inputs": "clean wide-field + Poisson/read noise on the fly, 2..3000 photons (SNR ~1-55), "
                      "background 1-30 photons, haze in half the samples",
            "targets": "Wiener SIM (w 0.05, estimated parameters) of 3000-photon raw stacks, "
                       "rolling-ball background removal radius 5"}}
    card_extra = dict(data_desc, command=command)
    with rep.progress("Training", steps, unit="steps") as advance:
        card = train(cfg, out, work, sampler, resume=resume, init=init, card_extra=card_extra,
                     log=(lambda s: None) if (quiet or as_json) else (lambda s: print(s, file=sys.stderr, flush=True)),
                     advance=advance)
    rep.table("train sim", [("weights", out), ("steps", str(card["training"].get("steps_done", steps))),
                            ("work folder", work)])
    rep.emit_json({"out": out, "card": card, "work_dir": work})
