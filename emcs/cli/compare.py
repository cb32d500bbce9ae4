"""``emcs compare``: score a reconstruction against the reference and codec baselines."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

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
    stack_options,
    staged_input,
)


def _fmt(v: float, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def _short_setting(entry: dict) -> str:
    if not entry.get("ok"):
        return "none fits"
    if entry.get("lossless"):
        return "lossless"
    q = entry["quality"]
    return {"jpeg": f"q {q:g}", "jpeg2000": f"{q:.2f} dB tgt", "jpegxl": f"d {q:.3f}"}.get(
        entry["codec"], str(q)
    )


def _print_table(rep: Reporter, summary: dict) -> None:
    if rep.quiet or rep.as_json:
        return
    from rich import box
    from rich.table import Table

    from emcs.compare.codec_frames import CODEC_LABELS

    has_truth = summary["truth"] is not None
    dr = summary["data_range"]
    title = f"emcs compare: {summary['frames']} frames {summary['shape'][1]}x{summary['shape'][2]}"
    if summary["budget_bytes"]:
        title += (
            f", budget {summary['budget_bytes']} bytes = 1/{summary['ratio']:.1f} of "
            f"{summary['raw_bytes']} raw"
        )
    caption = (
        f"Means over frames. Data range for PSNR/SSIM: vs ref {dr['reference']:g} "
        "(max - min of the reference stack)"
    )
    if has_truth:
        caption += f", vs truth {dr['truth']:g} (max - min of the truth stack)"
    caption += ". NRMSE = rms(error)/rms(ref). SSIM: Gaussian sigma 1.5."
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for name, just in (("method", "left"), ("bytes", "right"), ("bit/px", "right"),
                       ("setting", "left"), ("vs", "left"), ("PSNR dB", "right"),
                       ("SSIM", "right"), ("NRMSE", "right")):
        table.add_column(name, justify=just, no_wrap=True)
    refs = [("vs_reference", "ref")] + ([("vs_truth", "truth")] if has_truth else [])
    for name, entry in summary["results"].items():
        label = "emcs" if name == "emcs" else CODEC_LABELS.get(name, name)
        setting = "" if name == "emcs" else _short_setting(entry)
        nbytes = entry.get("nbytes")
        head = [label, str(nbytes) if nbytes else "-",
                _fmt(entry.get("bits_per_pixel"), 3) if nbytes else "-", setting]
        for k, (key, short) in enumerate(refs):
            s = entry.get(key)
            cells = ["-", "-", "-"] if s is None else [
                _fmt(s["psnr_mean"], 2), _fmt(s["ssim_mean"], 4), _fmt(s["nrmse_mean"], 4)
            ]
            table.add_row(*(head if k == 0 else ["", "", "", ""]), short, *cells,
                          end_section=k == len(refs) - 1 and has_truth)
    rep.console.print(table)
    for name, entry in summary["results"].items():
        if name != "emcs" and entry.get("reason"):
            rep.warn(f"{CODEC_LABELS.get(name, name)}: {entry['reason']}")


@app.command("compare")
def compare(
    recon: Path = typer.Argument(..., metavar="RECON", help="Reconstructed stack (.tif, .mrc, .npy ...)."),
    reference: Path = typer.Argument(
        ..., metavar="REFERENCE",
        help="Reference stack (the raw frames), same shape; frames matched by index."
    ),
    truth: Path | None = typer.Option(
        None, "--truth", help="Clean ground truth: RECON and the baselines are also scored against it."
    ),
    baselines: str | None = typer.Option(
        None,
        "--baselines",
        help="Codecs encoded at the same byte budget: comma list of jpeg, jpeg2000, jpegxl, or "
        "'none'. Default: all three when a budget is given.",
    ),
    nbytes: int | None = typer.Option(
        None, "--bytes", help="Byte budget for every baseline (total over all frames)."
    ),
    container: Path | None = typer.Option(
        None, "--container", help="Measurement container (.npz); its file size is the byte budget."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a figure (.png, .pdf, .svg): frames, zooms, FFTs, scores."
    ),
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
    """Score a reconstruction against the reference and codec baselines at equal bytes.

    Frames of RECON and REFERENCE are matched by index; PSNR, SSIM and NRMSE
    are given per frame (--json) and as means. With a byte budget (--bytes, or
    the size of the --container file), the REFERENCE frames are also encoded
    with JPEG, JPEG 2000 and JPEG XL at the best quality that fits the budget,
    decoded and scored the same way. PSNR and SSIM use one data range: max - min
    of the whole reference stack (of the truth stack for scores against --truth).
    """
    from emcs.compare.codec_frames import CODEC_LABELS
    from emcs.compare.files import compare_files

    rep = Reporter(quiet, as_json)
    run_compare = _dist.Dist(scheduler, cluster, cluster_config, resources).call(
        rep, "Comparing", compare_files)
    names = None if baselines is None else baselines.split(",")
    options = stack_options(dataset, eer_frames, eer_upsampling)
    with contextlib.ExitStack() as bars, contextlib.ExitStack() as staged:
        recon_path, reference_path, truth_path = (
            None if p is None else staged.enter_context(staged_input(p, options))
            for p in (recon, reference, truth))

        def progress(codec: str, budget: int):
            """Start a (terminal-only) bar counting the trial encodings of one codec."""
            bars.close()
            rep.info(f"{CODEC_LABELS[codec]}: searching the best setting within {budget} bytes")
            return bars.enter_context(rep.progress(f"{CODEC_LABELS[codec]} trials", None,
                                                   unit="trials"))

        summary = run_compare(recon_path, reference_path, truth_path, baselines=names, nbytes=nbytes,
                              container=container, plot=plot, force=force, progress=progress)
    summary.update(recon=str(recon), reference=str(reference),
                   truth=None if truth is None else str(truth))
    _print_table(rep, summary)
    if "plot" in summary:
        rep.info(f"figure written to {summary['plot']}")
    rep.emit_json(summary)
