"""Training data and training loop for the DLSS network.

Training pairs are made on the fly: a clean STEM-like image (procedural
HAADF textures from :func:`stem_texture`, plus ``emcs.simulate.sample_stem``
when that is available), a detector model (Poisson shot noise over a range of
doses, read noise, detector lag along the fast scan axis, scan-line offsets),
a random pitch ``s`` in 4 ... 10 and a random grid phase. The target is the
noise-free signal; the loss is the mean squared error over the unmeasured
pixels (measured ones are pasted back at inference) relative to that of
bilinear interpolation on the same patch, so that clean and noisy patches and
every pitch count alike (a stand-in for DLSS-STEM's coverage normaliser p(c)).

``--data DIR`` fine-tunes on a user's own full-resolution scans: random
crops of them are the target (as recorded), subsampled for the input; a
quarter of every batch stays synthetic.

>>> import numpy as np
>>> img = stem_texture(np.random.default_rng(0), 64)
>>> img.shape, float(img.min()) >= 0, float(img.max()) <= 1
((64, 64), True, True)
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from emcs.dlss.net import ARCHITECTURE, DLSSNet
from emcs.dlss.sampling import NET_FACTORS
from emcs.errors import EmcsError
from emcs.nn.ensemble import dihedral

#: default probe blur sigma range (pixels) of the procedural images (``--probe-blur``)
PROBE_BLUR = (0.0, 1.5)
#: default ``floor`` of :func:`masked_loss` (``--loss-floor``)
LOSS_FLOOR = 1e-3


# --------------------------------------------------------------------------- clean images
def _smooth_field(rng: np.random.Generator, size: int, corr: float) -> np.ndarray:
    """Gaussian random field with correlation length ``corr`` pixels, zero mean, unit std."""
    f = rng.standard_normal((size, size))
    f = ndimage.gaussian_filter(f, corr, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


def _lattice(rng: np.random.Generator, size: int) -> np.ndarray:
    """Atomic columns: a 2-D lattice with a 1-2 atom basis, Gaussian columns."""
    a = math.exp(rng.uniform(math.log(3.5), math.log(28.0)))
    b = a * rng.uniform(0.7, 1.4)
    theta = rng.uniform(0, math.pi)
    gamma = rng.uniform(math.radians(55), math.radians(125))
    v1 = a * np.array([math.cos(theta), math.sin(theta)])
    v2 = b * np.array([math.cos(theta + gamma), math.sin(theta + gamma)])
    B = np.stack([v1, v2], 1)  # columns are lattice vectors (y, x)
    Binv = np.linalg.inv(B)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    pts = np.stack([yy.ravel(), xx.ravel()], 0)
    frac = Binv @ pts
    sigma = min(a, b) * rng.uniform(0.1, 0.28)
    n_basis = rng.integers(1, 3)
    img = np.zeros(size * size)
    for k in range(n_basis):
        shift = np.zeros(2) if k == 0 else rng.uniform(0.2, 0.8, 2)
        weight = 1.0 if k == 0 else rng.uniform(0.2, 1.0)
        f = frac - shift[:, None]
        f = f - np.round(f)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                d = B @ (f + np.array([[di], [dj]]))
                img += weight * np.exp(-(d[0] ** 2 + d[1] ** 2) / (2 * sigma**2))
    img = img.reshape(size, size)
    # column-to-column intensity variation (thickness, vacancies)
    img *= 1.0 + rng.uniform(0, 0.4) * _smooth_field(rng, size, rng.uniform(1, 6)).clip(-2, 2)
    return img


def _amorphous(rng: np.random.Generator, size: int) -> np.ndarray:
    """Amorphous/particulate texture: smooth fields at one or two scales."""
    img = _smooth_field(rng, size, math.exp(rng.uniform(math.log(1.0), math.log(30.0))))
    if rng.random() < 0.5:
        img += rng.uniform(0.2, 1.0) * _smooth_field(rng, size, rng.uniform(0.7, 4.0))
    return img


def _region(rng: np.random.Generator, size: int) -> np.ndarray:
    """Soft mask in [0, 1] splitting the field: straight interface, blob or particle."""
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    width = rng.uniform(0.5, 8.0)
    if kind == 0:  # straight interface
        ang = rng.uniform(0, 2 * math.pi)
        c = rng.uniform(0.2, 0.8, 2) * size
        d = (yy - c[0]) * math.cos(ang) + (xx - c[1]) * math.sin(ang)
    elif kind == 1:  # blobby region
        d = _smooth_field(rng, size, size * rng.uniform(0.1, 0.3)) * size * 0.1
    else:  # particle
        c = rng.uniform(0.1, 0.9, 2) * size
        r = size * rng.uniform(0.15, 0.5)
        d = r - np.hypot(yy - c[0], xx - c[1])
    return 1.0 / (1.0 + np.exp(-np.clip(d / width, -50, 50)))


def stem_texture(rng: np.random.Generator, size: int, probe_blur: tuple[float, float] = PROBE_BLUR) -> np.ndarray:
    """A clean HAADF/ADF-STEM-like image in [0, 1] (float32, ``size`` x ``size``).

    Crystalline lattices (1-2 atom basis, random spacing 3.5-28 px, orientation
    and column intensities), amorphous textures, interfaces, particles and
    vacuum, a smooth thickness/background gradient and a Gaussian probe blur
    with sigma drawn uniformly from ``probe_blur`` (pixels; larger values mean
    a scan oversampled relative to the probe).
    """
    roll = rng.random()
    if roll < 0.35:
        img = _lattice(rng, size)
    elif roll < 0.55:
        img = _amorphous(rng, size)
    else:  # two phases split by an interface / particle edge
        m = _region(rng, size)
        parts = []
        for _ in range(2):
            r = rng.random()
            if r < 0.5:
                p = _lattice(rng, size)
            elif r < 0.8:
                p = _amorphous(rng, size)
                p = (p - p.min()) / (np.ptp(p) + 1e-12)
            else:
                p = np.zeros((size, size))  # vacuum
            parts.append(p * rng.uniform(0.2, 1.0) + rng.uniform(0, 1.0))
        img = m * parts[0] + (1 - m) * parts[1]
    img = (img - img.min()) / (np.ptp(img) + 1e-12)
    if rng.random() < 0.6:  # thickness / background gradient
        img = img * (1 + rng.uniform(0, 0.8) * _smooth_field(rng, size, size / 3).clip(-1.5, 1.5) / 1.5)
        img += rng.uniform(0, 0.5) * (_smooth_field(rng, size, size / 4) + 2) / 4
    img = ndimage.gaussian_filter(img, rng.uniform(*probe_blur))
    img = (img - img.min()) / (np.ptp(img) + 1e-12)
    return img.astype(np.float32)


def _sample_stem_source() -> Callable | None:
    """``emcs.simulate.sample_stem(rng, size)`` if that module provides it."""
    try:
        from emcs.simulate import sample_stem  # type: ignore[attr-defined]
    except Exception:
        return None
    return sample_stem


def clean_image(rng: np.random.Generator, size: int, simulated: Callable | None = None,
                probe_blur: tuple[float, float] = PROBE_BLUR) -> np.ndarray:
    """One clean training image: procedural, or from ``simulated`` 40 % of the time."""
    if simulated is not None and rng.random() < 0.4:
        try:
            img = np.asarray(simulated(rng, (size, size)), np.float32)
            if img.shape == (size, size) and np.isfinite(img).all() and np.ptp(img) > 0:
                return (img - img.min()) / np.ptp(img)
        except Exception:
            pass
    return stem_texture(rng, size, probe_blur)


# --------------------------------------------------------------------------- detector model
def degrade(rng: np.random.Generator, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a recorded scan from a clean image; returns ``(noisy, target)``.

    ``target`` is the noise-free signal (clean image through the detector lag);
    ``noisy`` adds Poisson shot noise (2-2000 counts at the brightest pixel, or
    none 10 % of the time), Gaussian read noise and scan-line offsets.
    """
    img = clean.astype(np.float64)
    bg = rng.uniform(0, 0.2)
    signal = img + bg
    lag = rng.uniform(0, 1.5) if rng.random() < 0.6 else 0.0
    if rng.random() < 0.1:
        noisy = signal.copy()
    else:
        dose = math.exp(rng.uniform(math.log(2.0), math.log(2000.0)))
        noisy = rng.poisson(signal * dose) / dose
        noisy += rng.standard_normal(img.shape) * rng.uniform(0, 0.03)
        if rng.random() < 0.3:
            noisy += rng.standard_normal((img.shape[0], 1)) * rng.uniform(0, 0.05)
    if lag > 0:  # detector afterglow along the fast scan axis (x)
        n = int(math.ceil(lag * 5))
        k = np.exp(-np.arange(n + 1) / lag)
        k /= k.sum()
        kern = np.concatenate([np.zeros(n), k])  # causal
        signal = ndimage.convolve1d(signal, kern, axis=1, mode="nearest")
        noisy = ndimage.convolve1d(noisy, kern, axis=1, mode="nearest")
    if rng.random() < 0.5:  # swap fast/slow axes sometimes (scan rotation)
        signal, noisy = signal.T, noisy.T
    return noisy.astype(np.float32), signal.astype(np.float32)


# --------------------------------------------------------------------------- batches
def make_example(
    rng: np.random.Generator,
    noisy: np.ndarray,
    target: np.ndarray,
    factor: int,
    offset: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Features (4, P, P) and target (1, P, P) for one patch, grid at ``offset``."""
    from emcs.dlss.supersample import features

    oy, ox = offset
    sparse = noisy[oy::factor, ox::factor]
    feats = features(sparse, factor, noisy.shape, offset)
    return feats, target[None]


def make_batch(
    rng: np.random.Generator,
    batch: int,
    patch: int,
    factors: tuple[int, ...] = NET_FACTORS,
    simulated: Callable | None = None,
    user_crops: Callable | None = None,
    user_fraction: float = 0.75,
    user_noise: bool = False,
    probe_blur: tuple[float, float] = PROBE_BLUR,
):
    """A training batch: features (B, 4, P, P), targets (B, 1, P, P), pitches (B,), recorded (B,).

    The first ``user_fraction`` of the patches come from ``user_crops`` when it is
    given. A user's scan is its own target (``recorded`` is True: its measured
    pixels are their own targets, so :func:`masked_loss` leaves them out), unless
    ``user_noise``: then the scan is taken as clean and passed through the
    simulated detector (:func:`degrade`) like a synthetic image. ``probe_blur``:
    see :func:`stem_texture`.
    """
    xs, ys, ss, rec = [], [], [], []
    n_user = int(round(user_fraction * batch)) if user_crops is not None else 0
    for i in range(batch):
        s = int(rng.choice(factors))
        recorded = False
        if i < n_user and user_noise:
            noisy, target = degrade(rng, user_crops(rng, patch))
        elif i < n_user:
            noisy = user_crops(rng, patch)
            target, recorded = noisy, True
        else:
            noisy, target = degrade(rng, clean_image(rng, patch, simulated, probe_blur))
        k = int(rng.integers(8))  # dihedral augmentation
        noisy, target = dihedral(noisy, k), dihedral(target, k)
        off = (int(rng.integers(s)), int(rng.integers(s)))
        f, t = make_example(rng, noisy, target, s, off)
        xs.append(f)
        ys.append(t)
        ss.append(s)
        rec.append(recorded)
    return np.stack(xs), np.stack(ys), np.array(ss), np.array(rec)


def zoomed_crop(rng: np.random.Generator, frame: np.ndarray, size: int, zoom: tuple[float, float]) -> np.ndarray:
    """A random ``size`` x ``size`` crop of ``frame`` at a magnification drawn log-uniformly in ``zoom``.

    A magnification z > 1 enlarges a (size/z)-pixel region (cubic spline), z < 1
    shrinks a larger one after an anti-aliasing Gaussian (sigma 0.4/z): the same
    structures at other sizes, as a microscope would record them at another
    magnification. ``zoom = (1, 1)`` is a plain crop and draws no extra random number.

    Examples
    --------
    >>> f = np.random.default_rng(0).random((100, 90)).astype(np.float32)
    >>> zoomed_crop(np.random.default_rng(1), f, 32, (0.5, 2.0)).shape
    (32, 32)
    """
    lo, hi = zoom
    z = 1.0 if lo == hi == 1.0 else math.exp(rng.uniform(math.log(lo), math.log(hi)))
    src = int(round(size / z)) if z != 1.0 else size
    src = max(4, min(src, *frame.shape))
    y = int(rng.integers(frame.shape[0] - src + 1))
    x = int(rng.integers(frame.shape[1] - src + 1))
    region = frame[y : y + src, x : x + src]
    if src == size:
        return region
    if src > size:  # shrinking: low-pass first, so the smaller image is not aliased
        region = ndimage.gaussian_filter(region, 0.4 * src / size, mode="reflect")
    out = ndimage.zoom(region, size / src, order=3, mode="reflect", grid_mode=True)[:size, :size]
    if out.shape != (size, size):  # rounding in ndimage.zoom: pad the last row/column
        out = np.pad(out, ((0, size - out.shape[0]), (0, size - out.shape[1])), mode="edge")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def user_crop_source(folder: str | os.PathLike, patch: int, zoom: tuple[float, float] = (1.0, 1.0)) -> Callable:
    """Random ``patch`` crops of the full scans in ``folder`` (each frame min-max scaled),
    at a magnification drawn in ``zoom`` (:func:`zoomed_crop`)."""
    from emcs.io import open_stack

    folder = Path(folder)
    if not folder.is_dir():
        raise EmcsError("--data must be a folder of full-resolution scans", folder)
    frames = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        try:
            stack = open_stack(p)
        except EmcsError:
            continue
        with stack:
            if min(stack.frame_shape) < patch:
                continue
            for i in range(min(stack.n_frames, 64)):
                f = np.nan_to_num(stack[i].astype(np.float32))
                rng_ = np.ptp(f)
                frames.append((f - f.min()) / rng_ if rng_ > 0 else f * 0)
    if not frames:
        raise EmcsError(f"no readable scans of at least {patch}x{patch} pixels in the folder", folder)

    def crop(rng: np.random.Generator, size: int) -> np.ndarray:
        return zoomed_crop(rng, frames[int(rng.integers(len(frames)))], size, zoom)

    return crop


# --------------------------------------------------------------------------- training
def masked_loss(pred, target, feats, pitches, floor: float = LOSS_FLOOR, all_pixels: bool = False, recorded=None):
    """Relative MSE over unmeasured pixels (or every pixel), in per-patch [0, 1] units.

    Each patch's MSE is divided by (the bilinear MSE of that patch + ``floor``), so
    clean, easy patches count as much as noisy ones (the network must not do
    worse than bilinear where bilinear is already good) and every pitch counts
    alike. A larger ``floor`` moves towards a plain MSE: patches whose bilinear
    MSE is below it then count by their absolute error, so noisy scans (where
    telling noise from unresolved structure matters most) weigh more. With
    ``all_pixels`` the measured pixels count too (their target is
    the noise-free signal, so the network learns to denoise them for
    ``emcs supersample --denoise-measured``), except in the patches flagged in
    ``recorded`` (a user's scan as its own target: there the measured pixels
    would only teach the network to copy its input). Returns
    ``(loss, per-patch MSE)``.
    """
    import torch

    from emcs.dlss.supersample import normalize_tiles

    _, lo, scale = normalize_tiles(feats)
    free = 1 - feats[:, 2:3]
    if all_pixels:
        keep = torch.ones(len(free), dtype=torch.bool)
        if recorded is not None:
            keep = ~torch.as_tensor(np.asarray(recorded, bool))
        free = torch.where(keep[:, None, None, None], torch.ones_like(free), free)
    n = free.flatten(1).sum(1)
    per = (((pred - target) / scale) ** 2 * free).flatten(1).sum(1) / n
    per_bl = (((feats[:, :1] - target) / scale) ** 2 * free).flatten(1).sum(1) / n
    return (per / (per_bl.detach() + floor)).mean(), per


def validation_set(seed: int, n: int, patch: int, simulated=None):
    """A fixed synthetic validation set (never the real held-out crops)."""
    rng = np.random.default_rng(seed + 10_000)
    return make_batch(rng, n, patch, NET_FACTORS, simulated)[:3]


def train_dlss(
    steps: int,
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    data_fraction: float = 0.75,
    data_noise: bool = False,
    data_zoom: tuple[float, float] = (1.0, 1.0),
    patch: int = 128,
    batch: int = 8,
    resume: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    width: int = 48,
    blocks: int = 2,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int = 1,
    save_every: int = 200,
    init: str | os.PathLike | None = None,
    context: int | None = None,
    all_pixels: bool = True,
    loss_floor: float = LOSS_FLOOR,
    probe_blur: tuple[float, float] = PROBE_BLUR,
    max_minutes: float | None = None,
    factors: tuple[int, ...] = NET_FACTORS,
    command: str = "",
    log: Callable[[str], None] = print,
    advance: Callable[[int], None] | None = None,
) -> dict:
    """Train (or fine-tune) the DLSS network and save it as fp16 safetensors + card.

    Parameters
    ----------
    steps : int
        Total optimiser steps (a resumed run continues up to this number).
    out : path
        ``.safetensors`` destination (written at every checkpoint and at the end).
    data : path, optional
        Folder of the user's full-resolution scans to fine-tune on.
    data_fraction : float
        Share of each batch drawn from ``data`` (the rest is synthetic).
    data_noise : bool
        Treat the scans in ``data`` as clean and add the simulated detector noise
        (for clean renderings); by default each scan is its own target.
    data_zoom : (float, float)
        Magnification range for the ``data`` crops (:func:`zoomed_crop`), e.g.
        (0.5, 2): a few scans then teach their structures at several sizes.
        Default (1, 1): crops as recorded.
    patch, batch : int
        Patch edge (pixels) and patches per step.
    resume : path, optional
        Training-state checkpoint to continue from.
    checkpoint : path, optional
        Where training state is saved (default ``OUT`` with suffix ``.ckpt``).
    width, blocks : int
        Network size (see :class:`emcs.dlss.net.DLSSNet`).
    lr : float
        Peak Adam learning rate (cosine decay to 1 % of it).
    init : path, optional
        Start from these shipped weights (fine-tuning); the card's config wins,
        except ``context``.
    context : int, optional
        Residual blocks of the context branch (:class:`emcs.dlss.net.DLSSNet`);
        with ``init`` a branch is added to (or kept from) the initial weights.
    all_pixels : bool
        Count the measured pixels in the loss too (see :func:`masked_loss`).
    loss_floor : float
        ``floor`` of :func:`masked_loss` (in squared [0, 1] units): each
        patch's MSE is divided by (its bilinear MSE + ``loss_floor``).
    probe_blur : (float, float)
        Range of the procedural images' probe blur sigma (pixels), see
        :func:`stem_texture`.
    max_minutes : float, optional
        Wall-clock budget (training time, summed over resumes). The learning-rate
        schedule follows whichever of steps or time runs out first, and training
        stops when either is used up.
    factors : tuple of int
        Grid pitches to draw from (each in 4..10); a pitch given twice is drawn
        twice as often. The network still serves the whole range.

    Returns
    -------
    dict
        The model card written.
    """
    import torch

    from emcs.nn.weights import load_model, save_model

    if steps < 1:
        raise EmcsError("--steps must be >= 1")
    if patch < 32 or patch % 8:
        raise EmcsError("--patch must be a multiple of 8, at least 32")
    if batch < 1:
        raise EmcsError("--batch must be >= 1")
    torch.set_num_threads(max(1, int(threads)))
    out = Path(out)
    if out.suffix != ".safetensors":
        raise EmcsError("the output must be a .safetensors file", out)
    if not out.parent.is_dir():
        raise EmcsError(f"the output folder {out.parent} does not exist", out)
    checkpoint = Path(checkpoint) if checkpoint else out.with_suffix(".ckpt")
    factors = tuple(int(f) for f in factors)
    if not factors or any(f not in NET_FACTORS for f in factors):
        raise EmcsError(f"--factors must lie in {min(NET_FACTORS)}..{max(NET_FACTORS)}, got {list(factors)}")
    if not 0.0 < loss_floor <= 1.0:
        raise EmcsError(f"--loss-floor must be in (0, 1], got {loss_floor}")
    probe_blur = (float(probe_blur[0]), float(probe_blur[1]))
    if not 0.0 <= probe_blur[0] <= probe_blur[1] <= 8.0:
        raise EmcsError(f"--probe-blur must be LO,HI with 0 <= LO <= HI <= 8, got {list(probe_blur)}")
    if not 0.0 <= data_fraction <= 1.0:
        raise EmcsError("--data-fraction must be between 0 and 1")
    data_zoom = (float(data_zoom[0]), float(data_zoom[1]))
    if not 0.25 <= data_zoom[0] <= data_zoom[1] <= 4.0:
        raise EmcsError(f"--data-zoom must be LO,HI with 0.25 <= LO <= HI <= 4, got {list(data_zoom)}")
    user_crops = user_crop_source(data, patch, data_zoom) if data else None
    simulated = _sample_stem_source()

    config = {"width": int(width), "blocks": int(blocks)}
    if context:
        config["context"] = int(context)
    if init:
        from emcs.dlss.net import BUILDERS

        model, init_card = load_model(init, BUILDERS)
        config = dict(init_card["config"])
        if context is not None and int(context) != int(config.get("context", 0)):
            config["context"] = int(context)  # grow (zero-initialised) or drop the branch
            grown = DLSSNet(**config)
            grown.load_state_dict({k: v.float() for k, v in model.state_dict().items()
                                   if not k.startswith("ctx_") or context}, strict=False)
            model = grown
        model = model.float()
        model.train()
    else:
        torch.manual_seed(seed)
        model = DLSSNet(**config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start, history, elapsed0 = 0, [], 0.0
    if resume:
        resume = Path(resume)
        if not resume.is_file():
            raise EmcsError("no such checkpoint", resume)
        state = torch.load(resume, map_location="cpu", weights_only=True)
        cfg = json.loads(state["config"])
        if cfg != config and not init:
            config = cfg
            model = DLSSNet(**config)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
        history = json.loads(state["history"])
        elapsed0 = float(state.get("elapsed", 0.0))
        log(f"resumed from {resume} at step {start}")
    rng = np.random.default_rng([seed, start])
    vx, vy, vs = validation_set(seed, 32, patch, simulated)
    vx_t, vy_t = torch.from_numpy(vx), torch.from_numpy(vy)

    budget = None if not max_minutes else 60.0 * float(max_minutes)

    def progress(step: int) -> float:
        f = step / steps
        if budget:
            f = max(f, (elapsed0 + time.time() - t0) / budget)
        return min(f, 1.0)

    def lr_at(step: int) -> float:
        warm = min(1.0, (step + 1) / 100)
        return lr * warm * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress(step))))

    def evaluate() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model_run(vx_t[i : i + 8]) for i in range(0, len(vx_t), 8)])
            _, per = masked_loss(pred, vy_t, vx_t, vs)
            _, per_bl = masked_loss(vx_t[:, :1], vy_t, vx_t, vs)
        model.train()
        return float(per.mean().sqrt()), float(per_bl.mean().sqrt())

    def model_run(x):
        from emcs.dlss.supersample import run_net

        return run_net(model, x)

    def save(step: int) -> dict:
        rmse, rmse_bl = evaluate()
        history.append({"step": step, "val_rmse": rmse, "val_rmse_bilinear": rmse_bl})
        tmp = checkpoint.with_name(checkpoint.name + ".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "config": json.dumps(config),
                "history": json.dumps(history),
                "elapsed": elapsed0 + time.time() - t0,
            },
            tmp,
        )
        os.replace(tmp, checkpoint)
        card = {
            "architecture": ARCHITECTURE,
            "config": config,
            "task": "DLSS-STEM supersampling of regular sparse scans (one unified network)",
            "factors": list(NET_FACTORS),
            "coverages": [f"1/{s * s}" for s in NET_FACTORS],
            "factor_draw_weights": {str(f): factors.count(f) / len(factors) for f in sorted(set(factors))},
            "inputs": "bilinear, nearest fill, sample mask, s/10; each tile min-max normalised by its samples",
            "output": "bilinear + predicted residual; measured positions pasted back",
            "training_data": (
                "procedural HAADF/ADF-STEM textures (emcs.dlss.train.stem_texture)"
                + (" + emcs.simulate.sample_stem" if simulated else "")
                + (f" + scans from {data} ({data_fraction:.0%} of each batch"
                   + (", simulated detector noise added" if data_noise else ", as recorded")
                   + (f", magnified {data_zoom[0]:g}-{data_zoom[1]:g}x" if data_zoom != (1.0, 1.0) else "") + ")"
                   if data else "")
                + f"; probe blur sigma {probe_blur[0]:g}-{probe_blur[1]:g} px"
                + "; Poisson noise 2-2000 counts/px, read noise, detector lag, scan-line offsets"
            ),
            "target": ("noise-free signal (synthetic" + (" and --data scans" if data and data_noise else "")
                       + ")" + ("; recorded scan, measured pixels left out of the loss (--data)"
                                if data and not data_noise else "")),
            "loss": (f"per-patch MSE over {'all' if all_pixels else 'unmeasured'} pixels / "
                     f"(bilinear MSE + {loss_floor:g})"),
            "fine_tuned_from": (None if not init else
                                {"path": str(init), "steps": init_card.get("steps"),
                                 "training_minutes": init_card.get("training_minutes"),
                                 "loss": init_card.get("loss"), "command": init_card.get("command")}),
            "steps": step,
            "training_minutes": round((elapsed0 + time.time() - t0) / 60, 1),
            "batch": batch,
            "patch": patch,
            "learning_rate": lr,
            "seed": seed,
            "command": command,
            "synthetic_validation_rmse": {"net": rmse, "bilinear": rmse_bl},
        }
        return save_model(out, model, card)

    model.train()
    t0 = time.time()
    run_loss = None
    card = None
    done = start
    for step in range(start, steps):
        if progress(step) >= 1.0:
            log(f"time budget of {max_minutes} minutes used up at step {step}")
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, y, s, rec = make_batch(rng, batch, patch, factors, simulated, user_crops,
                                  data_fraction, data_noise, probe_blur)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        pred = model_run(xt)
        loss, _ = masked_loss(pred, yt, xt, s, floor=loss_floor, all_pixels=all_pixels, recorded=rec)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        v = float(loss.detach())
        run_loss = v if run_loss is None else 0.98 * run_loss + 0.02 * v
        if advance is not None:
            advance(1)
        done = step + 1
        if done % 50 == 0:
            rate = (done - start) * batch / (time.time() - t0)
            log(f"step {done}/{steps} loss {run_loss:.5f} lr {lr_at(step):.2e} {rate:.1f} patches/s")
        if done % save_every == 0:
            card = save(done)
            h = history[-1]
            log(f"checkpoint {done}: val rmse net {h['val_rmse']:.4f} bilinear {h['val_rmse_bilinear']:.4f}")
    if card is None or card["steps"] != done:
        card = save(done)
    return card

