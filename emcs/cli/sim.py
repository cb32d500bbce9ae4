"""Commands ``emcs sim-recon``, ``emcs resolution`` and ``emcs train sim`` (VDL-SIM).

``sim-recon`` turns a wide-field movie (one exposure per frame, VDL-SIM network)
or raw 3x3 SIM stacks (classical Wiener reconstruction with parameters estimated
from the data, or the network on the wide-field sum) into SR frames on a 2x finer
grid. ``resolution`` estimates the resolution by decorrelation analysis.
"""

from __future__ import annotations

import os
import shlex
import sys
import time

import typer

from emcs.cli._app import app, train_app
from emcs.cli._common import FORCE_OPTION, JSON_OPTION, QUIET_OPTION, Reporter
from emcs.errors import EmcsError

_INPUTS = ("widefield", "raw")
_METHODS = ("net", "wiener")
_BACKGROUNDS = ("none", "rolling-ball")


def _choice(value: str, options: tuple[str, ...], name: str) -> str:
    v = (value or "").strip().lower()
    if v not in options:
        raise EmcsError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return v


def _positive(value: float, name: str) -> float:
    if not value > 0:
        raise EmcsError(f"{name} must be positive, got {value}")
    return float(value)


@app.command("sim-recon")
def sim_recon(
    input: str = typer.Argument(..., help="Wide-field movie or raw SIM stack (.tif, .mrc, .npy ...)."),
    output: str = typer.Option(..., "--output", "-o", help="SR output (.tif/.mrc/.npy), 2x finer grid."),
    input_kind: str = typer.Option("widefield", "--input", help="widefield: one frame per time point; raw: angles x phases frames per time point."),
    method: str = typer.Option(None, "--method", help="net (VDL-SIM network; default for wide-field) or wiener (classical; default for raw)."),
    angles: int = typer.Option(3, "--angles", help="Pattern orientations per time point (raw input)."),
    phases: int = typer.Option(3, "--phases", help="Phase steps per orientation (raw input)."),
    order: str = typer.Option("angle-major", "--order", help="Raw frame order: angle-major (frame = angle*P + phase) or phase-major (phase*A + angle)."),
    wavelength: float = typer.Option(525.0, "--wavelength", help="Emission wavelength in nm."),
    na: float = typer.Option(1.4, "--na", help="Numerical aperture of the objective."),
    pixel_size: float = typer.Option(None, "--pixel-size", help="Camera pixel size in nm (default: from the file)."),
    wiener: float = typer.Option(0.08, "--wiener", help="Wiener parameter w (0.02-0.3; lower for high SNR)."),
    apodization: float = typer.Option(1.0, "--apodization", help="Apodisation cut-off as a fraction of f_c + |k|."),
    background: str = typer.Option("none", "--background", help="none or rolling-ball (applied to each SR frame)."),
    radius: float = typer.Option(5.0, "--radius", help="Rolling-ball radius in SR pixels."),
    weights: str = typer.Option(None, "--model", "--weights", help="Network weights (default: models/vdlsim-32.safetensors)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    tile: int = typer.Option(256, "--tile", help="Network tile size in input pixels (bounds memory)."),
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Super-resolve a wide-field movie (VDL-SIM) or raw SIM stacks (Wiener or network)."""
    import numpy as np

    from emcs.io import StackWriter, check_output, open_stack
    from emcs.sim.otf import Optics
    from emcs.sim.recon import ORDERS, validate_raw_layout

    rep = Reporter(quiet, as_json)
    input_kind = _choice(input_kind, _INPUTS, "--input")
    method = _choice(method or ("net" if input_kind == "widefield" else "wiener"), _METHODS, "--method")
    order = _choice(order, ORDERS, "--order")
    background = _choice(background, _BACKGROUNDS, "--background")
    if method == "wiener" and input_kind != "raw":
        raise EmcsError("--method wiener needs raw SIM frames (--input raw); a wide-field movie "
                        "has no structured illumination to reconstruct from")
    _positive(wavelength, "--wavelength")
    _positive(na, "--na")
    _positive(wiener, "--wiener")
    _positive(apodization, "--apodization")
    if tile < 32:
        raise EmcsError(f"--tile must be at least 32, got {tile}")
    if background == "rolling-ball":
        _positive(radius, "--radius")
    check_output(output, force)
    with open_stack(input) as stack:
        T_in, H, W = stack.shape
        n_out = T_in
        if input_kind == "raw":
            n_out = validate_raw_layout(T_in, angles, phases, order, input)
        if pixel_size is not None:
            px_nm = _positive(pixel_size, "--pixel-size")
        elif stack.pixel_size:
            px_nm = stack.pixel_size / 10.0
        else:
            px_nm = None
        if method == "wiener" and px_nm is None:
            raise EmcsError("the file records no pixel size; give the camera pixel size with --pixel-size NM", input)
        optics = Optics(wavelength, na, px_nm or 80.0)
        if method == "wiener" and optics.cutoff * optics.pixel_nm * 1e-3 >= 1.0:
            raise EmcsError(f"pixel size {px_nm} nm is too coarse for NA {na} at {wavelength} nm: "
                            "the OTF support exceeds the 2x SR grid")
        params: list = []
        t0 = time.time()
        if method == "wiener":
            from emcs.sim.recon import iter_wiener
            from emcs.sim.wiener import WienerSettings

            frames = iter_wiener(stack, optics, angles, phases, order,
                                 WienerSettings(wiener=wiener, apodization=apodization), params)
            card = None
        else:
            from emcs.nn.device import pick_device
            from emcs.sim.recon import iter_widefield, load_network, net_frame

            dev = pick_device(device)
            model, card = load_network(weights, dev)
            frames = (net_frame(model, f, dev, tile) for f in
                      iter_widefield(stack, input_kind, angles, phases, order))
        if background == "rolling-ball":
            from emcs.sim.background import remove_background

            frames = (remove_background(f, radius) for f in frames)
        out_px = stack.pixel_size / 2.0 if stack.pixel_size and pixel_size is None else (
            px_nm * 5.0 if px_nm else None)
        with StackWriter(output, (n_out, 2 * H, 2 * W), np.float32, pixel_size=out_px, force=force) as w, \
                rep.progress("Reconstructing", n_out) as advance:
            for f in frames:
                w.write(f)
                advance(1)
        elapsed = time.time() - t0
    summary = {
        "input": input, "output": output, "input_kind": input_kind, "method": method,
        "frames_in": T_in, "frames_out": n_out, "shape_out": [n_out, 2 * H, 2 * W],
        "pixel_size_nm_in": px_nm, "pixel_size_nm_out": px_nm / 2 if px_nm else None,
        "seconds": round(elapsed, 3), "frames_per_s": round(n_out / elapsed, 3) if elapsed > 0 else None,
        "background": background,
    }
    if method == "wiener":
        summary.update({"optics": optics.to_dict(), "wiener": wiener, "apodization": apodization,
                        "order": order, "angles": angles, "phases": phases, "parameters": params})
        _print_parameters(rep, params, optics)
    else:
        summary["weights"] = card.get("name", weights) if card else weights
    rep.table("sim-recon", [("output", output), ("method", method),
                            ("SR frames", f"{n_out} x {2 * H} x {2 * W}"),
                            ("pixel size", f"{px_nm / 2:g} nm" if px_nm else "unknown"),
                            ("speed", f"{summary['frames_per_s']} SR frames/s")])
    rep.emit_json(summary)


def _print_parameters(rep: Reporter, params: list, optics) -> None:
    """Show the estimated pattern of time point 0 and warn about suspicious estimates."""
    if not params:
        return
    rows = []
    for a, p in enumerate(params[0]):
        rows.append((f"angle {a}",
                     f"{p['angle_deg']:7.2f} deg  |k| {p['k']:.4f}/um = {p['k'] / optics.cutoff:.3f} f_c "
                     f"({1e3 / p['k']:.1f} nm)  phase {p['phase']:+.3f}  m {p['modulation']:.3f}  "
                     f"peak {p.get('peak_contrast', float('nan')):.0f}"))
    title = "estimated pattern (time point 0" + (
        f"; all {len(params)} in --json)" if len(params) > 1 else ")")
    rep.table(title, rows)
    for t, pats in enumerate(params):
        for msg in _suspicious(pats):
            rep.warn(f"time point {t}: {msg}")
            break


def _suspicious(pats: list[dict]) -> list[str]:
    """Warnings for estimates that point to a wrong frame order or failed estimation."""
    out = []
    ang = [p["angle_deg"] % 180.0 for p in pats]
    for i in range(len(ang)):
        for j in range(i + 1, len(ang)):
            d = abs(ang[i] - ang[j]) % 180.0
            if min(d, 180.0 - d) < 10.0:
                out.append(f"angles {i} and {j} have the same pattern orientation ({ang[i]:.1f} deg): "
                           "the frame order is probably wrong (check --order/--angles/--phases)")
    weak = [a for a, p in enumerate(pats) if p.get("peak_contrast", 99) < 5 or p["modulation"] < 0.1]
    if weak:
        out.append(f"weak pattern peaks for angle(s) {weak}: parameter estimation may have failed "
                   "(low SNR, or wrong --order/--angles/--phases)")
    return out


@app.command("resolution")
def resolution(
    image: str = typer.Argument(..., help="Image or stack on its native sampling grid."),
    pixel_size: float = typer.Option(None, "--pixel-size", help="Pixel size in nm (default: from the file)."),
    frame: int = typer.Option(None, "--frame", help="Analyse only this frame (default: every frame)."),
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Resolution by decorrelation analysis (Descloux et al. 2019).

    Never use it on zero-padded or upsampled images: the empty band makes the
    value meaningless.
    """
    import numpy as np

    from emcs.io import open_stack
    from emcs.sim.decorrelation import decorrelation_resolution

    rep = Reporter(quiet, as_json)
    with open_stack(image) as stack:
        if pixel_size is not None:
            px = _positive(pixel_size, "--pixel-size")
        elif stack.pixel_size:
            px = stack.pixel_size / 10.0
        else:
            raise EmcsError("the file records no pixel size; give it with --pixel-size NM", image)
        T = stack.shape[0]
        if frame is not None and not 0 <= frame < T:
            raise EmcsError(f"--frame {frame} is out of range (the stack has {T} frames)", image)
        idx = [frame] if frame is not None else list(range(T))
        results = []
        with rep.progress("Decorrelation", len(idx)) as advance:
            for i in idx:
                r = decorrelation_resolution(stack[i], px)
                r["frame"] = i
                results.append(r)
                advance(1)
    values = np.array([r["resolution_nm"] for r in results])
    finite = values[np.isfinite(values)]
    med = float(np.median(finite)) if finite.size else float("inf")
    summary = {"image": image, "pixel_size_nm": px, "frames": len(results),
               "resolution_nm": med, "per_frame": results}
    rows = [("pixel size", f"{px:g} nm"), ("frames", str(len(results))),
            ("resolution", f"{med:.1f} nm" + (" (median)" if len(results) > 1 else ""))]
    if len(results) > 1 and finite.size:
        rows.append(("range", f"{finite.min():.1f} - {finite.max():.1f} nm"))
    if not finite.size:
        rep.warn("no significant decorrelation peak: the image holds no resolvable structure above noise")
    rep.table("decorrelation resolution", rows)
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
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train the VDL-SIM network on simulated pairs, or fine-tune it on your own pairs."""
    import numpy as np

    from emcs.sim.train import PairSampler, TrainConfig, build_pool, train

    rep = Reporter(quiet, as_json)
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
    cfg = TrainConfig(channels=channels, blocks=blocks, steps=steps, batch=batch, patch=patch, lr=lr,
                      pool=pool, seed=seed, checkpoint_every=max(1, checkpoint_every), threads=threads)
    command = "emcs " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if data_widefield is not None:
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
        with rep.progress("Simulating pairs", pool) as advance:
            data = build_pool(pool_path, pool, cfg.pool_size, progress=advance)
        sampler = PairSampler(data["wf"], data["sr"], patch, batch, seed, simulated=True)
        kinds, counts = np.unique(data["kind"], return_counts=True)
        data_desc = {"training_data": {
            "source": "simulated (emcs.sim.train.make_pair)",
            "images": pool, "image_size_camera_px": cfg.pool_size,
            "structures": {str(k): int(c) for k, c in zip(kinds, counts, strict=False)},
            "optics": "525 nm emission, NA 1.4, 80 nm camera pixels (40 nm SR pixels)",
            "inputs": "clean wide-field + Poisson/read noise on the fly, 2..3000 photons (SNR ~1-55), "
                      "background 1-30 photons, haze in half the samples",
            "targets": "Wiener SIM (w 0.05, estimated parameters) of 3000-photon raw stacks, "
                       "rolling-ball background removal radius 5"}}
    card_extra = dict(data_desc, command=command)
    with rep.progress("Training", steps) as advance:
        card = train(cfg, out, work, sampler, resume=resume, init=init, card_extra=card_extra,
                     log=(lambda s: None) if (quiet or as_json) else (lambda s: print(s, file=sys.stderr, flush=True)),
                     advance=advance)
    rep.table("train sim", [("weights", out), ("steps", str(steps)), ("work folder", work)])
    rep.emit_json({"out": out, "card": card, "work_dir": work})
