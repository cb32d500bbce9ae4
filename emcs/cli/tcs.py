"""Temporal compressive sensing commands: ``encode``, ``decode``, ``info``, ``demo``.

Thin layer: parse and validate options, then delegate to :mod:`emcs.tcs`.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from emcs.cli import _dist
from emcs.cli._app import app
from emcs.cli._common import FORCE_OPTION, JSON_OPTION, QUIET_OPTION, Reporter
from emcs.errors import EmcsError


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


@app.command("encode")
def encode_cmd(
    inputs: list[str] = typer.Argument(..., help="Image stacks (.tif, .mrc, .npy, 'frames/*.png')."),
    output: Path = typer.Option(None, "--output", "-o", help="Container to write (only with one input); default <stem>.npz beside the input."),
    B: int = typer.Option(None, "-B", help="Frames per measurement (default 10, or the --mask's B)."),
    seed: int = typer.Option(None, "--seed", help="Mask seed, 0 .. 2**32-1 (default: random, recorded)."),
    density: float = typer.Option(0.5, "--density", help="Fraction of open mask pixels."),
    mask: Path = typer.Option(None, "--mask", help="Explicit binary (B, H, W) mask (.npy/.tif) instead of generated masks."),
    pack: str = typer.Option(
        None, "--pack",
        help="Lossless coding of the measurements: none (memory-mappable, fastest; the default), "
             "predictive (divides the known masks out: smallest; the default with --quantize), "
             "jpegxl or zstd."),
    quantize: float = typer.Option(
        None, "--quantize", metavar="STEP",
        help="Lossy, for counting data: quantize the sums with a step of STEP x their shot noise "
             "(Anscombe domain; 1 adds 8% noise variance, 2-2.7x smaller than lossless packing)."),
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
    scheduler: str = _dist.SCHEDULER_OPTION,
    cluster: str = _dist.CLUSTER_OPTION,
    cluster_config: str = _dist.CLUSTER_CONFIG_OPTION,
    resources: str = _dist.RESOURCES_OPTION,
    keep_going: bool = _dist.KEEP_GOING_OPTION,
) -> None:
    """Compress movies: every B frames become one coded measurement (Y = sum C_b X_b)."""
    from emcs.io import check_output, open_stack
    from emcs.tcs.encode import default_output, encode_stack, load_mask_file

    rep = Reporter(quiet, as_json)
    if output is not None and len(inputs) > 1:
        raise EmcsError(f"-o/--output names one file, but {len(inputs)} inputs were given; "
                        "leave out -o to write <stem>.npz beside each input")
    masks = None
    if mask is not None:
        if seed is not None:
            raise EmcsError("--seed and --mask exclude each other (an explicit mask has no seed)")
        masks = load_mask_file(mask)
        if B is not None and B != masks.shape[0]:
            raise EmcsError(f"the mask has {masks.shape[0]} frames but -B is {B}", mask)
    B = 10 if B is None else B
    outputs = [str(output) if output is not None else default_output(p) for p in inputs]
    if len(set(map(os.path.abspath, outputs))) != len(outputs):
        raise EmcsError("two inputs would write the same container; encode them separately with -o")
    for inp, out in zip(inputs, outputs, strict=True):
        if os.path.abspath(inp) == os.path.abspath(out):
            raise EmcsError("the output would overwrite the input", out)
        check_output(out, force)
    # open every input first so that a bad file stops the run before any work (--keep-going: later)
    frames = {}
    for inp in () if keep_going else inputs:
        with open_stack(inp) as stack:
            frames[inp] = stack.n_frames
            if masks is not None and masks.shape[1:] != stack.frame_shape:
                raise EmcsError(
                    f"the mask has frames of {masks.shape[1:]} but {inp} has {stack.frame_shape}",
                    mask,
                )
    results = []
    group = masks.shape[0] if masks is not None else B
    options = dict(B=B, seed=seed, density=density, masks=masks, force=force, pack=pack,
                   quantize=quantize, mask_source=None if mask is None else str(mask))
    dist = _dist.Dist(scheduler, cluster, cluster_config, resources, keep_going)
    done = dist.encode(rep, inputs, outputs, options, frames.get(inputs[0]), group) if dist else []
    for inp, out in zip(inputs, outputs, strict=True):
        if not dist:
            n_groups = -(-frames[inp] // group) if group >= 1 else None  # encode_stack checks B
            with rep.progress(f"Encoding {os.path.basename(inp)}", n_groups) as advance:
                res = encode_stack(inp, out, progress=advance, **options)
        elif (res := done.pop(0)) is None:
            continue  # failed and reported (--keep-going)
        results.append(res)
        T, H, W = res["shape"]
        mask_txt = (f"seed {res['seed']}, density {res['mask']['density']:g}"
                    if res["mask"]["kind"] == "generated" else f"explicit mask {mask}")
        rep.info(
            f"{inp} -> {out}: {T} frames {H}x{W} {res['dtype']}, B={res['B']}, "
            f"{res['n_measurements']} measurements ({res['measurement_dtype']}"
            + (f", {res['measurement_codec']}" if res.get("measurement_codec") else "")
            + (f", Anscombe step {quantize:g}" if quantize else "") + f"), {mask_txt}; "
            f"{_mb(res['input_bytes'])} -> {_mb(res['output_bytes'])}, ratio {res['ratio']:.2f}, "
            f"{res['mb_per_s']:.0f} MB/s"
        )
    rep.emit_json(results[0] if len(results) == 1 else {"results": results})
    dist.finish(len(inputs))


@app.command("decode")
def decode_cmd(
    container: Path = typer.Argument(..., help="Measurement container (.npz) from `emcs encode`."),
    output: Path = typer.Option(None, "--output", "-o", help="Output stack (.tif, .mrc, .npy); default <stem>.tif beside the container."),
    method: str = typer.Option(
        "auto", "--method", "-m",
        help="auto (network if one fits, else GAP-TV), gap-tv, net, or a network model name."),
    iters: int = typer.Option(40, "--iters", help="GAP-TV iterations."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    noise: str = typer.Option("auto", "--noise", help="GAP-TV settings: auto (from the noise the encoder measured), low or high."),
    ensemble: int = typer.Option(
        1, "--ensemble", help="Network: average over 1, 2, 4 or 8 flips/rotations (N x slower, a little sharper)."),
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
    scheduler: str = _dist.SCHEDULER_OPTION,
    cluster: str = _dist.CLUSTER_OPTION,
    cluster_config: str = _dist.CLUSTER_CONFIG_OPTION,
    resources: str = _dist.RESOURCES_OPTION,
) -> None:
    """Reconstruct the movie from a measurement container."""
    from emcs.tcs.container import open_container
    from emcs.tcs.decode import decode_container

    rep = Reporter(quiet, as_json)
    method = method.strip().lower()

    def note(text: str) -> None:
        if method == "net" and "using GAP-TV" in text:
            rep.warn(text)
        else:
            rep.info(f"note: {text}")

    options = dict(method=method, iters=iters, device=device, force=force, noise=noise.strip().lower(),
                   ensemble=ensemble, on_note=note)
    if dist := _dist.Dist(scheduler, cluster, cluster_config, resources):
        res = dist.decode(rep, container, output, options)
    else:
        with open_container(container) as opened, \
                rep.progress(f"Decoding {container.name}", opened.n_measurements) as advance:
            res = decode_container(opened, output, progress=advance, **options)
    T, H, W = res["shape"]
    rep.info(
        f"{container} -> {res['output']}: {T} frames {H}x{W} {res['dtype']} with "
        f"{', '.join(res['decoders'])}"
        + (f" (noise {res['noise_level']})" if "gap-tv" in res["decoders"] else "")
        + f" on {res['device']} in {res['seconds']:.1f} s "
        f"({res['frames_per_s']:.1f} frames/s)"
    )
    rep.emit_json(res)


@app.command("info")
def info_cmd(
    file: Path = typer.Argument(..., help="A measurement container (.npz) or an image stack."),
    check: bool = typer.Option(
        False, "--check",
        help="Check the container (metadata, members, checksum) and list every problem found; "
             "exit code 2 when there is one."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Describe a container (shape, dtype, B, ratio, seed ...) or an image stack."""
    from emcs.io import open_stack
    from emcs.tcs.container import load_container

    rep = Reporter(False, as_json)
    if check:
        _check_container(file, rep)
        return
    if str(file).lower().endswith(".npz"):
        summary = load_container(file).summary()
        rows = [
            ("file", str(file)),
            ("kind", "TCS measurement container, format version " + str(summary["format_version"])),
            ("input", f"{summary['input_shape'][0]} frames {summary['input_shape'][1]}x"
                      f"{summary['input_shape'][2]} {summary['input_dtype']}"
                      + (f" ({summary['source']})" if summary["source"] else "")),
            ("value range", f"{summary['value_range'][0]:g} .. {summary['value_range'][1]:g}"),
            ("pixel size", "unknown" if summary["pixel_size"] is None else f"{summary['pixel_size']:g} Å"),
            ("B", str(summary["B"])),
            ("measurements", f"{summary['n_measurements']} ({summary['measurement_dtype']}), "
                             f"last group {summary['counts_last']} frames"),
            ("coding", summary["measurement_codec"]
                       + (f", quantized (Anscombe step {summary['measurement_quantization']['step']:g}, lossy)"
                          if summary.get("measurement_quantization") else "")),
            ("masks", f"{summary['mask_kind']}"
                      + (f", {summary['mask_algorithm']}, seed {summary['seed']}"
                         if summary["mask_kind"] == "generated" else "")
                      + f", density {summary['density']:.3f}"),
            ("size", f"{_mb(summary['input_bytes'])} -> {_mb(summary['file_bytes'])}, "
                     f"ratio {summary['ratio']:.2f}"),
            ("emcs version", str(summary["emcs_version"])),
        ]
    else:
        with open_stack(file) as stack:
            summary = {
                "path": str(file),
                "kind": "stack",
                "format": stack.metadata.get("format"),
                "shape": list(stack.shape),
                "dtype": stack.dtype.name,
                "pixel_size": stack.pixel_size,
                "bytes": stack.nbytes,
            }
        T, H, W = summary["shape"]
        rows = [
            ("file", str(file)),
            ("kind", f"image stack ({summary['format']})"),
            ("shape", f"{T} frames {H}x{W}"),
            ("dtype", summary["dtype"]),
            ("pixel size", "unknown" if summary["pixel_size"] is None else f"{summary['pixel_size']:g} Å"),
            ("pixel data", _mb(summary["bytes"])),
        ]
    rep.table(str(file), rows)
    rep.emit_json(summary)


def _check_container(file: Path, rep: Reporter) -> None:
    """``emcs info --check``: every problem of a container on stderr (and in the JSON); exit 2 if any."""
    from emcs.tcs.container import validate

    problems = validate(file)
    rep.emit_json({"path": str(file), "valid": not problems, "problems": problems})
    if not problems:
        rep.info(f"{file}: a valid measurement container")
        return
    for problem in problems:
        typer.echo(f"emcs: {file}: {problem}", err=True)
    raise typer.Exit(2)
