"""Frame-by-frame SR reconstruction of movies: the VDL-SIM network and Wiener SIM.

Both yield one SR frame (2H, 2W, float32) per time point so that the caller can
stream them to disk (memory stays bounded by one time point).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emcs.errors import EmcsError
from emcs.sim.otf import Optics

ORDERS = ("angle-major", "phase-major")
DEFAULT_WEIGHTS = "vdlsim-32.safetensors"
#: the raw-input network (:mod:`emcs.sim.rawnet`), the default for raw input where installed
DEFAULT_RAW_WEIGHTS = "vdlsim-raw.safetensors"


def default_weights(input_kind: str = "widefield") -> Path:
    """The network for ``input_kind``: ``$EMCS_MODELS`` folders first, then the shipped one.

    Wide-field input: the 32-channel VDL-SIM network; raw input: the raw-input network
    where installed, else the wide-field network (run on the sum of the raw frames).
    """
    from emcs.nn.weights import find_weights

    if input_kind == "raw":
        found = raw_network()
        if found is not None:
            return found
    return find_weights(DEFAULT_WEIGHTS)


def raw_network() -> Path | None:
    """The installed raw-input network's weights, or None."""
    from emcs.nn.weights import find_weights

    try:
        return find_weights(DEFAULT_RAW_WEIGHTS)
    except EmcsError:
        return None


def load_network(path: str | os.PathLike | None = None, device=None, input_kind: str = "widefield"):
    """Load VDL-SIM weights, wide-field or raw-input (verified against their model card).

    Returns (model, card); ``card["architecture"]`` tells which network it is.
    """
    from emcs.nn.weights import load_model
    from emcs.sim import net, rawnet

    path = Path(path) if path else default_weights(input_kind)
    return load_model(path, {**net.BUILDERS, **rawnet.BUILDERS}, device=device)


def net_frame(model, frame: np.ndarray, device=None, tile: int = 256) -> np.ndarray:
    """Super-resolve one wide-field frame (H, W) with the network -> (2H, 2W) float32.

    The output is in the input's intensity units (normalised range times the
    input's robust range), clipped at 0. Frames larger than ``tile`` are tiled.
    """
    import torch

    from emcs.nn.tiling import tiled_apply
    from emcs.sim.net import normalise

    x, _, scale = normalise(frame)
    dev = device or next(model.parameters()).device
    t = torch.from_numpy(x)[None, None].to(dev)
    with torch.no_grad():
        y = tiled_apply(model, t, tile=tile, overlap=32, scale=2, batch=2, out_device=torch.device("cpu"))
    return np.clip(y[0, 0].numpy() * scale, 0, None).astype(np.float32)


def validate_raw_layout(n_frames: int, angles: int, phases: int, order: str, path=None) -> int:
    """Check the raw frame layout; returns the number of time points."""
    if angles < 1:
        raise EmcsError(f"angles must be at least 1, got {angles}", path, param="angles")
    if phases < 3:
        raise EmcsError(f"phases must be at least 3 for band separation, got {phases}", path,
                        param="phases")
    if order not in ORDERS:
        raise EmcsError(f"order must be one of {', '.join(ORDERS)}, got {order!r}", path, param="order")
    block = angles * phases
    if n_frames % block:
        raise EmcsError(
            f"has {n_frames} frames, not a multiple of angles x phases = {angles} x {phases} = {block} "
            f"(raw SIM input needs {block} frames per time point)",
            path,
        )
    return n_frames // block


def raw_block(frames: np.ndarray, angles: int, phases: int, order: str) -> np.ndarray:
    """(A*P, H, W) frames of one time point in ``order`` -> (A, P, H, W)."""
    H, W = frames.shape[-2:]
    if order == "angle-major":
        return frames.reshape(angles, phases, H, W)
    return frames.reshape(phases, angles, H, W).transpose(1, 0, 2, 3)


def _raw_blocks(stack, angles: int, phases: int, order: str) -> Iterator[np.ndarray]:
    """The (A, P, H, W) float64 angle-major raw frames of every time point of a stack."""
    T = validate_raw_layout(stack.shape[0], angles, phases, order, getattr(stack, "path", None))
    block = angles * phases
    for t in range(T):
        frames = stack.read(t * block, (t + 1) * block).astype(np.float64)
        yield raw_block(frames, angles, phases, order)


def _record(params_out: list | None, patterns, details) -> None:
    if params_out is not None:
        params_out.append([dict(p.to_dict(), **d) for p, d in zip(patterns, details, strict=False)])


def iter_wiener(stack, optics: Optics, angles: int = 3, phases: int = 3, order: str = "angle-major",
                settings=None, params_out: list | None = None) -> Iterator[np.ndarray]:
    """Wiener SIM reconstruction of every time point of a raw stack (lazy)."""
    from emcs.sim.wiener import reconstruct

    for raw in _raw_blocks(stack, angles, phases, order):
        sr, patterns, details = reconstruct(raw, optics, settings=settings)
        _record(params_out, patterns, details)
        yield sr


def raw_net_frame(model, raw: np.ndarray, optics: Optics, device=None, tile: int = 256, settings=None,
                  patterns=None):
    """Super-resolve one time point's raw frames (A, P, H, W) with the raw-input network.

    Returns the SR frame (2H, 2W) float32 (in the wide-field channel's units,
    clipped at 0), the pattern parameters used and the estimation diagnostics.
    Frames larger than ``tile`` camera pixels are tiled (the front-end runs whole).
    """
    import torch

    from emcs.nn.tiling import tiled_apply
    from emcs.sim.rawnet import features, normalise

    feats, patterns, details = features(raw, optics, patterns, settings)
    x, scale = normalise(feats)
    dev = device or next(model.parameters()).device
    t = torch.from_numpy(x)[None].to(dev)
    with torch.no_grad():
        # even tile starts keep the network's space-to-depth grid on the camera pixels
        y = tiled_apply(model, t, tile=2 * tile, overlap=2 * min(32, tile // 2), batch=2,
                        out_device=torch.device("cpu"))
    return np.clip(y[0, 0].numpy() * scale, 0, None).astype(np.float32), patterns, details


def iter_raw_net(stack, model, optics: Optics, angles: int = 3, phases: int = 3, order: str = "angle-major",
                 device=None, tile: int = 256, settings=None,
                 params_out: list | None = None) -> Iterator[np.ndarray]:
    """The raw-input network on every time point of a raw stack (lazy)."""
    for raw in _raw_blocks(stack, angles, phases, order):
        sr, patterns, details = raw_net_frame(model, raw, optics, device, tile, settings)
        _record(params_out, patterns, details)
        yield sr


def iter_widefield(stack, input_kind: str, angles: int = 3, phases: int = 3,
                   order: str = "angle-major") -> Iterator[np.ndarray]:
    """Wide-field frames of a movie: the frames themselves, or the sum of each raw block."""
    if input_kind == "widefield":
        for t in range(stack.shape[0]):
            yield stack.read(t, t + 1)[0].astype(np.float32)
        return
    for raw in _raw_blocks(stack, angles, phases, order):
        yield raw.sum(axis=(0, 1)).astype(np.float32)
