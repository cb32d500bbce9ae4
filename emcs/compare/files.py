"""File-level ``emcs compare``: score a reconstruction file and codec baselines at equal bytes.

:func:`compare_files` validates its parameters once (errors name the
parameter, :class:`~emcs.errors.EmcsError` with ``param=``), opens the stacks,
runs :func:`emcs.compare.report.compare_stacks` and writes the figure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from emcs.compare.codec_frames import CODEC_LABELS, CODECS
from emcs.errors import EmcsError

#: other names accepted for the codecs
CODEC_ALIASES = {"jpeg2k": "jpeg2000", "j2k": "jpeg2000", "jp2": "jpeg2000", "jxl": "jpegxl"}


def resolve_baselines(names: Sequence[str] | None, have_budget: bool) -> tuple[str, ...]:
    """The codecs to run: ``names`` checked and de-aliased; default all of them with a budget.

    ``()`` and ``("none",)`` ask for no baseline.

    >>> resolve_baselines(["JXL", "jpeg", "jpegxl"], True)
    ('jpegxl', 'jpeg')
    >>> resolve_baselines(None, False)
    ()
    """
    if names is None:
        return CODECS if have_budget else ()
    names = tuple(n.strip().lower() for n in names if n.strip())
    if names in ((), ("none",)):
        return ()
    out = []
    for n in names:
        n = CODEC_ALIASES.get(n, n)
        if n not in CODECS:
            raise EmcsError(f"baselines: unknown codec {n!r}; choose from {', '.join(CODECS)} or none",
                            param="baselines")
        if n not in out:
            out.append(n)
    if not have_budget:
        raise EmcsError("baselines need a byte budget: nbytes, or the container's file size",
                        param="baselines")
    return tuple(out)


def write_figure(path: str, force: bool, comparison, summary: dict) -> None:
    """The ``--plot`` figure: truth, reference, emcs and the best codec; frames, zooms, FFTs, scores."""
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


def compare_files(
    recon: str | os.PathLike,
    reference: str | os.PathLike,
    truth: str | os.PathLike | None = None,
    *,
    baselines: Sequence[str] | None = None,
    nbytes: int | None = None,
    container: str | os.PathLike | None = None,
    plot: str | os.PathLike | None = None,
    force: bool = False,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> dict:
    """Score a reconstruction against the reference (and truth) and codec baselines at equal bytes.

    Frames of ``recon`` and ``reference`` are matched by index; PSNR, SSIM and
    NRMSE (:mod:`emcs.compare.metrics`) use one data range: max - min of the
    whole reference stack (of the truth stack for scores against ``truth``).
    With a byte budget the reference frames are also encoded with each codec
    at the best quality that fits the budget, decoded and scored the same way.

    Parameters
    ----------
    recon, reference, truth : path
        Stacks in any :func:`emcs.io.open_stack` format; ``truth`` optional.
    baselines : sequence of str, optional
        Codec names (:data:`emcs.compare.codec_frames.CODECS`, aliases
        :data:`CODEC_ALIASES`, or ``["none"]``); default: all with a budget.
    nbytes : int, optional
        Byte budget for every baseline (total over all frames) ...
    container : path, optional
        ... or a measurement container whose file size is the budget.
    plot : path, optional
        Figure to write (.png, .pdf, .svg; never overwritten unless ``force``).
    progress : callable, optional
        ``progress(codec, budget_bytes) -> tick()``, called when a codec's
        search starts; ``tick`` after each trial encoding.

    Returns
    -------
    dict
        :func:`emcs.compare.report.compare_stacks`' summary plus
        ``budget_source`` and, with a figure, ``plot``.
    """
    from emcs.compare.plot import PLOT_SUFFIXES, pick_frames
    from emcs.compare.report import budget_from_container, compare_stacks
    from emcs.io import check_output, open_stack

    if nbytes is not None and container is not None:
        raise EmcsError("nbytes must not be given with a container: one byte budget", param="nbytes")
    if nbytes is not None and nbytes <= 0:
        raise EmcsError(f"nbytes must be a positive number of bytes, got {nbytes}", param="nbytes")
    budget = nbytes if nbytes is not None else (
        budget_from_container(container) if container is not None else None
    )
    codecs = resolve_baselines(baselines, budget is not None)
    plot_path = None
    if plot is not None:
        plot_path = os.fspath(plot)
        if not plot_path.lower().endswith(PLOT_SUFFIXES):
            raise EmcsError("plot must be a .png, .pdf or .svg file", plot_path, param="plot")
        check_output(plot_path, force)

    with open_stack(recon) as rec, open_stack(reference) as ref:
        tru = open_stack(truth) if truth is not None else None
        try:
            frames = pick_frames(ref.shape[0]) if plot_path else None
            comparison = compare_stacks(
                rec, ref, tru, codecs=codecs, budget_bytes=budget, plot_frames=frames,
                progress=None if progress is None else lambda codec: progress(codec, budget),
            )
        finally:
            if tru is not None:
                tru.close()

    summary = comparison.summary
    summary["budget_source"] = (
        os.fspath(container) if container is not None else ("--bytes" if nbytes is not None else None)
    )
    if plot_path:
        write_figure(plot_path, force, comparison, summary)
        summary["plot"] = plot_path
    return summary


__all__ = ["CODEC_ALIASES", "compare_files", "resolve_baselines", "write_figure"]
