"""Commands ``emcs subsample``, ``emcs supersample`` and ``emcs train dlss`` (DLSS-STEM).

Sparse scans written by ``emcs subsample`` as TIFF record the full scan size
and the pitch in their metadata (``dlss_full_shape``, ``dlss_factor``), so
``emcs supersample`` restores the exact original size. For other files (or
TIFFs from elsewhere) give ``--size H W``; without it the output is
``s*h x s*w`` with the first sample at pixel 0.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import typer

from emcs.cli._app import app, train_app
from emcs.cli._common import (
    FORCE_OPTION,
    JSON_OPTION,
    QUIET_OPTION,
    Reporter,
    parse_ints,
    parse_range,
)
from emcs.errors import EmcsError

_METHODS = ("net", "bilinear", "bicubic", "nearest", "lanczos")


def _pitch(factor: int | None, coverage: str | None) -> int:
    from emcs.dlss.sampling import parse_coverage

    if factor is None and coverage is None:
        raise EmcsError("give the grid pitch with --factor S (or --coverage 1/S^2)")
    s_cov = parse_coverage(coverage) if coverage is not None else None
    if factor is not None and s_cov is not None and factor != s_cov:
        raise EmcsError(f"--factor {factor} and --coverage {coverage} disagree (1/{factor * factor})")
    return factor if factor is not None else s_cov


def _read_dlss_meta(path: str) -> dict:
    """``dlss_full_shape`` / ``dlss_factor`` from an emcs-written sparse TIFF, else {}."""
    if not path.lower().endswith((".tif", ".tiff")):
        return {}
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
        return {k: meta[k] for k in ("dlss_full_shape", "dlss_factor") if k in (meta or {})}
    except Exception:
        return {}


@app.command("subsample")
def subsample_cmd(
    input: Path = typer.Argument(..., help="Full-resolution scan (.tif, .mrc, .npy, image); stacks frame by frame."),
    output: Path = typer.Option(..., "--output", "-o", help="Sparse scan to write (.tif keeps the full size for supersample)."),
    factor: int = typer.Option(None, "--factor", "-s", help="Grid pitch s: keep every s-th probe position per axis."),
    coverage: str = typer.Option(None, "--coverage", help="Coverage 1/s^2 instead of --factor, e.g. 1/25."),
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Simulate a sparse regular-grid STEM scan (DLSS-STEM protocol).

    Keeps probe positions o + i*s per axis with o = (N mod s)//2; the pixel size is
    multiplied by s. Example: emcs subsample scan.tif --coverage 1/25 -o sparse.tif
    """
    from emcs.dlss.sampling import sparse_shape, subsample, validate_factor
    from emcs.io import StackWriter, check_output, open_stack

    rep = Reporter(quiet, as_json)
    check_output(output, force)
    t0 = time.time()
    with open_stack(input) as stack:
        T, H, W = stack.shape
        s = _pitch(factor, coverage)
        validate_factor(s, (H, W))
        h, w = sparse_shape((H, W), s)
        px = stack.pixel_size * s if stack.pixel_size else None
        meta = {"dlss_full_shape": [H, W], "dlss_factor": s}  # read back by supersample (TIFF)
        with rep.progress("Subsampling", T) as advance, StackWriter(
            output, (T, h, w), stack.dtype, px, force, metadata=meta
        ) as wr:
            for chunk in stack.iter_chunks(8):
                wr.write(subsample(chunk, s))
                advance(len(chunk))
    summary = {
        "input": str(input),
        "output": str(output),
        "factor": s,
        "coverage": f"1/{s * s}",
        "frames": T,
        "full_shape": [H, W],
        "sparse_shape": [h, w],
        "pixel_size": px,
        "seconds": round(time.time() - t0, 3),
    }
    rep.table("subsample", [(k, str(v)) for k, v in summary.items()])
    rep.emit_json(summary)


def _smooth_width(text: str | None) -> float | str:
    """``--smooth``: 0.0 (none), a width in pixels, or 'auto'."""
    if text is None:
        return 0.0
    text = text.strip().lower()
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise EmcsError(f"--smooth must be 'auto' or a width in pixels, got {text!r}") from None
    if not 0.0 <= value <= 64.0:
        raise EmcsError(f"--smooth width must be between 0 and 64 pixels, got {text}")
    return value


@app.command("supersample")
def supersample_cmd(
    input: Path = typer.Argument(..., help="Sparse scan: the probe positions actually recorded (h x w per frame)."),
    output: Path = typer.Option(..., "--output", "-o", help="Full-resolution output (.tif, .mrc, .npy)."),
    factor: int = typer.Option(None, "--factor", "-s", help="Grid pitch s (default: from emcs subsample metadata)."),
    coverage: str = typer.Option(None, "--coverage", help="Coverage 1/s^2 instead of --factor, e.g. 1/25."),
    method: str = typer.Option("net", "--method", "-m", help="net | bilinear | bicubic | nearest | lanczos."),
    size: tuple[int, int] = typer.Option((0, 0), "--size", help="Full size H W (default: from metadata, else s*h x s*w)."),
    model_path: Path = typer.Option(None, "--model", help="Network weights (default: models/dlss-unet-s4-10.safetensors)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    tile: int = typer.Option(256, "--tile", help="Tile edge in output pixels (bounds memory)."),
    denoise_measured: bool = typer.Option(
        False, "--denoise-measured",
        help="net only: replace the measured samples by the network's denoised estimate (noisy low-dose scans)."),
    ensemble: int = typer.Option(
        1, "--ensemble", help="net only: average the network over 1, 2, 4 or 8 flips/rotations (that many times slower)."),
    smooth: str = typer.Option(
        None, "--smooth", metavar="auto|PX",
        help="Smooth the output (measured samples too) with a Gaussian: a width in pixels, or 'auto' to choose "
             "it per frame from the scan's own samples (noisy scans; four extra reconstructions per frame)."),
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Recover the full-resolution scan from a sparse regular-grid scan.

    Measured probe positions are kept exactly (unless --denoise-measured or --smooth); the pixel size is divided by s and
    the dtype kept (integers rounded and clipped). The network covers s = 4 ... 10
    (coverage 1/16 ... 1/100); other pitches fall back to bilinear with a warning.
    Example: emcs supersample sparse.tif -o full.tif
    """
    from emcs.dlss.sampling import check_full_size, default_full_size, grid_offset, validate_factor
    from emcs.dlss.supersample import auto_smoothing, cast_like, net_supports, supersample_frame
    from emcs.io import StackWriter, check_output, open_stack
    from emcs.nn.ensemble import ENSEMBLES

    rep = Reporter(quiet, as_json)
    method = method.strip().lower()
    if method not in _METHODS:
        raise EmcsError(f"--method must be one of {', '.join(_METHODS)}, got {method!r}")
    if tile < 32:
        raise EmcsError(f"--tile must be at least 32 pixels, got {tile}")
    check_output(output, force)
    t0 = time.time()
    with open_stack(input) as stack:
        T, h, w = stack.shape
        meta = _read_dlss_meta(str(input))
        if factor is None and coverage is None and "dlss_factor" in meta:
            s = int(meta["dlss_factor"])
        else:
            s = _pitch(factor, coverage)
            if "dlss_factor" in meta and int(meta["dlss_factor"]) != s:
                rep.warn(f"{input} was subsampled with factor {meta['dlss_factor']}, not {s}")
        validate_factor(s)
        if size != (0, 0):
            H, W = int(size[0]), int(size[1])
            check_full_size(H, h, s, "--size height")
            check_full_size(W, w, s, "--size width")
            size_source = "--size"
        elif "dlss_full_shape" in meta and int(meta.get("dlss_factor", s)) == s:
            H, W = (int(v) for v in meta["dlss_full_shape"])
            check_full_size(H, h, s, "recorded height")
            check_full_size(W, w, s, "recorded width")
            size_source = "metadata"
        else:
            H, W = default_full_size(h, s), default_full_size(w, s)
            size_source = "default s*n"
        used = method
        if denoise_measured and method != "net":
            raise EmcsError("--denoise-measured needs --method net (classical kernels keep the samples)")
        if ensemble not in ENSEMBLES:
            raise EmcsError(f"--ensemble must be one of {', '.join(map(str, ENSEMBLES))}, got {ensemble}")
        if ensemble != 1 and method != "net":
            raise EmcsError("--ensemble needs --method net")
        sigma = _smooth_width(smooth)
        if method == "net" and not net_supports(s):
            rep.warn(f"the network covers factors 4..10 (coverage 1/16..1/100); using bilinear for factor {s}")
            used = "bilinear"
        model, dev, card = None, None, None
        if used == "net":
            import torch

            from emcs.dlss.supersample import load_default_model
            from emcs.nn.device import pick_device

            dev = pick_device(device)
            if dev.type == "cpu":
                torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
            model, card = load_default_model(model_path, device=dev)
        px = stack.pixel_size / s if stack.pixel_size else None
        oy, ox = grid_offset(H, s), grid_offset(W, s)
        keep = not (denoise_measured and used == "net") and sigma == 0.0
        widths: list[float] = []  # smoothing width of each frame
        with StackWriter(output, (T, H, W), stack.dtype, px, force) as wr, rep.progress(
            "Supersampling", T
        ) as advance:
            for i in range(T):
                sparse = stack[i]
                width = sigma
                if sigma == "auto":
                    width, _ = auto_smoothing(sparse, s, (H, W), used, model, dev, tile)
                widths.append(width)
                full = supersample_frame(sparse, s, (H, W), used, model, dev, tile=tile, keep_measured=keep,
                                         ensemble=ensemble if used == "net" else 1, smooth=width)
                full = cast_like(full, stack.dtype)
                if keep:
                    full[oy::s, ox::s] = sparse  # exact, in the stored dtype
                wr.write(full)
                advance(1)
        dtype = str(stack.dtype)
    summary = {
        "input": str(input),
        "output": str(output),
        "factor": s,
        "coverage": f"1/{s * s}",
        "method": used,
        "measured_samples": ("smoothed" if any(widths) else "kept exactly" if keep or used != "net"
                             else "denoised"),
        "smooth_sigma": None if sigma == 0.0 or not widths else widths[0] if len(set(widths)) == 1 else widths,
        "ensemble": ensemble if used == "net" else None,
        "frames": T,
        "sparse_shape": [h, w],
        "full_shape": [H, W],
        "size_from": size_source,
        "dtype": dtype,
        "pixel_size": px,
        "model": None if card is None else str(model_path or "models/dlss-unet-s4-10.safetensors"),
        "device": None if dev is None else str(dev),
        "seconds": round(time.time() - t0, 3),
    }
    rep.table("supersample", [(k, str(v)) for k, v in summary.items() if v is not None])
    rep.emit_json(summary)


@train_app.command("dlss")
def train_dlss_cmd(
    steps: int = typer.Option(4000, "--steps", help="Optimiser steps (total, also when resuming)."),
    out: Path = typer.Option(Path("models/dlss-unet-s4-10.safetensors"), "--out", "-o", help="Weights to write (.safetensors + .json card)."),
    data: Path = typer.Option(None, "--data", help="Folder of your own full-resolution scans to fine-tune on."),
    data_fraction: float = typer.Option(0.75, "--data-fraction", help="Share of each batch drawn from --data (rest synthetic)."),
    data_noise: bool = typer.Option(False, "--data-noise", help="Treat --data scans as clean and add simulated detector noise."),
    data_zoom: str = typer.Option("1,1", "--data-zoom", help="Magnification range LO,HI for --data crops (e.g. 0.5,2: each scan's structures at several sizes)."),
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
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train (or fine-tune with --data/--init) the DLSS supersampling network.

    Example: emcs train dlss --steps 4000 --out models/my-dlss.safetensors
    """
    from emcs.dlss.train import train_dlss

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

    with rep.progress("Training", steps) as advance:
        card = train_dlss(
            steps,
            out,
            data=data,
            data_fraction=data_fraction,
            data_noise=data_noise,
            data_zoom=parse_range(data_zoom, "--data-zoom"),
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
