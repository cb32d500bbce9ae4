"""Commands ``emcs sim-recon`` and ``emcs resolution`` (VDL-SIM, Wiener SIM).

``sim-recon`` turns a wide-field movie (one exposure per frame, VDL-SIM network)
or raw 3x3 SIM stacks (the raw-input network, classical Wiener reconstruction with
parameters estimated from the data, or a wide-field network on the sum of the raw
frames) into SR frames on a 2x finer grid. ``resolution`` estimates the resolution by decorrelation analysis. Both
parse, call :func:`emcs.sim.files.sim_recon_file` / :func:`~emcs.sim.files.resolution_file`
and print.
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
    pixel_size_note,
    stack_options,
    staged_input,
)
from emcs.cli.schema import with_shape


@app.command("sim-recon")
def sim_recon(
    input: str = typer.Argument(..., metavar="INPUT", help="Wide-field movie or raw SIM stack (.tif, .mrc, .npy ...; - for standard input)."),
    output: str = typer.Option(..., "--output", "-o", help="SR output (.tif/.mrc/.npy, a frame pattern 'sr/f_%04d.tif', or - for a TIFF on standard output), 2x finer grid."),
    input_kind: str = typer.Option("widefield", "--input", help="widefield: one frame per time point; raw: angles x phases frames per time point."),
    method: str = typer.Option(None, "--method", help="net (the network: VDL-SIM for wide-field, the raw-input network for raw; default) or wiener (classical; the default for raw where the raw-input network is not installed)."),
    angles: int = typer.Option(3, "--angles", help="Pattern orientations per time point (raw input)."),
    phases: int = typer.Option(3, "--phases", help="Phase steps per orientation (raw input)."),
    order: str = typer.Option("angle-major", "--order", help="Raw frame order: angle-major (frame = angle*P + phase) or phase-major (phase*A + angle)."),
    wavelength: float = typer.Option(525.0, "--wavelength", help="Emission wavelength in nm."),
    na: float = typer.Option(1.4, "--na", help="Numerical aperture of the objective."),
    pixel_size: float = typer.Option(None, "--pixel-size", metavar="NM", help="Camera pixel size in nm (default: from the file; a note says when this overrides it)."),
    wiener: float = typer.Option(0.08, "--wiener", help="Wiener parameter w (0.02-0.3; lower for high SNR)."),
    apodization: float = typer.Option(1.0, "--apodization", help="Apodisation cut-off as a fraction of f_c + |k|."),
    background: str = typer.Option("none", "--background", help="none or rolling-ball (applied to each SR frame)."),
    radius: float = typer.Option(5.0, "--radius", help="Rolling-ball radius in SR pixels."),
    weights: str = typer.Option(None, "--model", "--weights", metavar="NAME|PATH", help="Network: a name from emcs models or a .safetensors file (default: vdlsim-32 for wide-field, vdlsim-raw for raw input; a wide-field network on raw input runs on the sum of the raw frames)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    tile: int = typer.Option(256, "--tile", help="Network tile size in input pixels (bounds memory)."),
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
    """Super-resolve a wide-field movie (VDL-SIM) or raw SIM stacks (Wiener or network).

    Optical pixel sizes are in nm (--pixel-size, the JSON's pixel_size_nm_in/_out).
    """
    from emcs.cli.models import resolve
    from emcs.sim.files import default_method, sim_recon_file

    weights = resolve(weights, "sim")
    rep = Reporter(quiet, as_json)
    dist = _dist.Dist(scheduler, cluster, cluster_config, resources)
    network = (method or default_method(input_kind, weights)) == "net"
    check_stdout_free(output, as_json)
    check_stack_output(output, force)
    options = stack_options(dataset, eer_frames, eer_upsampling)
    source = pixel_size_note(rep, input, pixel_size, options)
    with staged_input(input, options) as path, rep.progress_callback("Reconstructing") as progress:
        summary = dist.call(rep, "Reconstructing", sim_recon_file, network=network)(
            path, output, input_kind=input_kind, method=method, angles=angles, phases=phases,
            order=order, wavelength=wavelength, na=na, pixel_size=pixel_size, wiener=wiener,
            apodization=apodization, background=background, radius=radius, weights=weights,
            device=device, tile=tile, force=force, progress=progress,
        )
    with_shape(summary, "frames_out", "shape_out").update(input=input, pixel_size_from=source)
    for note in summary.get("notes", []):
        rep.note(note)
    if summary.get("parameters"):
        from emcs.sim.otf import Optics

        _print_parameters(rep, summary["parameters"], Optics(**summary["optics"]).cutoff)
    n_out, H2, W2 = summary["shape_out"]
    px_out = summary["pixel_size_nm_out"]
    rep.table("sim-recon", [("output", output), ("method", summary["method"]),
                            ("SR frames", f"{n_out} x {H2} x {W2}"),
                            ("pixel size", f"{px_out:g} nm" if px_out else "unknown"),
                            ("speed", f"{summary['frames_per_s']} SR frames/s")])
    rep.emit_json(summary)


def _print_parameters(rep: Reporter, params: list, cutoff: float) -> None:
    """Show the estimated pattern of time point 0 and warn about suspicious estimates."""
    from emcs.sim.files import pattern_warnings

    if not params:
        return
    rows = []
    for a, p in enumerate(params[0]):
        rows.append((f"angle {a}",
                     f"{p['angle_deg']:7.2f} deg  |k| {p['k']:.4f}/um = {p['k'] / cutoff:.3f} f_c "
                     f"({1e3 / p['k']:.1f} nm)  phase {p['phase']:+.3f}  m {p['modulation']:.3f}  "
                     f"peak {p.get('peak_contrast', float('nan')):.0f}"))
    title = "estimated pattern (time point 0" + (
        f"; all {len(params)} in --json)" if len(params) > 1 else ")")
    rep.table(title, rows)
    for t, pats in enumerate(params):
        for msg in pattern_warnings(pats)[:1]:
            rep.warn(f"time point {t}: {msg}")


@app.command("resolution")
def resolution(
    image: str = typer.Argument(..., metavar="IMAGE", help="Image or stack on its native sampling grid."),
    pixel_size: float = typer.Option(None, "--pixel-size", metavar="NM", help="Pixel size in nm (default: from the file; a note says when this overrides it)."),
    frame: int = typer.Option(None, "--frame", help="Analyse only this frame (default: every frame)."),
    dataset: str = DATASET_OPTION,
    eer_frames: int = EER_FRAMES_OPTION,
    eer_upsampling: int = EER_UPSAMPLING_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Resolution by decorrelation analysis (Descloux et al. 2019).

    Never use it on zero-padded or upsampled images: the empty band makes the
    value meaningless.
    """
    import math

    from emcs.sim.files import resolution_file

    rep = Reporter(quiet, as_json)
    options = stack_options(dataset, eer_frames, eer_upsampling)
    source = pixel_size_note(rep, image, pixel_size, options)
    with staged_input(image, options) as path, rep.progress_callback("Decorrelation") as progress:
        summary = resolution_file(path, pixel_size, frame, progress=progress)
    summary.update(image=image, pixel_size_from=source)
    n, med = summary["frames"], summary["resolution_nm"]
    finite = [r["resolution_nm"] for r in summary["per_frame"] if math.isfinite(r["resolution_nm"])]
    rows = [("pixel size", f"{summary['pixel_size_nm']:g} nm"
                           + (" (--pixel-size)" if source == "option" else " (from the file)")),
            ("frames", str(n)),
            ("resolution", f"{med:.1f} nm" + (" (median)" if n > 1 else ""))]
    if n > 1 and finite:
        rows.append(("range", f"{min(finite):.1f} - {max(finite):.1f} nm"))
    if not finite:
        rep.warn("no significant decorrelation peak: the image holds no resolvable structure above noise")
    rep.table("decorrelation resolution", rows)
    rep.emit_json(summary)
