"""The work behind ``emcs compare``: score a reconstruction and codec baselines.

:func:`compare_stacks` scores RECON against the REFERENCE (and the clean
TRUTH, if given) frame by frame, and encodes the REFERENCE frames with each
requested codec at the byte budget (:func:`emcs.compare.codecs.encode_at_budget`)
and scores the decoded frames the same way. Scores against the reference use
the reference stack's range (max - min over all frames); scores against the
truth use the truth stack's range.

Memory: RECON and TRUTH are read in chunks; the baselines need the whole
REFERENCE stack in memory (plus one decoded copy at a time).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from emcs.compare.metrics import DATA_RANGE_NOTE, SSIM_SETTINGS, StackScorer
from emcs.errors import EmcsError

__all__ = ["Comparison", "budget_from_container", "check_matched", "compare_stacks"]

_CHUNK = 16


@dataclass
class Comparison:
    """What :func:`compare_stacks` found.

    Attributes
    ----------
    summary : dict
        JSON-ready results (see :func:`compare_stacks`).
    panels : dict
        ``{label: (n, H, W) selected frames}`` for the figure: "truth" (if
        given), "reference", "emcs" and each baseline that fit the budget.
    frame_indices : list of int
        The selected frames.
    """

    summary: dict
    panels: dict = field(default_factory=dict)
    frame_indices: list = field(default_factory=list)


def _read(stack, a: int, b: int) -> np.ndarray:
    if isinstance(stack, np.ndarray):
        return stack[a:b]
    return stack.read(a, b)


def _name(stack) -> str:
    return getattr(stack, "path", "<array>")


def _shape(stack) -> tuple[int, int, int]:
    shape = tuple(stack.shape)
    return (1,) + shape if len(shape) == 2 else shape


def check_matched(recon, reference, truth=None) -> None:
    """Refuse stacks whose shapes differ (frames are matched by index).

    Raises
    ------
    EmcsError
        Naming the file whose shape does not match the reference.
    """
    ref_shape = _shape(reference)
    for other, role in ((recon, "reconstruction"), (truth, "truth")):
        if other is None:
            continue
        if _shape(other) != ref_shape:
            raise EmcsError(
                f"{role} has shape {_shape(other)} (frames, height, width) but the reference "
                f"{_name(reference)} has {ref_shape}; frames are matched by index",
                _name(other),
            )


def budget_from_container(path: str | os.PathLike) -> int:
    """The size in bytes of an emcs measurement container (checked to be a zip/.npz)."""
    import zipfile

    path = os.fspath(path)
    if not os.path.exists(path):
        raise EmcsError("no such file", path)
    if os.path.isdir(path):
        raise EmcsError("is a folder; give the measurement container (.npz)", path)
    if not zipfile.is_zipfile(path):
        raise EmcsError("not an emcs measurement container (expected a .npz zip file)", path)
    return os.path.getsize(path)


def _range(stack, chunk: int) -> float:
    lo, hi = math.inf, -math.inf
    for a in range(0, _shape(stack)[0], chunk):
        x = _read(stack, a, a + chunk)
        lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise EmcsError("contains NaN or infinite values", _name(stack))
    if hi <= lo:
        raise EmcsError(
            f"is constant (all pixels {lo:g}); PSNR and SSIM need a range", _name(stack)
        )
    return hi - lo


def _score(recon, ref, data_range: float, chunk: int) -> dict:
    scorer = StackScorer(data_range)
    for a in range(0, _shape(ref)[0], chunk):
        scorer.add(_read(recon, a, a + chunk), _read(ref, a, a + chunk))
    return scorer.result()


def compare_stacks(
    recon,
    reference,
    truth=None,
    codecs: tuple[str, ...] = (),
    budget_bytes: int | None = None,
    plot_frames: list[int] | None = None,
    chunk: int = _CHUNK,
    progress: Callable[[str], Callable[[], None]] | None = None,
) -> Comparison:
    """Score a reconstruction and codec baselines at an equal byte budget.

    Parameters
    ----------
    recon, reference, truth : Stack or ndarray (T, H, W)
        Opened stacks (:func:`emcs.io.open_stack`) or arrays; ``truth`` optional.
    codecs : tuple of str
        Baselines from :data:`emcs.compare.codecs.CODECS`; needs ``budget_bytes``.
    budget_bytes : int, optional
        Total bytes for each baseline (usually the measurement container's size).
    plot_frames : list of int, optional
        Frames to keep for a figure (``Comparison.panels``).
    chunk : int
        Frames read at a time for scoring.
    progress : callable, optional
        ``progress(codec) -> tick()``; ``tick`` is called after each trial encoding.

    Returns
    -------
    Comparison
        ``summary`` holds: ``frames``, ``shape``, ``data_range`` (reference,
        truth, definition), ``ssim_settings``, ``budget_bytes``,
        ``raw_bytes`` (the reference pixels, uncompressed), and ``results``:
        ``{"emcs": {...}, "jpeg": {...}, ...}``, each with ``vs_reference`` (and
        ``vs_truth``) score dicts (:func:`emcs.compare.metrics.score_stack`
        keys); baselines add ``nbytes``, ``bits_per_pixel``, ``setting`` and
        the rest of :meth:`BaselineResult.summary`.
    """
    check_matched(recon, reference, truth)
    if codecs and budget_bytes is None:
        raise EmcsError("codecs need a byte budget: give budget_bytes", param="codecs")
    if budget_bytes is not None and budget_bytes <= 0:
        raise EmcsError(f"budget_bytes must be positive, got {budget_bytes}", param="budget_bytes")
    shape = _shape(reference)
    ref_dtype = np.dtype(getattr(reference, "dtype", np.float64))
    ref_range = _range(reference, chunk)
    truth_range = _range(truth, chunk) if truth is not None else None
    plot_frames = list(plot_frames or [])

    def scores(stack) -> dict:
        out = {"vs_reference": _score(stack, reference, ref_range, chunk)}
        if truth is not None:
            out["vs_truth"] = _score(stack, truth, truth_range, chunk)
        return out

    raw_bytes = int(np.prod(shape)) * ref_dtype.itemsize
    results: dict[str, dict] = {}
    emcs_entry = {"nbytes": budget_bytes}
    if budget_bytes is not None:
        emcs_entry["bits_per_pixel"] = 8.0 * budget_bytes / int(np.prod(shape))
    emcs_entry.update(scores(recon))
    results["emcs"] = emcs_entry

    panels: dict[str, np.ndarray] = {}
    if plot_frames:
        if truth is not None:
            panels["truth"] = np.stack([_read(truth, i, i + 1)[0] for i in plot_frames])
        panels["reference"] = np.stack([_read(reference, i, i + 1)[0] for i in plot_frames])
        panels["emcs"] = np.stack([_read(recon, i, i + 1)[0] for i in plot_frames])

    if codecs:
        from emcs.compare.codecs import encode_at_budget

        ref_all = _read(reference, 0, shape[0])
        for codec in codecs:
            tick = progress(codec) if progress is not None else None
            res = encode_at_budget(ref_all, codec, budget_bytes, progress=tick)
            entry = res.summary()
            if res.ok:
                entry.update(scores(res.decoded))
                if plot_frames:
                    panels[res.label] = res.decoded[plot_frames]
            results[codec] = entry
            del res

    summary = {
        "recon": _name(recon),
        "reference": _name(reference),
        "truth": None if truth is None else _name(truth),
        "frames": shape[0],
        "shape": list(shape),
        "data_range": {
            "reference": ref_range,
            "truth": truth_range,
            "definition": DATA_RANGE_NOTE + " (truth: max - min of the truth stack)",
        },
        "ssim_settings": dict(SSIM_SETTINGS),
        "nrmse_definition": "rms(x - ref) / rms(ref)",
        "budget_bytes": budget_bytes,
        "raw_bytes": raw_bytes,
        "ratio": (raw_bytes / budget_bytes) if budget_bytes else None,
        "results": results,
    }
    return Comparison(summary=summary, panels=panels, frame_indices=plot_frames)


def best_baseline(summary: dict) -> str | None:
    """The baseline with the highest whole-stack PSNR (vs truth if given, else vs reference)."""
    key = "vs_truth" if summary.get("truth") else "vs_reference"
    best, best_psnr = None, -math.inf
    for name, entry in summary["results"].items():
        if name == "emcs" or key not in entry:
            continue
        p = entry[key]["psnr_stack"]
        if p > best_psnr:
            best, best_psnr = name, p
    return best
