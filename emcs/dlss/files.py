"""File-level DLSS-STEM: subsample a full scan file, supersample a sparse scan file.

These are the public entry points behind ``emcs subsample`` and ``emcs
supersample``: they validate their parameters once (errors name the parameter,
:class:`~emcs.errors.EmcsError` with ``param=``), stream the stack frame by
frame through :mod:`emcs.io` and return a summary dict.

Sparse scans written by :func:`subsample_file` as TIFF record the full scan
size and the pitch in their metadata (``dlss_full_shape``, ``dlss_factor``), so
:func:`supersample_file` restores the exact original size. For other files
give ``size=(H, W)``; without it the output is ``s*h x s*w`` with the first
sample at pixel 0.

Progress is reported through ``progress(total)``, called once with the number
of frames; it returns an ``advance(n)`` callable (both optional).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from emcs.errors import EmcsError

#: ``supersample_file`` methods: the network, then the classical kernels.
SUPERSAMPLE_METHODS = ("net", "bilinear", "bicubic", "nearest", "lanczos")
#: Largest fixed smoothing width (pixels) ``supersample_file`` accepts.
MAX_SMOOTH = 64.0

Progress = Callable[[int], Callable[[int], None]]


def _no_progress(_total: int) -> Callable[[int], None]:
    return lambda n=1: None


def resolve_factor(factor: int | None, coverage: str | None) -> int:
    """The grid pitch from ``factor`` or ``coverage`` (``'1/25'``); they must agree.

    >>> resolve_factor(None, "1/25"), resolve_factor(4, "1/16")
    (5, 4)
    """
    from emcs.dlss.sampling import parse_coverage

    if factor is None and coverage is None:
        raise EmcsError("factor must be given: the grid pitch S (or the coverage 1/S^2)",
                        param="factor")
    s_cov = parse_coverage(coverage) if coverage is not None else None
    if factor is not None and s_cov is not None and factor != s_cov:
        raise EmcsError(f"factor {factor} and coverage {coverage} disagree (1/{factor * factor})",
                        param="factor")
    return factor if factor is not None else s_cov


def read_sparse_metadata(path: str | os.PathLike) -> dict:
    """``dlss_full_shape`` / ``dlss_factor`` from an emcs-written sparse TIFF, else {}."""
    path = os.fspath(path)
    if not path.lower().endswith((".tif", ".tiff")):
        return {}
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
        return {k: meta[k] for k in ("dlss_full_shape", "dlss_factor") if k in (meta or {})}
    except Exception:
        return {}


def subsample_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    factor: int | None = None,
    coverage: str | None = None,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Write the sparse regular-grid scan of every frame of ``input`` (DLSS-STEM protocol).

    Keeps probe positions ``o + i*s`` per axis with ``o = (N mod s)//2``; the
    pixel size is multiplied by ``s``. A TIFF output records the full size and
    the pitch for :func:`supersample_file`.

    Parameters
    ----------
    input, output : path
        Full-resolution scan (any :func:`emcs.io.open_stack` format) and the
        sparse scan to write (never overwritten unless ``force``).
    factor : int, optional
        Grid pitch ``s``: keep every s-th probe position per axis.
    coverage : str, optional
        Coverage ``1/s**2`` instead of ``factor`` (``'1/25'``, ``'0.04'``, ``'4%'``).
    force : bool
        Overwrite an existing output.
    progress : callable, optional
        ``progress(total) -> advance(n)`` (see the module notes).

    Returns
    -------
    dict
        input, output, factor, coverage, frames, full and sparse shape, pixel
        size, seconds.
    """
    from emcs.dlss.sampling import sparse_shape, subsample, validate_factor
    from emcs.io import StackWriter, check_output, open_stack

    check_output(output, force)
    t0 = time.time()
    with open_stack(input) as stack:
        T, H, W = stack.shape
        s = resolve_factor(factor, coverage)
        validate_factor(s, (H, W))
        h, w = sparse_shape((H, W), s)
        px = stack.pixel_size * s if stack.pixel_size else None
        meta = {"dlss_full_shape": [H, W], "dlss_factor": s}  # read back by supersample (TIFF)
        advance = (progress or _no_progress)(T)
        with StackWriter(output, (T, h, w), stack.dtype, px, force, metadata=meta) as wr:
            for chunk in stack.iter_chunks(8):
                wr.write(subsample(chunk, s))
                advance(len(chunk))
    return {
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


def resolve_target(target: str | None, method: str, denoise_measured: bool = False,
                   smooth: float | str = 0.0) -> str:
    """What :func:`supersample_file` outputs: ``target``, or by default the method's own.

    The network's own output is DLSS-STEM's target, the full scan blurred by a 5 x 5,
    sigma 2.5 px Gaussian (``"blurred"``), unless the measured samples are to be
    denoised or smoothed (options of the full-resolution ``"scan"`` output); an
    interpolator's own output is the ``"scan"`` through its samples.

    >>> resolve_target(None, "net"), resolve_target(None, "bilinear"), resolve_target(None, "net", smooth="auto")
    ('blurred', 'scan', 'scan')
    """
    from emcs.dlss.supersample import TARGETS

    if target is None:
        return "blurred" if method == "net" and not denoise_measured and smooth == 0 else "scan"
    target = target.strip().lower()
    if target not in TARGETS:
        raise EmcsError(f"target must be one of {', '.join(TARGETS)}, got {target!r}", param="target")
    if target == "blurred" and (denoise_measured or smooth != 0):
        raise EmcsError("target 'blurred' is DLSS-STEM's fixed smoothing of the whole scan; denoise_measured "
                        "and smooth apply to target 'scan'", param="target")
    return target


def _check_options(method: str, tile: int, denoise_measured: bool, ensemble: int,
                   smooth: float | str) -> str:
    """Validate the method options of :func:`supersample_file`; returns the method name."""
    from emcs.nn.ensemble import ENSEMBLES

    method = method.strip().lower()
    if method not in SUPERSAMPLE_METHODS:
        raise EmcsError(f"method must be one of {', '.join(SUPERSAMPLE_METHODS)}, got {method!r}",
                        param="method")
    if tile < 32:
        raise EmcsError(f"tile must be at least 32 pixels, got {tile}", param="tile")
    if denoise_measured and method != "net":
        raise EmcsError("denoise_measured needs the network method (classical kernels keep the "
                        "samples)", param="denoise_measured")
    if ensemble not in ENSEMBLES:
        raise EmcsError(f"ensemble must be one of {', '.join(map(str, ENSEMBLES))}, got {ensemble}",
                        param="ensemble")
    if ensemble != 1 and method != "net":
        raise EmcsError("ensemble needs the network method", param="ensemble")
    if smooth != "auto" and not 0.0 <= float(smooth) <= MAX_SMOOTH:
        raise EmcsError(f"smooth width must be between 0 and {MAX_SMOOTH:g} pixels, got {smooth:g}",
                        param="smooth")
    return method


def _full_shape(size, meta: dict, sparse: tuple[int, int], s: int) -> tuple[int, int, str]:
    """(H, W, where the size came from): ``size``, the recorded metadata, or ``s*n``."""
    from emcs.dlss.sampling import check_full_size, default_full_size

    h, w = sparse
    if size is not None and tuple(size) != (0, 0):
        H, W = int(size[0]), int(size[1])
        check_full_size(H, h, s, "size height", param="size")
        check_full_size(W, w, s, "size width", param="size")
        return H, W, "--size"
    if "dlss_full_shape" in meta and int(meta.get("dlss_factor", s)) == s:
        H, W = (int(v) for v in meta["dlss_full_shape"])
        check_full_size(H, h, s, "recorded height")
        check_full_size(W, w, s, "recorded width")
        return H, W, "metadata"
    return default_full_size(h, s), default_full_size(w, s), "default s*n"


def _load_network(model, device: str, target: str = "scan"):
    """(model, torch device, card, path) of the DLSS network; at most 4 CPU threads.

    A network trained on the blurred target (card ``output_target``) serves only that target.
    """
    import torch

    from emcs.dlss.supersample import default_model_path, load_default_model, output_target
    from emcs.nn.device import pick_device

    dev = pick_device(device)
    if dev.type == "cpu":
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    path = model if model is not None else default_model_path()
    net, card = load_default_model(path, device=dev)
    if output_target(net) == "blurred" and target != "blurred":
        raise EmcsError(f"{path} outputs the blurred scan (its card's output_target); it serves target "
                        "'blurred' only", param="model")
    return net, dev, card, path


def supersample_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    factor: int | None = None,
    coverage: str | None = None,
    *,
    method: str = "net",
    size: tuple[int, int] | None = None,
    model: str | os.PathLike | None = None,
    device: str = "auto",
    tile: int = 256,
    denoise_measured: bool = False,
    ensemble: int = 1,
    smooth: float | str = 0.0,
    safeguard: bool = True,
    target: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> dict:
    """Recover the full-resolution scan of every frame of a sparse regular-grid scan file.

    By default the network returns DLSS-STEM's target, the full scan blurred by
    the paper's 5 x 5, sigma 2.5 px Gaussian (``target``); with ``target='scan'``
    (and for the interpolators) measured probe positions are kept exactly (unless
    ``denoise_measured`` or ``smooth``). The pixel size is divided by ``s`` and the dtype kept
    (integers rounded and clipped). The network covers s = 4 ... 10 (coverage
    1/16 ... 1/100); other pitches fall back to bilinear with a warning.

    Parameters
    ----------
    input, output : path
        Sparse scan (h x w per frame) and the full-resolution file to write.
    factor, coverage : optional
        Grid pitch ``s`` or coverage ``1/s**2``; default: the pitch recorded by
        :func:`subsample_file` in a TIFF.
    method : str
        One of :data:`SUPERSAMPLE_METHODS` (``net``: the DLSS network).
    size : (int, int), optional
        Full size (H, W); default: the recorded size, else ``s*h x s*w``.
    model : path, optional
        Network weights (default: the shipped ``dlss-unet-s4-10``).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    tile : int
        Tile edge in output pixels (>= 32; bounds memory).
    denoise_measured : bool
        Network only: replace the measured samples by the network's estimate.
    ensemble : {1, 2, 4, 8}
        Network only: average over this many flips/rotations.
    smooth : float or 'auto'
        Gaussian width in pixels (0 ... :data:`MAX_SMOOTH`, 0: none) applied to
        the whole output, or ``'auto'``: chosen per frame from the scan's own
        held-out samples (:func:`emcs.dlss.supersample.auto_smoothing`), capped by
        the spectrum of the samples so that resolved lattice fringes are kept.
    safeguard : bool
        Network only: check the network against bilinear interpolation on each
        frame's own samples and fall back to bilinear, per tile and blended
        smoothly, where it is not clearly better (:mod:`emcs.dlss.safeguard`).
    target : {None, "blurred", "scan"}
        What each output frame estimates (:func:`resolve_target`; default: the
        method's own). ``"blurred"``: the full scan through DLSS-STEM's 5 x 5,
        sigma 2.5 px Gaussian, the target the paper trains and scores against
        (noise reduced; lattice periods under ~5 px are suppressed).
        ``"scan"``: the full-resolution scan, measured samples kept.
    force : bool
        Overwrite an existing output.
    progress : callable, optional
        ``progress(total) -> advance(n)`` (see the module notes).
    on_warning : callable, optional
        Receives one line per warning (pitch outside the network's range,
        pitch different from the recorded one).

    Returns
    -------
    dict
        The run's summary (method used, what happened to the measured samples,
        smoothing widths, shapes, dtype, pixel size, model, device, seconds).
        ``safeguard`` (``null`` unless the network ran with it): ``tiles``
        checked over all frames, ``tiles_fallen_back`` (network weight below
        one half), ``fallback_fraction`` and ``network_weight`` (mean over the
        output pixels). ``notes``: one line per fallback taken and why.
    """
    from emcs.dlss.sampling import grid_offset, validate_factor
    from emcs.dlss.supersample import auto_smoothing, cast_like, net_supports, supersample_frame
    from emcs.io import StackWriter, check_output, open_stack

    warn = on_warning or (lambda _msg: None)
    method = _check_options(method, tile, denoise_measured, ensemble, smooth)
    target = resolve_target(target, method, denoise_measured, smooth)
    sigma = smooth if smooth == "auto" else float(smooth)
    check_output(output, force)
    t0 = time.time()
    with open_stack(input) as stack:
        T, h, w = stack.shape
        meta = read_sparse_metadata(input)
        if factor is None and coverage is None and "dlss_factor" in meta:
            s = int(meta["dlss_factor"])
        else:
            s = resolve_factor(factor, coverage)
            if "dlss_factor" in meta and int(meta["dlss_factor"]) != s:
                warn(f"{input} was subsampled with factor {meta['dlss_factor']}, not {s}")
        validate_factor(s)
        H, W, size_source = _full_shape(size, meta, (h, w), s)
        used = method
        if method == "net" and not net_supports(s):
            warn(f"the network covers factors 4..10 (coverage 1/16..1/100); using bilinear for factor {s}")
            used = "bilinear"
        net, dev, card, model_path = (_load_network(model, device, target) if used == "net"
                                      else (None, None, None, None))
        if card is not None and s not in card.get("factors", (s,)):
            warn(f"{model_path} was trained for factors {card['factors']}, not {s}; its output there is untested")
        px = stack.pixel_size / s if stack.pixel_size else None
        oy, ox = grid_offset(H, s), grid_offset(W, s)
        keep = not (denoise_measured and used == "net") and sigma == 0.0
        widths: list[float] = []  # smoothing width of each frame
        verdicts: list = []  # the self-check of each frame
        notes: list[str] = []
        with StackWriter(output, (T, H, W), stack.dtype, px, force) as wr:
            advance = (progress or _no_progress)(T)
            for i in range(T):
                sparse = stack[i]
                width = sigma
                if sigma == "auto":
                    width, errors = auto_smoothing(sparse, s, (H, W), used, net, dev, tile)
                    notes += _smoothing_note(i, width, errors)
                widths.append(width)
                report: dict = {}
                full = supersample_frame(sparse, s, (H, W), used, net, dev, tile=tile,
                                         keep_measured=keep,
                                         ensemble=ensemble if used == "net" else 1, smooth=width,
                                         safeguard=safeguard, report=report, target=target)
                if "verdict" in report:
                    verdicts.append(report["verdict"])
                full = cast_like(full, stack.dtype)
                if keep and target == "scan":
                    full[oy::s, ox::s] = sparse  # exact, in the stored dtype
                wr.write(full)
                advance(1)
        dtype = str(stack.dtype)
    return {
        "input": str(input),
        "output": str(output),
        "factor": s,
        "coverage": f"1/{s * s}",
        "method": used,
        "target": target,
        "measured_samples": ("blurred with the scan" if target == "blurred" else "smoothed" if any(widths)
                             else "kept exactly" if keep or used != "net" else "denoised"),
        "smooth_sigma": None if sigma == 0.0 or not widths else widths[0] if len(set(widths)) == 1 else widths,
        "ensemble": ensemble if used == "net" else None,
        "safeguard": _safeguard_summary(verdicts, notes) if verdicts else None,
        "notes": notes,
        "frames": T,
        "sparse_shape": [h, w],
        "full_shape": [H, W],
        "size_from": size_source,
        "dtype": dtype,
        "pixel_size": px,
        "model": None if card is None else str(model_path),
        "device": None if dev is None else str(dev),
        "seconds": round(time.time() - t0, 3),
    }


def _smoothing_note(frame: int, width: float, errors) -> list[str]:
    """A note when ``smooth='auto'`` kept less smoothing than the held-out samples alone preferred."""
    from emcs.dlss.smoothing import SMOOTH_SIGMAS

    preferred = SMOOTH_SIGMAS[int(errors.argmin())]
    if preferred <= width:
        return []
    return [f"frame {frame}: smoothing {width:g} px instead of the held-out samples' {preferred:g} px "
            "(their gain was not significant, or the samples' spectrum shows detail, such as lattice "
            "fringes, that the wider smoothing would erase)"]


def _safeguard_summary(verdicts: list, notes: list[str]) -> dict:
    """Summary of the self-checks of all frames; adds a note when tiles fell back."""
    import numpy as np

    tiles = int(sum(v.tile_weights.size for v in verdicts if v.checked))
    fell = int(sum(int((v.tile_weights < 0.5).sum()) for v in verdicts if v.checked))
    if fell:
        notes.append(f"safeguard: {fell} of {tiles} tiles fell back to bilinear (the network did not "
                     "predict held-out samples clearly better than bilinear there)")
    if tiles < sum(v.tile_weights.size for v in verdicts):
        notes.append("safeguard: frames under 4 x 4 samples were not checked (network kept)")
    return {"tiles": tiles, "tiles_fallen_back": fell,
            "fallback_fraction": round(fell / tiles, 4) if tiles else 0.0,
            "network_weight": round(float(np.mean([v.weights.mean() for v in verdicts])), 4)}


__all__ = [
    "MAX_SMOOTH",
    "SUPERSAMPLE_METHODS",
    "read_sparse_metadata",
    "resolve_factor",
    "resolve_target",
    "subsample_file",
    "supersample_file",
]
