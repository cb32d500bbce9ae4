"""Commands ``emcs subsample`` and ``emcs supersample`` (DLSS-STEM).

Parse the options, call :func:`emcs.dlss.files.subsample_file` or
:func:`emcs.dlss.files.supersample_file`, print the summary.
"""

from __future__ import annotations

import typer

from emcs.cli import _dist
from emcs.cli._app import app
from emcs.cli._common import (
    DATASET_OPTION,
    EER_FRAMES_OPTION,
    EER_UPSAMPLING_OPTION,
    FORCE_OPTION,
    JSON_OPTION,
    QUIET_OPTION,
    Reporter,
    check_stack_output,
    check_stdout_free,
    stack_options,
    staged_input,
)
from emcs.cli.schema import with_shape
from emcs.errors import EmcsError


@app.command("subsample")
def subsample_cmd(
    input: str = typer.Argument(..., metavar="INPUT", help="Full-resolution scan (.tif, .mrc, .npy, image, vendor formats; - for standard input); stacks frame by frame."),
    output: str = typer.Option(..., "--output", "-o", help="Sparse scan to write (.tif keeps the full size for supersample; - for a TIFF on standard output)."),
    factor: int = typer.Option(None, "--factor", "-s", help="Grid pitch s: keep every s-th probe position per axis."),
    coverage: str = typer.Option(None, "--coverage", help="Coverage 1/s^2 instead of --factor, e.g. 1/25."),
    dataset: str = DATASET_OPTION,
    eer_frames: int = EER_FRAMES_OPTION,
    eer_upsampling: int = EER_UPSAMPLING_OPTION,
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Simulate a sparse regular-grid STEM scan (DLSS-STEM protocol).

    Keeps probe positions o + i*s per axis with o = (N mod s)//2; the pixel size is
    multiplied by s. Example: emcs subsample scan.tif --coverage 1/25 -o sparse.tif
    """
    from emcs.dlss.files import subsample_file

    rep = Reporter(quiet, as_json)
    check_stdout_free(output, as_json)
    check_stack_output(output, force)
    with staged_input(input, stack_options(dataset, eer_frames, eer_upsampling)) as path, \
            rep.progress_callback("Subsampling") as progress:
        summary = subsample_file(path, output, factor, coverage, force=force, progress=progress)
    with_shape(summary, "frames", "sparse_shape")["input"] = input
    rep.table("subsample", [(k, str(v)) for k, v in summary.items()])
    rep.emit_json(summary)


def _smooth_width(text: str | None) -> float | str:
    """``--smooth``: 0.0 (none), a width in pixels, or 'auto' (the range is checked by the library)."""
    if text is None:
        return 0.0
    text = text.strip().lower()
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise EmcsError(f"--smooth must be 'auto' or a width in pixels, got {text!r}") from None
    return value


@app.command("supersample")
def supersample_cmd(
    input: str = typer.Argument(..., metavar="INPUT", help="Sparse scan: the probe positions actually recorded (h x w per frame); - for standard input."),
    output: str = typer.Option(..., "--output", "-o", help="Full-resolution output (.tif, .mrc, .npy, a frame pattern 'frames/f_%04d.tif', or - for a TIFF on standard output)."),
    factor: int = typer.Option(None, "--factor", "-s", help="Grid pitch s (default: from emcs subsample metadata)."),
    coverage: str = typer.Option(None, "--coverage", help="Coverage 1/s^2 instead of --factor, e.g. 1/25."),
    method: str = typer.Option("net", "--method", "-m", help="net | bilinear | bicubic | nearest | lanczos."),
    size: tuple[int, int] = typer.Option((0, 0), "--size", help="Full size H W (default: from metadata, else s*h x s*w)."),
    model: str = typer.Option(None, "--model", metavar="NAME|PATH", help="Network: a name from emcs models or a .safetensors file (default: the shipped dlss-unet-s4-10)."),
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
    safeguard: bool = typer.Option(
        True, "--safeguard/--no-safeguard",
        help="net only: check the network against bilinear on each frame's own samples and fall back to "
             "bilinear, per tile and blended, where it is not clearly better (a quarter network pass more)."),
    target: str = typer.Option(
        None, "--target", metavar="blurred|scan",
        help="What the output estimates: blurred = the full scan through DLSS-STEM's 5x5, sigma 2.5 px Gaussian "
             "(the paper's target; noise reduced), scan = the full-resolution scan with the measured samples kept. "
             "Default: blurred for the network (scan with --denoise-measured or --smooth), scan for interpolators."),
    dataset: str = DATASET_OPTION,
    eer_frames: int = EER_FRAMES_OPTION,
    eer_upsampling: int = EER_UPSAMPLING_OPTION,
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
    scheduler: str = _dist.SCHEDULER_OPTION,
    cluster: str = _dist.CLUSTER_OPTION,
    cluster_config: str = _dist.CLUSTER_CONFIG_OPTION,
    resources: str = _dist.RESOURCES_OPTION,
) -> None:
    """Recover the full-resolution scan from a sparse regular-grid scan.

    The network returns DLSS-STEM's target by default: the full scan blurred by the paper's 5x5, sigma 2.5 px
    Gaussian (--target scan: full resolution). With --target scan and for the interpolators the measured
    probe positions are kept exactly (unless --denoise-measured or --smooth); the pixel size is divided by s and
    the dtype kept (integers rounded and clipped). The network covers s = 4 ... 10
    (coverage 1/16 ... 1/100); other pitches fall back to bilinear with a warning.
    Example: emcs supersample sparse.tif -o full.tif
    """
    from emcs.cli.models import resolve
    from emcs.dlss.files import supersample_file

    model = resolve(model, "dlss")
    rep = Reporter(quiet, as_json)
    dist = _dist.Dist(scheduler, cluster, cluster_config, resources)
    check_stdout_free(output, as_json)
    check_stack_output(output, force)
    with staged_input(input, stack_options(dataset, eer_frames, eer_upsampling)) as path, \
            rep.progress_callback("Supersampling") as progress:
        summary = dist.call(rep, "Supersampling", supersample_file, network=method == "net")(
            path, output, factor, coverage, method=method, size=size, model=model,
            device=device, tile=tile, denoise_measured=denoise_measured, ensemble=ensemble,
            smooth=_smooth_width(smooth), safeguard=safeguard, target=target, force=force, progress=progress, on_warning=rep.warn,
        )
    with_shape(summary, "frames", "full_shape")["input"] = input
    for note in summary["notes"]:
        rep.note(note)
    rep.table("supersample", [(k, str(v)) for k, v in summary.items() if v is not None and k != "notes"])
    rep.emit_json(summary)
