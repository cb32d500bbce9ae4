"""The comparison figure of ``emcs compare --plot`` (matplotlib, Agg backend).

Layout, top to bottom:

1. one row per selected frame: the images side by side (truth if given,
   reference, emcs reconstruction, best baseline), all with the same grey
   scale (0.5-99.5 percentile of the reference frame), each with a zoomed
   inset (4x) of a central region marked on the image;
2. their Fourier magnitudes, ``log10(1 + |FFT|)`` of the mean-subtracted,
   Hann-windowed frame (first selected frame), on one shared scale: lost high frequencies and
   block or ringing artefacts show up here;
3. bar charts of the mean PSNR and SSIM of every method, against the
   reference and (if given) the clean truth.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["PLOT_SUFFIXES", "comparison_figure", "pick_frames"]

PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def pick_frames(n_frames: int, n: int = 3) -> list[int]:
    """Up to ``n`` evenly spaced frame indices (first, middle, last ...).

    Examples
    --------
    >>> pick_frames(10), pick_frames(2), pick_frames(1)
    ([0, 4, 9], [0, 1], [0])
    """
    if n_frames <= n:
        return list(range(n_frames))
    return sorted({int(round(v)) for v in np.linspace(0, n_frames - 1, n)})


def _fft_mag(frame: np.ndarray) -> np.ndarray:
    """``log10(1 + |FFT|)`` of the mean-subtracted, Hann-windowed frame (centred).

    The window removes the cross that the frame's edges would otherwise add.
    """
    f = frame.astype(np.float64)
    win = np.outer(np.hanning(f.shape[0]), np.hanning(f.shape[1]))
    return np.log10(1.0 + np.abs(np.fft.fftshift(np.fft.fft2((f - f.mean()) * win))))


def _zoom_box(h: int, w: int) -> tuple[int, int, int, int]:
    """A central (y0, y1, x0, x1) region, about 1/5 of the frame on a side."""
    size = max(8, min(h, w) // 5)
    size = min(size, h, w)
    y0, x0 = (h - size) // 2, (w - size) // 2
    return y0, y0 + size, x0, x0 + size


def comparison_figure(
    path: str | os.PathLike,
    panels: list[tuple[str, np.ndarray]],
    frame_indices: list[int],
    scores: dict[str, dict[str, float]],
    title: str = "",
    score_labels: tuple[str, ...] = ("vs reference",),
    reference_panel: int = 0,
    fmt: str | None = None,
) -> None:
    """Draw the comparison figure and save it to ``path`` (format from its suffix).

    Parameters
    ----------
    path : str
        Output file (.png, .pdf or .svg); written as given (the caller makes
        it atomic).
    panels : list of (label, frames)
        Columns, e.g. ``[("reference", ref), ("emcs", rec), ("JPEG XL", jxl)]``;
        each ``frames`` is (n, H, W) holding the selected frames only.
    frame_indices : list of int
        The frame numbers of the selected frames (for the row labels).
    scores : dict
        ``{method: {"PSNR vs reference": 31.2, "SSIM vs reference": 0.9, ...}}``.
    title : str
        Figure title (budget, data range ...).
    score_labels : tuple of str
        Which comparisons the scores hold, e.g. ("vs reference", "vs truth").
    reference_panel : int
        The column whose percentiles set the grey scale.
    fmt : str, optional
        "png", "pdf" or "svg"; default from the suffix of ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n_rows_img = len(frame_indices)
    n_cols = len(panels)
    h, w = panels[0][1].shape[1:]
    y0, y1, x0, x1 = _zoom_box(h, w)
    cell = 3.0
    fig = plt.figure(figsize=(cell * n_cols, cell * (n_rows_img + 1) + 3.2), layout="constrained")
    gs = fig.add_gridspec(n_rows_img + 2, n_cols, height_ratios=[1.0] * (n_rows_img + 1) + [1.05])

    for r in range(n_rows_img):
        ref = panels[reference_panel][1][r].astype(np.float64)
        vmin, vmax = np.percentile(ref, [0.5, 99.5])
        if vmax <= vmin:
            vmin, vmax = float(ref.min()), float(ref.max()) + 1e-12
        for c, (label, frames) in enumerate(panels):
            ax = fig.add_subplot(gs[r, c])
            img = frames[r].astype(np.float64)
            ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.add_patch(
                Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=0.8)
            )
            ins = ax.inset_axes([0.6, 0.0, 0.4, 0.4])
            ins.imshow(img[y0:y1, x0:x1], cmap="gray", vmin=vmin, vmax=vmax,
                       interpolation="nearest")
            ins.set_xticks([])
            ins.set_yticks([])
            for spine in ins.spines.values():
                spine.set_edgecolor("yellow")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"frame {frame_indices[r]}", fontsize=9)

    mags = [_fft_mag(frames[0]) for _, frames in panels]
    lo = min(float(np.percentile(m, 1)) for m in mags)
    hi = max(float(m.max()) for m in mags)
    for c, mag in enumerate(mags):
        ax = fig.add_subplot(gs[n_rows_img, c])
        ax.imshow(mag, cmap="magma", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if c == 0:
            ax.set_ylabel(f"log |FFT|, frame {frame_indices[0]}", fontsize=9)

    methods = list(scores)
    sub = gs[n_rows_img + 1, :].subgridspec(1, 2)
    width = 0.8 / max(1, len(score_labels))
    x = np.arange(len(methods))
    for k, metric in enumerate(("PSNR", "SSIM")):
        ax = fig.add_subplot(sub[0, k])
        for j, which in enumerate(score_labels):
            key = f"{metric} {which}"
            vals = [scores[m].get(key, np.nan) for m in methods]
            finite = [v if np.isfinite(v) else np.nan for v in vals]
            bars = ax.bar(x + (j - (len(score_labels) - 1) / 2) * width, finite, width, label=which)
            for bar, v in zip(bars, vals, strict=True):
                text = "inf" if np.isinf(v) else ("n/a" if np.isnan(v) else
                                                 (f"{v:.1f}" if metric == "PSNR" else f"{v:.3f}"))
                top = bar.get_height() if np.isfinite(bar.get_height()) else 0.0
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, top), ha="center",
                            va="bottom", fontsize=7)
        ax.set_xticks(x, methods, fontsize=8)
        ax.set_ylabel("mean PSNR (dB)" if metric == "PSNR" else "mean SSIM")
        if metric == "SSIM":
            finite_vals = [scores[m].get(f"SSIM {w}", np.nan) for m in methods for w in score_labels]
            finite_vals = [v for v in finite_vals if np.isfinite(v)]
            if finite_vals:
                bottom = max(0.0, min(finite_vals) - 0.05)
                ax.set_ylim(bottom, 1.0 + 0.08 * (1.0 - bottom))
        else:
            ax.margins(y=0.08)
        if len(score_labels) > 1:
            ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2,
                      frameon=False)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fmt = fmt or os.path.splitext(os.fspath(path))[1].lower().lstrip(".") or "png"
    fig.savefig(path, dpi=110, format=fmt)
    plt.close(fig)
