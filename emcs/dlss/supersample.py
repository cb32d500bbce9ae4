"""Recover the full scan from a sparse regular-grid STEM scan.

:func:`supersample_frame` interpolates one (h, w) sparse frame to (H, W) with a
classical kernel or the DLSS network, then pastes the measured values back at
their probe positions (data consistency: measured pixels are kept exactly).

The network runs on overlapping tiles (:func:`emcs.nn.tiling.tiled_apply`),
each tile normalised to [0, 1] by the min and max of its measured samples (as
the network was trained), so any frame size works in bounded memory.

>>> import numpy as np
>>> from emcs.dlss.sampling import subsample
>>> x = np.random.default_rng(1).random((30, 31)).astype(np.float32)
>>> y = supersample_frame(subsample(x, 5), 5, (30, 31), method="bicubic")
>>> y.shape, bool((subsample(y, 5) == subsample(x, 5)).all())
((30, 31), True)
"""

from __future__ import annotations

import numpy as np

from emcs.dlss import smoothing
from emcs.dlss.interp import METHODS, upsample
from emcs.dlss.safeguard import Verdict, blend, check
from emcs.dlss.sampling import NET_FACTORS, grid_offset

DEFAULT_MODEL = "dlss-unet-s4-10"
#: what a supersampled frame estimates: DLSS-STEM's target, the full scan blurred by a
#: 5 x 5, sigma 2.5 px Gaussian (:func:`emcs.dlss.smoothing.paper_blur`), or the full
#: scan itself with the measured samples kept exactly
TARGETS = ("blurred", "scan")


def output_target(model) -> str:
    """What ``model`` was trained to output: ``"blurred"`` or ``"scan"`` (its card's ``output_target``)."""
    return getattr(model, "output_target", "scan")


def features(
    sparse: np.ndarray,
    factor: int,
    full_shape: tuple[int, int],
    offset: tuple[int, int] | None = None,
) -> np.ndarray:
    """Network input (4, H, W) float32: bilinear, nearest fill, mask, s/10 (unnormalised).

    Parameters
    ----------
    sparse : ndarray
        (h, w) measured samples.
    factor : int
        Grid pitch.
    full_shape : (int, int)
        (H, W) of the full scan.
    offset : (int, int), optional
        Grid offset; default ``(N mod s)//2`` per axis.
    """
    H, W = full_shape
    if offset is None:
        offset = (grid_offset(H, factor), grid_offset(W, factor))
    out = np.empty((4, H, W), np.float32)
    out[0] = upsample(sparse, factor, full_shape, "bilinear", offset)
    out[1] = upsample(sparse, factor, full_shape, "nearest", offset)
    out[2] = 0.0
    oy, ox = offset
    out[2, oy::factor, ox::factor] = 1.0
    out[3] = factor / 10.0
    return out


def normalize_tiles(x):
    """Per-tile min-max normalisation of channels 0-1 of (n, 4, h, w) features.

    The range comes from the nearest-fill channel (= the measured samples that
    the tile sees). Returns ``(normalised x, lo, scale)`` with ``lo`` and
    ``scale`` of shape (n, 1, 1, 1); uniform tiles get scale 1.
    """
    import torch

    v = x[:, 1].flatten(1)
    lo = v.min(1).values.view(-1, 1, 1, 1)
    hi = v.max(1).values.view(-1, 1, 1, 1)
    scale = hi - lo
    scale = torch.where(scale > 1e-12 * (1 + hi.abs()), scale, torch.ones_like(scale))
    xn = torch.cat([(x[:, :2] - lo) / scale, x[:, 2:]], 1)
    return xn, lo, scale


def run_net(model, x):
    """Apply the network to raw features (n, 4, h, w); returns (n, 1, h, w) in input units."""
    xn, lo, scale = normalize_tiles(x)
    return model(xn) * scale + lo


def load_default_model(path=None, device=None):
    """Load ``models/dlss-unet-s4-10.safetensors`` (or ``path``) and its card."""
    from emcs.dlss.net import BUILDERS
    from emcs.nn.weights import load_model

    if path is None:
        path = default_model_path()
    model, card = load_model(path, BUILDERS, device=device)
    model.output_target = card.get("output_target", "scan")
    return model, card


def default_model_path():
    """Path of the default model: ``$EMCS_MODELS`` folders first, then the shipped one.

    It outputs the full scan; for ``target="blurred"`` its output is blurred afterwards.
    """
    from emcs.nn.weights import find_weights

    return find_weights(DEFAULT_MODEL)


def net_estimate(
    sparse: np.ndarray,
    factor: int,
    full_shape: tuple[int, int],
    model,
    device=None,
    tile: int = 256,
    overlap: int = 48,
    ensemble: int = 1,
    offset: tuple[int, int] | None = None,
) -> np.ndarray:
    """The network's (H, W) float32 estimate (measured positions included, nothing pasted back).

    Tiled (:func:`emcs.nn.tiling.tiled_apply`); with ``ensemble`` > 1 averaged over
    that many flips/rotations of the scan, the grid transformed with it, so every
    pass sees a regular grid as in training. ``offset``: full-resolution position of
    sample (0, 0), default ``(N mod s)//2`` per axis.
    """
    import torch

    from emcs.nn.ensemble import ENSEMBLES, dihedral
    from emcs.nn.tiling import tiled_apply

    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {tuple(ENSEMBLES)}, got {ensemble}")
    H, W = full_shape
    oy, ox = offset if offset is not None else (grid_offset(H, factor), grid_offset(W, factor))
    h, w = sparse.shape
    dev = device or torch.device("cpu")

    def fn(t):
        return run_net(model, t.to(dev)).cpu()

    grid = np.zeros(full_shape, bool)
    grid[oy : oy + h * factor : factor, ox : ox + w * factor : factor] = True
    out = np.zeros(full_shape, np.float32)
    for t in ENSEMBLES[ensemble]:
        g = dihedral(grid, t)  # the sampling grid seen in the transformed frame
        off = (int(np.argmax(g.any(1))), int(np.argmax(g.any(0))))
        feats = torch.from_numpy(features(dihedral(sparse, t), factor, g.shape, off))[None]
        with torch.no_grad():
            est = tiled_apply(fn, feats, tile=tile, overlap=min(overlap, tile // 2), batch=4)[0, 0].numpy()
        out += dihedral(est, t, inverse=True)
    return out / len(ENSEMBLES[ensemble])


def check_net(sparse, factor, full_shape, model, device=None, tile: int = 256, overlap: int = 48) -> Verdict:
    """Self-check of the network against bilinear on this frame (:func:`emcs.dlss.safeguard.check`).

    A network that outputs the blurred scan is checked against blurred bilinear.
    """
    offset = (grid_offset(full_shape[0], factor), grid_offset(full_shape[1], factor))

    def predict(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        return net_estimate(coarse, factor, shape, model, device, tile, overlap, offset=(0, 0))

    baseline = smoothing.paper_blur if output_target(model) == "blurred" else None
    return check(sparse, factor, full_shape, offset, predict, baseline)


def supersample_frame(
    sparse: np.ndarray,
    factor: int,
    full_shape: tuple[int, int],
    method: str = "net",
    model=None,
    device=None,
    tile: int = 256,
    overlap: int = 48,
    keep_measured: bool = True,
    ensemble: int = 1,
    smooth: float = 0.0,
    safeguard: bool = True,
    report: dict | None = None,
    target: str = "scan",
) -> np.ndarray:
    """Full-resolution (H, W) float32 frame from a sparse (h, w) frame.

    Parameters
    ----------
    sparse : ndarray
        Measured samples on the grid of pitch ``factor`` with offset ``(N mod s)//2``.
    factor : int
        Grid pitch ``s``.
    full_shape : (int, int)
        Output size (H, W); must give ``sparse.shape`` samples.
    method : str
        ``net`` or one of :data:`emcs.dlss.interp.METHODS`.
    model : torch.nn.Module, optional
        The DLSS network (needed for ``method='net'``).
    device : torch.device, optional
        Where the network runs.
    tile, overlap : int
        Tile edge and overlap (pixels of the full-resolution output).
    keep_measured : bool
        Paste the measured samples back exactly (data consistency, default).
        ``False`` keeps the network's estimate there too, i.e. denoises the
        measured pixels of a noisy scan; only meaningful for ``method='net'``
        (classical kernels pass through the samples anyway).
    ensemble : {1, 2, 4, 8}
        ``net`` only: average the network over this many flips/rotations of the
        scan (:data:`emcs.nn.ensemble.ENSEMBLES`; the grid is transformed with
        it, so every pass sees a regular grid as in training). Costs
        ``ensemble`` times the network time.
    smooth : float
        Smooth the whole output with a Gaussian of this width (pixels; 0:
        none), measured pixels included: needs ``keep_measured=False``. See
        :func:`auto_smoothing` for a width chosen from the scan itself.
    safeguard : bool
        ``net`` only: check the network against bilinear interpolation on this
        frame's own samples and fall back to bilinear, per tile and blended
        smoothly, where it is not clearly better (:mod:`emcs.dlss.safeguard`;
        a quarter of a network pass more). Default on.
    report : dict, optional
        Receives ``"verdict"``: the :class:`~emcs.dlss.safeguard.Verdict` of the check.
    target : {"scan", "blurred"}
        What the frame estimates (:data:`TARGETS`). ``"blurred"``: the full scan
        through DLSS-STEM's 5 x 5, sigma 2.5 px Gaussian, the paper's training and
        scoring target (Ede, arXiv:1910.10467, 2019, eq. 3). Blurring is linear, so the
        best estimate of the blurred scan is the blurred best estimate of the scan
        (measured samples kept): a network trained on the blurred target (card
        ``output_target``) is used as it is, any other method is blurred
        afterwards, the safeguard's fallback included. Needs ``keep_measured``
        and no ``smooth``.

    Returns
    -------
    ndarray
        (H, W) float32, with the measured samples pasted back exactly unless
        ``keep_measured`` is False or ``target`` is ``"blurred"``.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if target == "blurred" and (smooth > 0 or not keep_measured):
        raise ValueError("target 'blurred' is the paper's fixed smoothing of the scan: it takes neither "
                         "smooth nor keep_measured=False")
    if smooth > 0 and keep_measured:
        raise ValueError("smoothing replaces the measured samples too: pass keep_measured=False")
    sparse = np.asarray(sparse, np.float32)
    sparse = np.nan_to_num(sparse, nan=0.0, posinf=0.0, neginf=0.0)
    H, W = full_shape
    oy, ox = grid_offset(H, factor), grid_offset(W, factor)
    trained_blurred = method == "net" and model is not None and output_target(model) == "blurred"
    if trained_blurred and target != "blurred":
        raise ValueError("this network outputs the blurred scan (its card's output_target): use target='blurred'")
    if method == "net":
        if model is None:
            raise ValueError("method 'net' needs a model")
        out = net_estimate(sparse, factor, full_shape, model, device, tile, overlap, ensemble)
        if safeguard:
            bil = upsample(sparse, factor, full_shape, "bilinear")
            if trained_blurred:  # bilinear passes through the samples: blur it like the network's output
                bil = smoothing.paper_blur(bil)
            verdict = check_net(sparse, factor, full_shape, model, device, tile, overlap)
            out = blend(out, bil, verdict)
            if report is not None:
                report["verdict"] = verdict
    elif method in METHODS:
        out = upsample(sparse, factor, full_shape, method)
    else:
        raise ValueError(f"unknown method {method!r}")
    if trained_blurred:
        return out
    if keep_measured or method != "net":
        out[oy::factor, ox::factor] = sparse  # data consistency
    if target == "blurred":
        return smoothing.paper_blur(out)
    return smoothing.smooth(out, smooth)


def auto_smoothing(
    sparse: np.ndarray,
    factor: int,
    full_shape: tuple[int, int],
    method: str = "net",
    model=None,
    device=None,
    tile: int = 256,
    max_size: int = 1024,
) -> tuple[float, np.ndarray]:
    """The smoothing width for :func:`supersample_frame` chosen from the scan's own samples.

    Each quarter of the measured grid is held out in turn and predicted by
    ``method`` from the rest; the width in
    :data:`emcs.dlss.smoothing.SMOOTH_SIGMAS` whose smoothed prediction is
    closest to the held-out samples wins (:func:`emcs.dlss.smoothing.holdout_errors`)
    if it beats no smoothing clearly (:func:`emcs.dlss.smoothing.choose_sigma`).
    The held-out samples cannot judge detail finer than about twice the grid
    pitch (a held-out sample is predicted from neighbours ``s`` away), so a
    lattice resolved by the scan would look like noise to smooth away; the
    width is therefore capped by the spectrum of the samples themselves
    (:func:`emcs.dlss.smoothing.spectral_risks`), which sees lattice peaks up to
    the grid's Nyquist frequency.
    Costs four reconstructions (one network pass each, no ensemble) of at most
    ``max_size`` x ``max_size`` output pixels (the central part of a larger frame).

    Returns
    -------
    sigma : float
        The chosen width (0: no smoothing).
    errors : ndarray
        Held-out mean squared error per width (noise variance included).

    >>> from emcs.dlss.sampling import subsample
    >>> rng = np.random.default_rng(0)
    >>> noisy = (np.add.outer(np.arange(64), np.arange(64)) / 128 + 0.3 * rng.standard_normal((64, 64)))
    >>> sigma, _ = auto_smoothing(subsample(noisy.astype(np.float32), 4), 4, (64, 64), "bilinear")
    >>> sigma > 0  # pure noise on a smooth ramp: smoothing predicts unseen samples better
    True
    """
    sparse = np.asarray(sparse, np.float32)
    h, w = sparse.shape
    if h < 2 or w < 2:
        return 0.0, np.zeros(len(smoothing.SMOOTH_SIGMAS))
    nh, nw = min(h, max(2, max_size // factor)), min(w, max(2, max_size // factor))
    a, b = (h - nh) // 2, (w - nw) // 2
    crop = sparse[a : a + nh, b : b + nw]
    shape = full_shape if (nh, nw) == (h, w) else (nh * factor, nw * factor)  # the central samples
    pos = (grid_offset(shape[0], factor), grid_offset(shape[1], factor), factor)  # (0, 0) for a crop

    def reconstruct(x: np.ndarray) -> np.ndarray:
        return supersample_frame(x, factor, shape, method, model, device, tile=tile, keep_measured=False,
                                 safeguard=False)

    errors = smoothing.holdout_errors(crop, reconstruct, pos)
    risks = smoothing.spectral_risks(sparse, factor)
    return smoothing.choose_sigma(errors, risks), errors.mean(axis=1)


def cast_like(frame: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast a float frame to ``dtype``: integers are rounded and clipped to the type's range."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(frame), info.min, info.max).astype(dtype)
    return frame.astype(dtype)


def net_supports(factor: int) -> bool:
    """True if the shipped network was trained for this grid pitch."""
    return int(factor) in NET_FACTORS
