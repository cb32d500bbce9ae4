"""Decode a measurement container back into a movie (``emcs decode``).

The container is read once: its measurements are decoded group by group and
their checksum is checked on the way (:meth:`emcs.tcs.container.Container.blocks`).
For every group k with n_k frames and masks C_1..C_{n_k}:

1. scale to the decoders' units with the stored input range [lo, hi]:
   frames ``X_s = (X - lo) / (hi - lo)``, so the measurement becomes
   ``Y_s = (Y - lo * R_k) / (hi - lo)`` with ``R_k = sum_{b<=n_k} C_b``
   (:meth:`emcs.tcs.operator.TcsOperator.scale_measurements`);
2. reconstruct ``X_s`` with a decoder of :mod:`emcs.tcs.decoders`: a neural
   network (when one fits B and the mask density) or GAP-TV;
3. (``static_blend="on"``, the default) pull the network's frames toward one still image
   where the scene does not move (:mod:`emcs.tcs.static`) and toward a drifting still image
   where it follows a rigid drift (:mod:`emcs.tcs.drift`);
4. unscale and clip to [lo, hi]; rounded and cast to the input's dtype
   (``dtype="input"``) or kept as float32 (:data:`OUTPUT_DTYPES`);
5. write group by group with :class:`emcs.io.StackWriter` (bounded memory),
   keeping the pixel size.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

from emcs.errors import EmcsError
from emcs.nn.ensemble import ENSEMBLES
from emcs.tcs import decoders
from emcs.tcs.container import Container, open_container
from emcs.tcs.drift import blend_drifting
from emcs.tcs.gaptv import DEFAULT_ITERS, MAX_ELEMENTS
from emcs.tcs.nets.api import fallback_note
from emcs.tcs.static import (
    DEFAULT_STATIC_BLEND,
    STATIC_BLEND,
    blend_measurement,
    check_static_blend,
)

NOISE_LEVELS = ("auto", "low", "high")
#: output pixel types: ``float32`` keeps the decoder's sub-count precision; ``input`` rounds to
#: the input's type. float32 is the CLI's default: at the ~9 counts per pixel of the demo movie,
#: rounding keeps 8-18 distinct values and costs 0.3-0.5 dB PSNR and 0.03-0.04 SSIM against
#: the clean truth (benchmarks/decode_dtype.md).
OUTPUT_DTYPES = ("float32", "input")
#: self-ensemble sizes of the network decoder
ENSEMBLE_SIZES = tuple(ENSEMBLES)
#: scaled noise sigma (noise / (max - min) of the input) from which the noisy-data settings are used
NOISE_THRESHOLD = 0.055
#: GAP-TV settings per noise level. "low" is published accelerated GAP-TV (PnP-SCI: w 0.3,
#: per-frame TV); "high" damps the projection (plain GAP) and adds temporal TV, which on
#: shot-noise-limited movies beats the exact-consistency variant by several dB (benchmarks/).
GAPTV_SETTINGS = {
    "low": {"accelerate": True, "weight": 0.3, "temporal": 0.0},
    "high": {"accelerate": False, "weight": 0.1, "temporal": 1.0},
}


def default_output(container_path: str) -> str:
    """``<stem>.tif`` beside the container."""
    return os.path.splitext(os.fspath(container_path))[0] + ".tif"


def output_dtype(dtype: str, input_dtype) -> np.dtype:
    """The pixel type written for ``dtype`` (:data:`OUTPUT_DTYPES`) and the input's type."""
    if dtype not in OUTPUT_DTYPES:
        raise EmcsError(f"dtype must be one of {', '.join(OUTPUT_DTYPES)}, got {dtype!r}",
                        param="dtype")
    return np.dtype(input_dtype) if dtype == "input" else np.dtype(np.float32)


def unscale_frames(x: np.ndarray, value_range, dtype, out: np.ndarray | None = None) -> np.ndarray:
    """Inverse scaling, clipped to the input range, cast to ``dtype`` (rounded if integer).

    ``out`` (an array of ``x``'s shape and type ``dtype``, e.g. ``x`` itself) receives the
    result instead of a new array.
    """
    lo, hi = value_range
    span = (hi - lo) or 1.0
    dtype = np.dtype(dtype)
    x = np.asarray(x)
    out = np.empty(x.shape, dtype) if out is None else out
    # frame by frame: float64 arithmetic without a float64 copy of the whole batch (bounded memory)
    for src, dst in zip(x.reshape(-1, *x.shape[-2:]), out.reshape(-1, *x.shape[-2:]), strict=True):
        f = src.astype(np.float64) * span + lo
        np.clip(f, lo, hi, out=f)
        if dtype.kind in "iu":
            np.rint(f, out=f)
        dst[...] = f
    return out


def choose_noise_level(container: Container, noise: str = "auto") -> tuple[str, float | None]:
    """("low" or "high", scaled noise sigma or None) from the encoder's noise estimate.

    ``auto`` uses the ``input.noise_sigma`` the encoder recorded (a robust
    Haar-MAD estimate) relative to the input's value range; containers without
    it are treated as ``low``.
    """
    sigma = container.meta["input"].get("noise_sigma")
    lo, hi = container.value_range
    scaled = None if sigma is None else float(sigma) / ((hi - lo) or 1.0)
    if noise != "auto":
        return noise, scaled
    return ("high" if scaled is not None and scaled >= NOISE_THRESHOLD else "low"), scaled


def plan_methods(container: Container, method: str, model: str | os.PathLike | None = None,
                 ) -> tuple[dict[int, tuple[str, object]], list[str]]:
    """Decide the decoder for each distinct group size (:func:`emcs.tcs.decoders.select_decoder`).

    ``method`` is ``"auto"``, ``"net"``, ``"gap-tv"`` or a decoder name; ``model``
    (a model name or ``.safetensors`` path) picks the network. A request for a
    network (``net``, a network name or ``model``) that none can serve for the
    full groups of B frames (the largest groups) is an error; ``auto`` falls back to GAP-TV with a
    note, and so does a shorter group (the last, or adaptive ones) that no network covers.

    Returns
    -------
    plan : dict
        group frame count -> ("net", model name) or ("gap-tv", None).
    notes : list of str
        Human notes (why GAP-TV was used instead of a network).
    """
    sizes = sorted({int(n) for n in container.counts})
    plan: dict[int, tuple[str, object]] = {}
    notes: list[str] = []
    for n in sizes:
        what = f"B={n}" if n == container.B else f"the groups of {n} frames (B={container.B})"
        name, why = decoders.select_decoder(method, n, container.density, model=model, group=what)
        if why is not None and n == sizes[-1] and (method != "auto" or model is not None):
            raise EmcsError(f"{why}; use --method auto or gap-tv", container.path)
        plan[n] = ("gap-tv", None) if name == decoders.GAP_TV else ("net", name)
        if why is not None:
            notes.append(f"{why}; using GAP-TV for {'it' if n != container.B else 'these groups'}")
    return plan, notes


def group_batches(counts: np.ndarray, batch: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` runs of at most ``batch`` groups with the same frame count.

    Examples
    --------
    >>> group_batches(np.array([5, 5, 5, 2]), 2)
    [(0, 2), (2, 3), (3, 4)]
    """
    out, k, N = [], 0, len(counts)
    while k < N:
        stop = k + 1
        while stop < N and stop - k < batch and int(counts[stop]) == int(counts[k]):
            stop += 1
        out.append((k, stop))
        k = stop
    return out


def iter_decoded(
    container: Container,
    plan: dict[int, tuple[str, object]],
    *,
    iters: int = DEFAULT_ITERS,
    device=None,
    progress: Callable[[int], None] | None = None,
    max_elements: int = MAX_ELEMENTS,
    noise: str = "low",
    ensemble: int = 1,
    dtype=None,
    precision: str = "auto",
    static_blend: str = DEFAULT_STATIC_BLEND,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_frame, frames)`` as ``dtype`` (default: the input's), a batch of groups at a time.

    The measurements are read in one pass (:meth:`~emcs.tcs.container.Container.blocks`):
    a container not yet verified has its checksum checked at the end of it.
    ``static_blend="on"`` (the default) passes the network decoders' frames of every measurement
    through :func:`emcs.tcs.static.blend_measurement` (each measurement on its own, so a slice
    of the groups gives the same frames; a container without the encoder's noise estimate is
    left as decoded).
    """
    op = container.operator
    B = container.B
    H, W = container.frame_shape
    gap_tv = decoders.get_decoder(decoders.GAP_TV, device=device, iters=iters, max_elements=max_elements,
                                  **GAPTV_SETTINGS[noise])
    nets = {name: decoders.get_decoder(name, device=device, ensemble=ensemble, precision=precision)
            for kind, name in plan.values() if kind == "net"}
    dtype_out = np.dtype(container.input_dtype if dtype is None else dtype)
    batches = group_batches(container.counts, max(1, max_elements // (B * H * W)))
    blend = static_blender(container, static_blend) if static_blend != "off" else None
    # the blocks first: their generator checks the checksum after the last batch
    for y, (k, _) in zip(container.blocks(stop for _, stop in batches), batches, strict=True):
        n = int(container.counts[k])
        y = op.scale_measurements(y, container.value_range, n)
        kind, name = plan[n]
        decoder = nets[name] if kind == "net" else gap_tv
        x = np.asarray(decoder(y, op.group(n), progress=progress))
        if blend is not None and kind == "net":
            x = np.asarray(x, np.float32)
            x = x if x.flags.writeable else x.copy()
            for xj, yj in zip(x, y, strict=True):
                blend(xj, yj, op.group(n), out=xj)
        x = x.reshape(-1, H, W)
        # the decoder's fresh float32 frames are overwritten in place when they are the output type
        yield container.group_frames(k)[0], unscale_frames(
            x, container.value_range, dtype_out, out=x if x.dtype == dtype_out and x.flags.writeable else None)


def _blend_wanted(plan: dict, static_blend: str) -> bool:
    """The blend was asked for and a network decodes some group (GAP-TV's frames are not blended)."""
    return static_blend != "off" and any(kind == "net" for kind, _ in plan.values())


def applied_static_blend(plan: dict, static_blend: str, sigma: float | None) -> str:
    """``static_blend`` (``"on"`` or ``"static"``) when the blend is applied: asked for, a network
    decodes some group, and the container has the noise estimate it needs; else ``"off"``."""
    return static_blend if _blend_wanted(plan, static_blend) and sigma is not None else "off"


def static_blend_notes(plan: dict, static_blend: str, sigma: float | None) -> list[str]:
    """A note when the blend was asked for, a network decodes, and no noise estimate is stored."""
    if _blend_wanted(plan, static_blend) and sigma is None:
        return ["the container has no noise estimate: static blend not applied"]
    return []


def static_blender(container: Container, static_blend: str = "on") -> Callable | None:
    """``blend(x, y, operator, out=None) -> frames`` of one measurement with this container's noise
    estimate and quantisation (:func:`emcs.tcs.drift.blend_drifting`, or
    :func:`emcs.tcs.static.blend_measurement` for ``static_blend="static"``), or None when the
    container has no noise estimate."""
    _, sigma = choose_noise_level(container)
    if sigma is None:
        return None
    lo, hi = container.value_range
    offset = lo / ((hi - lo) or 1.0)
    step = (container.meta.get("measurement_quantization") or {}).get("step") or 0.0

    blend_one = blend_measurement if static_blend == "static" else blend_drifting

    def blend(x, y, operator, out=None):
        return blend_one(x, y, operator, sigma, offset=offset, quantize=float(step), out=out,
                         workers=blend_workers())[0]

    return blend


def blend_workers() -> int:
    """Strips the blend computes at once: torch's intra-op thread count (the CPU budget the
    decode was given) when a network has run in this process (torch loaded), else 1."""
    torch = sys.modules.get("torch")
    return max(1, torch.get_num_threads()) if torch is not None else 1


def network_arithmetic(plan: dict[int, tuple[str, object]], precision: str, device) -> str | None:
    """What the networks of ``plan`` compute in on ``device`` for ``precision`` (e.g. ``"int8"``;
    several joined by ", "), or None when the plan uses no network."""
    used = {decoders.network_precision(name, precision, device) for kind, name in plan.values() if kind == "net"}
    return ", ".join(sorted(used)) or None


def check_decode_options(iters: int, noise: str, ensemble: int, precision: str = "auto",
                         static_blend: str = DEFAULT_STATIC_BLEND) -> None:
    """Raise :class:`EmcsError` (naming the parameter) for an unknown noise level, ensemble
    size, network precision or static blend, or fewer than one iteration (the decoder registry
    checks the method)."""
    from emcs.tcs.nets.api import PRECISIONS

    check_static_blend(static_blend)
    if precision not in PRECISIONS:
        raise EmcsError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}",
                        param="precision")
    if iters < 1:
        raise EmcsError(f"iters must be at least 1, got {iters}", param="iters")
    if noise not in NOISE_LEVELS:
        raise EmcsError(f"noise must be one of {', '.join(NOISE_LEVELS)}, got {noise!r}", param="noise")
    if ensemble not in ENSEMBLE_SIZES:
        raise EmcsError(f"ensemble must be one of {', '.join(map(str, ENSEMBLE_SIZES))}, got {ensemble}",
                        param="ensemble")


def decode_container(
    source: str | os.PathLike | Container,
    output: str | os.PathLike | None = None,
    *,
    method: str = "auto",
    iters: int = DEFAULT_ITERS,
    device: str = "auto",
    force: bool = False,
    noise: str = "auto",
    ensemble: int = 1,
    dtype: str = "input",
    model: str | os.PathLike | None = None,
    precision: str = "auto",
    static_blend: str = DEFAULT_STATIC_BLEND,
    progress: Callable[[int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> dict:
    """Decode a container into an image stack (``.tif``, ``.mrc`` or ``.npy``).

    Parameters
    ----------
    source : str or Container
        Container written by :func:`emcs.tcs.encode.encode_stack`, or one
        already opened with :func:`emcs.tcs.container.open_container` (the
        caller closes it). It is read once; its checksum is checked on the way.
    output : str, optional
        Output stack; default ``<stem>.tif`` beside the container.
    method : str
        ``auto``: a network when one fits, otherwise GAP-TV (with a note);
        ``net``: a network, an error if none covers the container's B and mask
        density; ``gap-tv``; or a decoder name
        (:func:`emcs.tcs.decoders.decoder_names`).
    iters : int
        GAP-TV iterations (>= 1).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    force : bool
        Overwrite an existing output.
    noise : {"auto", "low", "high"}
        GAP-TV settings (:data:`GAPTV_SETTINGS`); ``auto`` follows the noise
        level the encoder measured (:func:`choose_noise_level`).
    ensemble : {1, 2, 4, 8}
        Network only: average over this many flips/rotations
        (:class:`emcs.tcs.decoders.Network`).
    dtype : {"input", "float32"}
        Output pixel type: the input's type, rounded (default here; ``emcs
        decode`` defaults to float32), or float32 (:data:`OUTPUT_DTYPES`).
    model : str or path, optional
        The network to use: a model name or a ``.safetensors`` file with its
        card beside it (e.g. written by ``emcs train tcs``).
    precision : {"auto", "float32", "int8", "float16", "bfloat16"}
        Network arithmetic (:func:`emcs.tcs.nets.api.decode_measurements`):
        ``auto`` is float16 on CUDA and int8 on the CPU for tcs-unfold models
        (held-out PSNR within 0.02 dB of float32, benchmarks/tcs_speed.md),
        float32 otherwise.
    static_blend : {"on", "static", "off"}
        ``on`` (default): pull the network's frames toward one still image where the
        measurement shows no motion (:mod:`emcs.tcs.static`) and toward a drifting still
        image where the scene follows a rigid drift (:mod:`emcs.tcs.drift`;
        benchmarks/tcs_heldout.md); GAP-TV's frames are kept as they are. ``static``: the
        still image only. ``off``: the network's frames as they are.
    progress : callable, optional
        Called with the number of measurements finished.
    on_note : callable, optional
        Receives human notes (e.g. why GAP-TV was used).

    Returns
    -------
    dict
        Summary (output, frames, shape, dtype written, input dtype, decoders,
        seconds, ...; docs/cli.md).

    Raises
    ------
    EmcsError
        A bad option (named by its parameter), a bad container (also a
        checksum mismatch found while reading: the output is then not
        written), an unsupported or existing output.
    """
    check_decode_options(iters, noise, ensemble, precision, static_blend)
    output_dtype(dtype, np.uint16)  # checks the name before the container is opened
    t0 = time.perf_counter()
    if isinstance(source, Container):
        opened = contextlib.nullcontext(source)
    else:
        opened = open_container(source)
    with opened as container:
        return _decode(container, output, t0, method=method, iters=iters, device=device, force=force,
                       noise=noise, ensemble=ensemble, dtype=dtype, model=model, precision=precision,
                       static_blend=static_blend, progress=progress, on_note=on_note)


def _decode(container: Container, output, t0: float, *, method, iters, device, force, noise, ensemble,
            dtype, model, precision, static_blend, progress, on_note) -> dict:
    from emcs.io import StackWriter
    from emcs.nn.device import pick_device

    path = container.path
    output = default_output(path) if output is None else os.fspath(output)
    T, H, W = container.input_shape
    out_dtype = output_dtype(dtype, container.input_dtype)
    plan, notes = plan_methods(container, method, model)
    with StackWriter(output, container.input_shape, out_dtype,
                     pixel_size=container.pixel_size, force=force) as writer:
        dev = pick_device(device)
        level, sigma = choose_noise_level(container, noise)
        notes += static_blend_notes(plan, static_blend, sigma)
        for note in notes:
            if on_note is not None:
                on_note(note)
        if any(kind == "gap-tv" for kind, _ in plan.values()) and level == "high" and on_note:
            on_note(f"noisy input (noise ~{sigma:.3f} of the range): GAP-TV with temporal TV, "
                    "no acceleration" if sigma is not None else "GAP-TV settings for noisy input")
        for _start, frames in iter_decoded(container, plan, iters=iters, device=dev, progress=progress,
                                           noise=level, ensemble=ensemble, dtype=out_dtype,
                                           precision=precision, static_blend=static_blend):
            writer.write(frames)
    wrong_arithmetic = fallback_note()
    if wrong_arithmetic is not None:
        notes.append(wrong_arithmetic)
        if on_note is not None:
            on_note(wrong_arithmetic)
    seconds = time.perf_counter() - t0
    used = sorted({f"net:{name}" if kind == "net" else "gap-tv" for kind, name in plan.values()})
    return {
        "input": path,
        "output": output,
        "shape": [int(T), int(H), int(W)],
        "dtype": out_dtype.name,
        "input_dtype": container.input_dtype.name,
        "pixel_size": container.pixel_size,
        "B": container.B,
        "n_measurements": container.n_measurements,
        "method": method,
        "decoders": used,
        "iters": int(iters),
        "noise_level": level,
        "ensemble": int(ensemble),
        "precision": network_arithmetic(plan, precision, dev),
        "static_blend": applied_static_blend(plan, static_blend, sigma),
        "noise_sigma_scaled": sigma,
        "device": str(dev),
        "notes": notes,
        "seconds": seconds,
        "frames_per_s": T / max(seconds, 1e-9),
    }


__all__ = [
    "applied_static_blend",
    "check_decode_options",
    "choose_noise_level",
    "decode_container",
    "default_output",
    "ENSEMBLE_SIZES",
    "GAPTV_SETTINGS",
    "group_batches",
    "iter_decoded",
    "network_arithmetic",
    "NOISE_LEVELS",
    "output_dtype",
    "OUTPUT_DTYPES",
    "plan_methods",
    "STATIC_BLEND",
    "static_blend_notes",
    "static_blender",
    "unscale_frames",
]
