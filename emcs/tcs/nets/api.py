"""What ``emcs decode`` uses: pick a shipped model and decode measurements with it.

>>> from emcs.tcs.nets.api import find_model, decode_measurements
>>> info = find_model(B=10, density=0.5)            # doctest: +SKIP
>>> frames = decode_measurements(y, masks, info)     # doctest: +SKIP

Models live in the repository's ``models/`` folder (or the folder named by the
environment variable ``EMCS_MODELS``) as ``tcs-*.safetensors`` with a JSON
model card each; the card's ``B_range``, ``density_range`` and ``rank`` (lower
is preferred; the default model has rank 0) decide which model serves a
request.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emcs.errors import EmcsError
from emcs.nn.ensemble import ENSEMBLES, dihedral
from emcs.nn.weights import models_dir

#: tile edge and overlap (pixels) for frames larger than one tile; 48 px of overlap
#: covers the receptive field of tcs-unfold's learned stages (measured: tiled and
#: untiled results agree to ~1e-5, tests/test_tcs_nets.py)
TILE = 512
OVERLAP = 48


def _build_unfold(**config):
    from emcs.tcs.nets.unfold import UnfoldNet

    return UnfoldNet(**config)


def _build_tcsdl(**config):
    from emcs.tcs.nets.tcsdl import TcsDlNet

    return TcsDlNet(**config)


#: architecture name (model card) -> constructor
BUILDERS: dict[str, Callable] = {
    "tcs-unfold-v1": _build_unfold,
    "tcs-tcsdl-v1": _build_tcsdl,
}


@dataclass
class ModelInfo:
    """A shipped model: short name (file stem), weights path and parsed model card."""

    name: str
    path: Path
    card: dict = field(repr=False)




def list_models(folder: str | os.PathLike | None = None) -> list[ModelInfo]:
    """All TCS models (``tcs-*.safetensors`` with a readable card), best rank first."""
    folder = Path(folder) if folder is not None else models_dir()
    infos = []
    for path in sorted(folder.glob("tcs-*.safetensors")):
        try:
            card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(card, dict) and card.get("architecture") in BUILDERS:
            infos.append(ModelInfo(path.stem, path, card))
    infos.sort(key=lambda i: (i.card.get("rank", 100), i.name))
    return infos


def covers(card: dict, B: int, density: float) -> bool:
    """Whether a model card's B range and mask-density range include the request."""
    try:
        b0, b1 = card["B_range"]
        d0, d1 = card["density_range"]
    except (KeyError, TypeError, ValueError):
        return False
    return b0 <= B <= b1 and d0 - 1e-9 <= density <= d1 + 1e-9


def find_model(B: int, density: float, folder: str | os.PathLike | None = None) -> ModelInfo | None:
    """The best shipped model whose card covers B frames per measurement at this mask density.

    Returns None when no model covers the request (the caller falls back to GAP-TV).
    """
    for info in list_models(folder):
        if covers(info.card, B, density):
            return info
    return None


def measurement_scale(y, masks) -> float:
    """Intensity scale s of one measurement: the mean of Ybar = Y / R (at least 1e-3).

    The networks see ``Y / s`` (frames with a mean of about 1) and their output
    is multiplied back by s, so they do not depend on how the caller scaled the
    frames (training uses the same normalisation per sample).
    """
    from emcs.tcs.physics import normalized_measurement

    return max(float(normalized_measurement(y, masks).mean()), 1e-3)


_CACHE: dict = {}


def load(info: ModelInfo, device):
    """The network of ``info`` on ``device`` (verified by :func:`emcs.nn.weights.load_model`; cached)."""
    from emcs.nn.weights import load_model

    key = (str(Path(info.path).resolve()), str(device))
    stat = Path(info.path).stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    model, _ = load_model(info.path, BUILDERS, device=device)
    _CACHE.clear()
    _CACHE[key] = (stamp, model)
    return model


def decode_measurements(
    y: np.ndarray,
    masks: np.ndarray,
    model_info: ModelInfo,
    device: str = "auto",
    progress: Callable[[int], None] | None = None,
    tile: int = TILE,
    overlap: int = OVERLAP,
    ensemble: int = 1,
) -> np.ndarray:
    """Reconstruct B frames per measurement with a trained network.

    Parameters
    ----------
    y : ndarray, (n, H, W)
        Measurements, scaled so the frames are in about [0, 1].
    masks : ndarray of bool, (B, H, W)
        The masks shared by these measurements.
    model_info : ModelInfo
        From :func:`find_model`.
    device : str
        ``auto`` (or None), ``cpu`` or ``cuda``; fp16 autocast is used on CUDA.
    progress : callable, optional
        ``advance(k)`` called once per finished measurement.
    tile, overlap : int
        Frames larger than ``tile`` are decoded in overlapping tiles, blended.
    ensemble : {1, 2, 4, 8}
        Geometric self-ensemble: decode the measurement and its masks under
        this many flips/rotations (:data:`emcs.nn.ensemble.ENSEMBLES`) and average the
        results mapped back; exact for the physics (the transforms commute
        with the pixel-wise forward model), ``ensemble`` times slower.

    Returns
    -------
    ndarray, float32, (n, B, H, W)
    """
    import torch

    from emcs.nn.device import pick_device
    from emcs.nn.tiling import tiled_apply

    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        y = y[None]
    masks = np.asarray(masks)
    if y.ndim != 3 or masks.ndim != 3 or masks.shape[1:] != y.shape[1:]:
        raise EmcsError(f"measurements {y.shape} and masks {masks.shape} do not fit together")
    if ensemble not in ENSEMBLES:
        raise EmcsError(f"--ensemble must be one of {', '.join(map(str, ENSEMBLES))}, got {ensemble}")
    if ensemble > 1:
        acc = None
        transforms = ENSEMBLES[ensemble]
        for t in transforms:
            last = t == transforms[-1]  # progress is reported by the last pass
            res = dihedral(decode_measurements(dihedral(y, t), dihedral(masks, t), model_info, device,
                                               progress if last else None, tile, overlap), t, inverse=True)
            acc = res if acc is None else np.add(acc, res, out=acc)
            del res
        return acc / np.float32(ensemble)
    dev = pick_device("auto" if device in (None, "None", "") else device)
    model = load(model_info, dev)
    B, H, W = masks.shape
    b_max = model_info.card.get("config", {}).get("b_max")
    if b_max is not None and B > b_max:
        raise EmcsError(f"model {model_info.name} handles at most B={b_max} frames, got {B}")
    r = np.maximum(masks.sum(0, dtype=np.int32), 1)  # mask_sum
    # one input tensor (1, 1 + B, H, W): the scaled measurement, then the masks
    x = torch.empty((1, 1 + B, H, W), dtype=torch.float32, device=dev)
    x[0, 1:] = torch.from_numpy(masks)
    out = np.empty((y.shape[0], B, H, W), dtype=np.float32)
    cuda = dev.type == "cuda"

    def run(t):
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            return model(t[:, 0], t[:, 1:]).float()

    with torch.inference_mode():
        for i in range(y.shape[0]):
            s = max(float((y[i] / r).mean()), 1e-3)  # see measurement_scale
            x[0, 0] = torch.from_numpy(y[i] / s)
            res = tiled_apply(run, x, tile=tile, overlap=overlap, batch=4 if cuda else 1)
            np.multiply(res[0].cpu().numpy(), s, out=out[i])
            del res
            if progress is not None:
                progress(1)
    return out
