"""``emcs compare``: score a reconstruction against the reference and codec baselines."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import typer

from emcs.cli._app import app
from emcs.cli._common import FORCE_OPTION, JSON_OPTION, QUIET_OPTION, Reporter
from emcs.errors import EmcsError

_CODEC_NAMES = ("jpeg", "jpeg2000", "jpegxl")


def _parse_baselines(text: str | None, have_budget: bool) -> tuple[str, ...]:
    if text is None:
        return _CODEC_NAMES if have_budget else ()
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    if names in ((), ("none",)):
        return ()
    aliases = {"jpeg2k": "jpeg2000", "j2k": "jpeg2000", "jp2": "jpeg2000", "jxl": "jpegxl"}
    out = []
    for n in names:
        n = aliases.get(n, n)
        if n not in _CODEC_NAMES:
            raise EmcsError(
                f"--baselines: unknown codec {n!r}; choose from {', '.join(_CODEC_NAMES)} or none"
            )
        if n not in out:
            out.append(n)
    if not have_budget:
        raise EmcsError("the baselines need a byte budget: give --bytes N or --container MEAS.npz")
    return tuple(out)


def _fmt(v: float, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def _json_safe(obj):
    """Replace non-finite floats by the strings "inf", "-inf", "nan" (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


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

    from emcs.compare.codecs import CODEC_LABELS

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


def _write_plot(path: str, force: bool, comparison, summary: dict) -> None:
    from emcs.compare.codecs import CODEC_LABELS
    from emcs.compare.plot import comparison_figure
    from emcs.compare.report import best_baseline
    from emcs.io import atomic_output

    panels = [(k, v) for k, v in comparison.panels.items() if k in ("truth", "reference", "emcs")]
    best = best_baseline(summary)
    labels = {"emcs": "emcs"} | {k: CODEC_LABELS[k] for k in summary["results"] if k != "emcs"}
    if best is not None:
        entry = summary["results"][best]
        panels.append(
            (f"best codec: {labels[best]}\n({entry['setting']})", comparison.panels[labels[best]])
        )
    which = ("vs_reference", "vs_truth") if summary["truth"] else ("vs_reference",)
    names = {"vs_reference": "vs reference", "vs_truth": "vs truth"}
    scores = {}
    for name, entry in summary["results"].items():
        if "vs_reference" not in entry:
            continue
        scores[labels[name]] = {
            f"{m} {names[w]}": entry[w][f"{m.lower()}_mean"] for w in which for m in ("PSNR", "SSIM")
        }
    title = f"{os.path.basename(summary['recon'])} vs {os.path.basename(summary['reference'])}"
    if summary["budget_bytes"]:
        title += f"; all methods at <= {summary['budget_bytes']} bytes (1/{summary['ratio']:.1f} of raw)"
    ref_col = [k for k, _ in panels].index("reference")
    fmt = os.path.splitext(path)[1].lower().lstrip(".")
    with atomic_output(path, force) as tmp:
        comparison_figure(
            tmp,
            panels,
            comparison.frame_indices,
            scores,
            title=title,
            score_labels=tuple(names[w] for w in which),
            reference_panel=ref_col,
            fmt=fmt,
        )


@app.command("compare")
def compare(
    recon: Path = typer.Argument(..., help="Reconstructed stack (.tif, .mrc, .npy ...)."),
    reference: Path = typer.Argument(
        ..., help="Reference stack (the raw frames), same shape; frames matched by index."
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
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Score a reconstruction against the reference and codec baselines at equal bytes.

    Frames of RECON and REFERENCE are matched by index; PSNR, SSIM and NRMSE
    are given per frame (--json) and as means. With a byte budget (--bytes, or
    the size of the --container file), the REFERENCE frames are also encoded
    with JPEG, JPEG 2000 and JPEG XL at the best quality that fits the budget,
    decoded and scored the same way. PSNR and SSIM use one data range: max - min
    of the whole reference stack (of the truth stack for scores against --truth).
    """
    from emcs.compare.codecs import CODEC_LABELS
    from emcs.compare.plot import PLOT_SUFFIXES, pick_frames
    from emcs.compare.report import budget_from_container, compare_stacks
    from emcs.io import check_output, open_stack

    rep = Reporter(quiet, as_json)
    if nbytes is not None and container is not None:
        raise EmcsError("give either --bytes or --container, not both")
    if nbytes is not None and nbytes <= 0:
        raise EmcsError(f"--bytes must be a positive number of bytes, got {nbytes}")
    budget = nbytes if nbytes is not None else (
        budget_from_container(container) if container is not None else None
    )
    codecs = _parse_baselines(baselines, budget is not None)
    plot_path = None
    if plot is not None:
        plot_path = os.fspath(plot)
        if not plot_path.lower().endswith(PLOT_SUFFIXES):
            raise EmcsError("the figure must be .png, .pdf or .svg", plot_path)
        check_output(plot_path, force)

    bars = contextlib.ExitStack()

    def progress(codec: str):
        """Start a (terminal-only) bar counting the trial encodings of one codec."""
        bars.close()
        rep.info(f"{CODEC_LABELS[codec]}: searching the best setting within {budget} bytes")
        return bars.enter_context(rep.progress(f"{CODEC_LABELS[codec]} trials", None))

    with open_stack(recon) as rec, open_stack(reference) as ref, bars:
        tru = open_stack(truth) if truth is not None else None
        try:
            frames = pick_frames(ref.shape[0]) if plot_path else None
            comparison = compare_stacks(
                rec, ref, tru, codecs=codecs, budget_bytes=budget, plot_frames=frames,
                progress=progress,
            )
        finally:
            bars.close()
            if tru is not None:
                tru.close()

    summary = comparison.summary
    summary["budget_source"] = (
        os.fspath(container) if container is not None else ("--bytes" if nbytes is not None else None)
    )
    if plot_path:
        _write_plot(plot_path, force, comparison, summary)
        summary["plot"] = plot_path
    _print_table(rep, summary)
    if plot_path:
        rep.info(f"figure written to {plot_path}")
    rep.emit_json(_json_safe(summary))
