"""Shipped TCS network models: find one for a request, load it, decode with it.

>>> from emcs.tcs.nets.api import find_model, decode_measurements
>>> info = find_model(B=10, density=0.5)            # doctest: +SKIP
>>> frames = decode_measurements(y, operator, info)  # doctest: +SKIP

Models are shipped inside the package (:func:`emcs.nn.weights.models_dir`);
folders named by ``EMCS_MODELS`` add or override them. Each is a ``tcs-*.safetensors`` with a JSON
model card each; the card's ``B_range``, ``density_range`` and ``rank`` (lower
is preferred; the default model has rank 0) decide which model serves a
request. A model elsewhere is loaded by the path of its ``.safetensors`` file
(:func:`load_model_info`). The decoder objects of :mod:`emcs.tcs.decoders`
call :func:`decode_measurements`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emcs.errors import EmcsError
from emcs.nn.ensemble import ENSEMBLES, dihedral
from emcs.nn.weights import list_weights, read_card
from emcs.tcs.nets import BUILDERS
from emcs.tcs.operator import TcsOperator

#: largest tile edge and overlap (pixels) for frames larger than one tile; tiles are
#: shrunk to the fewest that cover the frame (:func:`emcs.nn.tiling.fitted_tile`). 768-px
#: tiles would compute less overlap, but one tile's activations (~600 MiB at 723 px) take a
#: 4096 x 4096 decode over 2 GiB. Overlap: at 24 px the seams of a float32 decode differ from
#: the whole-frame decode by ~1e-4 of the range r.m.s. (max ~3e-3), a tenth of what int8's
#: per-tile activation ranges already move (~1e-3, max ~1e-2); held-out PSNR within 0.01 dB of
#: 48 px (benchmarks/tcs_speed.md, session 13). At 4096 x 4096 with two side-by-side 338-px
#: tiles this computes 1.15x the frame's area instead of 1.30x; 16 px gave 4x the seam error.
TILE = 512
OVERLAP = 24
#: precisions of :func:`decode_measurements`: autocast float types or ``int8`` (tcs-unfold on
#: the CPU, :mod:`emcs.tcs.nets.int8`); ``auto``: float16 on CUDA, int8 where it serves, else float32
PRECISIONS = ("auto", "float32", "float16", "bfloat16", "int8")


@dataclass
class ModelInfo:
    """A model: short name (file stem), weights path and parsed model card."""

    name: str
    path: Path
    card: dict = field(repr=False)


def list_models(folder: str | os.PathLike | None = None) -> list[ModelInfo]:
    """All TCS models (``tcs-*.safetensors`` with a readable card), best rank first."""
    paths = (sorted(Path(folder).glob("tcs-*.safetensors")) if folder is not None
             else list_weights("tcs-*"))
    infos = []
    for path in paths:
        card = read_card(path)
        if card.get("architecture") in BUILDERS:
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


def load_model_info(model: str | os.PathLike, folder: str | os.PathLike | None = None) -> ModelInfo:
    """A model by name (a shipped ``tcs-*`` model) or by the path of its ``.safetensors`` file.

    A path needs its JSON model card beside it, naming a TCS architecture.
    Raises :class:`EmcsError` (parameter ``model``) for an unknown name.
    """
    text = os.fspath(model)
    if text.endswith(".safetensors") or os.sep in text or (os.altsep and os.altsep in text):
        path = Path(text)
        if not path.is_file():
            raise EmcsError("no such weights file", path)
        card = read_card(path)
        if card.get("architecture") not in BUILDERS:
            raise EmcsError(f"model card names architecture {card.get('architecture')!r}, "
                            f"expected one of {sorted(BUILDERS)}", path)
        return ModelInfo(path.stem, path, card)
    infos = list_models(folder)
    for info in infos:
        if info.name == text:
            return info
    names = ", ".join(i.name for i in infos) or "none installed"
    raise EmcsError(f"model must be a .safetensors file or one of {names}, got {text!r}", param="model")


_CACHE: dict = {}


def load(info: ModelInfo, device, copy: str | None = None):
    """The network of ``info`` on ``device`` (verified by :func:`emcs.nn.weights.load_model`; cached).

    ``copy``: an inference copy of a tcs-unfold network on the CPU: ``"int8"``
    (:func:`emcs.tcs.nets.int8.quantize_unfold`) or ``"bfloat16"``
    (:func:`emcs.tcs.nets.bf16.to_bfloat16`).
    """
    from emcs.nn.weights import load_model

    key = (str(Path(info.path).resolve()), str(device), copy)
    stat = Path(info.path).stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    model, _ = load_model(info.path, BUILDERS, device=device)
    if copy == "int8":
        from emcs.tcs.nets.int8 import quantize_unfold

        model = quantize_unfold(model)
    elif copy == "bfloat16":
        from emcs.tcs.nets.bf16 import to_bfloat16

        model = to_bfloat16(model)
    _CACHE.clear()
    _CACHE[key] = (stamp, model)
    return model


def decode_measurements(
    y: np.ndarray,
    operator: TcsOperator | np.ndarray,
    model_info: ModelInfo,
    device=None,
    progress: Callable[[int], None] | None = None,
    tile: int = TILE,
    overlap: int = OVERLAP,
    ensemble: int = 1,
    precision: str = "auto",
) -> np.ndarray:
    """Reconstruct B frames per measurement with a trained network.

    Parameters
    ----------
    y : ndarray, (n, H, W)
        Measurements, scaled so the frames are in about [0, 1].
    operator : TcsOperator or ndarray of bool
        The operator of these measurements (B = their frame count), or its
        (B, H, W) masks.
    model_info : ModelInfo
        From :func:`find_model` or :func:`load_model_info`.
    device : torch.device, optional
        Where to run (default: CUDA if available, else the CPU).
    progress : callable, optional
        ``advance(k)`` called once per finished measurement.
    tile, overlap : int
        Frames larger than ``tile`` are decoded in overlapping tiles, blended.
        On the CPU with k > 1 torch threads such frames are decoded k tiles at a
        time, one thread each (:func:`emcs.nn.device.tile_workers`), in tiles of
        ``tile / sqrt(k)`` (the same memory).
    ensemble : {1, 2, 4, 8}
        Geometric self-ensemble: decode the measurement and its masks under
        this many flips/rotations (:data:`emcs.nn.ensemble.ENSEMBLES`) and average the
        results mapped back; exact for the physics (the transforms commute
        with the pixel-wise forward model), ``ensemble`` times slower.
    precision : {"auto", "float32", "float16", "bfloat16", "int8"}
        Arithmetic of the network (:data:`PRECISIONS`): a float autocast type,
        or ``int8``: tcs-unfold's 32-channel convolutions in int8 on the CPU
        (:mod:`emcs.tcs.nets.int8`, needs oneDNN; ~1.2x faster than float32,
        outputs within ~1 % of the range of float32's, held-out PSNR within
        0.02 dB, benchmarks/tcs_speed.md). ``bfloat16`` for tcs-unfold on the
        CPU is its bfloat16 inference copy (:mod:`emcs.tcs.nets.bf16`; where
        bfloat16 is native ~1.25x less network CPU time than float32 and ~8 %
        less than int8, held-out PSNR within 0.01 dB). ``auto`` is float16 on CUDA; on the CPU, for tcs-unfold,
        bfloat16 where the CPU has it natively (AMX or AVX512-BF16), else int8;
        float32 otherwise. On a CPU without native bfloat16 it is emulated and
        slower than float32.

    Returns
    -------
    ndarray, float32, (n, B, H, W)
    """
    import torch

    from emcs.nn.device import pick_device, tile_workers
    from emcs.nn.tiling import tiled_apply

    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        y = y[None]
    if not isinstance(operator, TcsOperator):
        operator = TcsOperator.from_masks(operator)
    if y.ndim != 3 or operator.frame_shape != y.shape[1:]:
        raise EmcsError(f"measurements {y.shape} and masks {(operator.B, *operator.frame_shape)} "
                        "do not fit together")
    if precision not in PRECISIONS:
        raise EmcsError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}",
                        param="precision")
    if ensemble not in ENSEMBLES:
        raise EmcsError(f"ensemble must be one of {', '.join(map(str, ENSEMBLES))}, got {ensemble}",
                        param="ensemble")
    dev = pick_device("auto") if device is None else torch.device(device)
    if ensemble > 1:
        acc = None
        transforms = ENSEMBLES[ensemble]
        masks = operator.masks()
        for t in transforms:
            last = t == transforms[-1]  # progress is reported by the last pass
            res = dihedral(decode_measurements(dihedral(y, t), dihedral(masks, t), model_info, dev,
                                               progress if last else None, tile, overlap,
                                               precision=precision), t, inverse=True)
            acc = res if acc is None else np.add(acc, res, out=acc)
            del res
        return acc / np.float32(ensemble)
    precision = resolve_precision(precision, model_info, dev)
    copy = precision if precision == "int8" or (precision == "bfloat16" and _bf16_copy(model_info, dev)) else None
    model = load(model_info, dev, copy)
    B, (H, W) = operator.B, operator.frame_shape
    b_max = model_info.card.get("config", {}).get("b_max")
    if b_max is not None and B > b_max:
        raise EmcsError(f"model {model_info.name} handles at most B={b_max} frames, got {B}", param="model")
    out = np.zeros((y.shape[0], B, H, W), dtype=np.float32)
    cuda = dev.type == "cuda"
    dtype = torch.float32 if copy else getattr(torch, precision)  # the copies run their own types

    def run(t):
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
            return model(t[:, 0], t[:, 1:]).float()

    with torch.inference_mode(), tile_workers(dev, parallel=max(H, W) > tile) as workers:
        if workers > 1:  # tiles side by side: as many pixels in flight as one tile alone
            tile = max(int(tile / workers**0.5), 2 * overlap)
        for i in range(y.shape[0]):
            s = operator.measurement_scale(y[i])
            tiles = _TileInputs(y[i], s, operator.masks(), dev)
            tiled_apply(run, tiles, tile=tile, overlap=overlap, batch=4 if cuda else 1, fit=True,
                        out_device=torch.device("cpu"), out=torch.from_numpy(out[i])[None],
                        out_zeroed=True, workers=workers)
            np.multiply(out[i], s, out=out[i])
            if progress is not None:
                progress(1)
    return out


def fallback_note() -> str | None:
    """A note when int8 convolutions or bfloat16 denoisers of this process were found wrong
    and ran in float32 (:func:`emcs.tcs.nets.int8.fallbacks`, :func:`emcs.tcs.nets.bf16.fallbacks`),
    else None. Imports nothing new."""
    notes = []
    int8 = sys.modules.get("emcs.tcs.nets.int8")
    wrong = int8.fallbacks() if int8 is not None else []
    if wrong:
        shapes = sorted({"x".join(map(str, w[2:])) for w, _, _ in wrong})
        notes.append(f"int8 convolutions ({', '.join(shapes)} kernels) gave wrong results on this CPU's "
                     f"oneDNN and ran in float32 ({_shapes(len(wrong))})")
    bf16 = sys.modules.get("emcs.tcs.nets.bf16")
    wrong = bf16.fallbacks() if bf16 is not None else []
    if wrong:
        notes.append(f"bfloat16 denoisers gave wrong results on this CPU's oneDNN and ran in float32 "
                     f"({_shapes(len(wrong))})")
    if not notes:
        return None
    return ("; ".join(notes) + "; the frames are right, the decode is slower "
            "(--precision float32 skips this check)")


def _shapes(n: int) -> str:
    return f"{n} input shape{'s' if n > 1 else ''}"


def _bf16_copy(info: ModelInfo, device) -> bool:
    """Whether the bfloat16 inference copy (:mod:`emcs.tcs.nets.bf16`) serves ``info`` on ``device``
    (else ``bfloat16`` is PyTorch's autocast)."""
    from emcs.tcs.nets import ARCHITECTURES
    from emcs.tcs.nets.bf16 import available

    return info.card.get("architecture") == ARCHITECTURES["unfold"] and device.type == "cpu" and available()


def resolve_precision(precision: str, info: ModelInfo, device) -> str:
    """The arithmetic the network of ``info`` runs in on ``device`` for ``precision``
    (``auto`` resolved); EmcsError if ``int8`` cannot serve.

    ``auto``: float16 on CUDA; on the CPU, for tcs-unfold, bfloat16 where the CPU has it
    natively (:func:`emcs.tcs.nets.bf16.native`), else int8, else float32.
    """
    from emcs.tcs.nets import ARCHITECTURES
    from emcs.tcs.nets.bf16 import native
    from emcs.tcs.nets.int8 import available

    problem = None
    if info.card.get("architecture") != ARCHITECTURES["unfold"]:
        problem = f"precision int8 serves tcs-unfold models only, not {info.name}"
    elif device.type != "cpu" or not available():
        problem = "precision int8 needs the CPU and PyTorch's oneDNN (mkldnn) int8 convolution"
    if precision == "auto":
        if device.type == "cuda":
            return "float16"
        if native() and _bf16_copy(info, device):
            return "bfloat16"
        return "float32" if problem else "int8"
    if precision == "int8" and problem:
        raise EmcsError(problem, param="precision")
    return precision


class _TileInputs:
    """The network input (1, 1 + B, H, W) of one measurement, made block by block for
    :func:`emcs.nn.tiling.tiled_apply`: the measurement divided by its scale, then the
    masks as 0/1 floats. No full-size float copy of the (B, H, W) masks is made."""

    def __init__(self, y: np.ndarray, scale: float, masks: np.ndarray, device):
        self.y, self.scale, self.masks, self.device = y, scale, masks, device
        self.shape = (1, 1 + masks.shape[0], *y.shape)

    def __getitem__(self, key):
        import torch

        rows, cols = key[2], key[3]
        block = torch.empty((1, self.shape[1], *self.y[rows, cols].shape), dtype=torch.float32)
        block[0, 0] = torch.from_numpy(self.y[rows, cols] / self.scale)
        block[0, 1:] = torch.from_numpy(self.masks[:, rows, cols])
        return block.to(self.device)


__all__ = ["OVERLAP", "PRECISIONS", "TILE", "ModelInfo", "covers", "decode_measurements", "find_model",
           "list_models", "load", "load_model_info", "resolve_precision"]
