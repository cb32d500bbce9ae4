"""The TCS encoder (paper Eq. 1): Y = sum_b C_b * X_b, streamed group by group.

The masks are binary, so no multiplication is needed: each mask is turned once
into an all-ones/all-zeros bit pattern of the pixel's width, and a group is
encoded with one bitwise AND and one addition per frame
(``acc += frame & mask``). Floats are handled through their bit patterns (an
AND with zero bits gives +0.0). Integer input is accumulated in the smallest
integer type that can hold any possible sum, so the result is exact; float
input is summed in float64 and stored as float32.

Frames are read one group at a time and each measurement is written into the
container as soon as it is made, so peak memory is a few groups whatever the
movie length. A last group with fewer than B frames uses the first ``n`` masks.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable

import numpy as np

from emcs.errors import EmcsError
from emcs.tcs.container import (
    ContainerWriter,
    base_meta,
    check_pack,
    check_quantize,
    smallest_int_dtype,
)
from emcs.tcs.masks import MASK_ALGORITHM, make_masks, pack_masks

MAX_B = 4096


def accumulator_dtype(input_dtype, B: int) -> np.dtype:
    """Dtype in which the sums of up to ``B`` frames of ``input_dtype`` are exact.

    Integers: the smallest integer type holding ``B * min`` .. ``B * max`` of the
    input type; floats: float64 (stored as float32).

    Examples
    --------
    >>> accumulator_dtype(np.uint8, 10), accumulator_dtype(np.uint16, 10)
    (dtype('uint16'), dtype('uint32'))
    """
    dt = np.dtype(input_dtype)
    if dt.kind == "f":
        return np.dtype("float64")
    if dt.kind == "b":
        dt = np.dtype("uint8")
    info = np.iinfo(dt)
    return smallest_int_dtype(B * min(int(info.min), 0), B * max(int(info.max), 0))


def stored_dtype(input_dtype, B: int) -> np.dtype:
    """Dtype the measurements are streamed in (float input -> float32)."""
    acc = accumulator_dtype(input_dtype, B)
    return np.dtype("float32") if acc.kind == "f" else acc


def _bits_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"u{np.dtype(dtype).itemsize}")


def bit_masks(masks: np.ndarray, dtype) -> np.ndarray:
    """Turn boolean masks into AND-patterns (all ones / all zeros) for pixels of ``dtype``."""
    bits = _bits_dtype(dtype)
    # 0 -> 0 and 1 -> 0 - 1 = all ones (unsigned wrap-around)
    return np.negative(np.asarray(masks, dtype=bool).astype(bits))


def encode_group(frames: np.ndarray, masks: np.ndarray, *, out: np.ndarray | None = None,
                 scratch: np.ndarray | None = None) -> np.ndarray:
    """Encode one group: ``Y = sum_b C_b * X_b`` exactly, without multiplications.

    Parameters
    ----------
    frames : ndarray
        (n, H, W) frames, n <= number of masks.
    masks : ndarray
        (>= n, H, W) masks: booleans, or AND-patterns from :func:`bit_masks`
        (faster; made once per movie). Group of n frames uses masks[:n].
    out : ndarray, optional
        (H, W) accumulator of :func:`accumulator_dtype`; zeroed here.
    scratch : ndarray, optional
        (H, W) buffer of the frames' bit dtype.

    Returns
    -------
    ndarray
        (H, W) measurement in :func:`accumulator_dtype` (float64 for float input).

    Examples
    --------
    >>> x = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    >>> c = np.array([[[1, 0], [0, 1]]] * 3, bool)
    >>> encode_group(x, c).tolist()
    [[12, 0], [0, 21]]
    """
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    n = frames.shape[0]
    if masks.shape[0] < n or masks.shape[1:] != frames.shape[1:]:
        raise ValueError(f"masks {masks.shape} do not fit frames {frames.shape}")
    if frames.dtype == bool:
        frames = frames.view(np.uint8)
    bits = _bits_dtype(frames.dtype)
    if masks.dtype == bool:
        masks = bit_masks(masks[:n], frames.dtype)
    elif masks.dtype != bits:
        raise ValueError(f"mask patterns are {masks.dtype}, frames need {bits}")
    acc_dtype = accumulator_dtype(frames.dtype, max(n, 1))
    if out is None or out.dtype.kind != acc_dtype.kind or out.dtype.itemsize < acc_dtype.itemsize:
        out = np.zeros(frames.shape[1:], dtype=acc_dtype)
    else:
        out[...] = 0
    if scratch is None or scratch.dtype != bits or scratch.shape != frames.shape[1:]:
        scratch = np.empty(frames.shape[1:], dtype=bits)
    raw = frames.view(bits)
    view = scratch.view(frames.dtype)
    for b in range(n):
        np.bitwise_and(raw[b], masks[b], out=scratch)
        np.add(out, view, out=out)
    return out


def noise_sigma(frame: np.ndarray, crop: int = 256) -> float:
    """Robust noise estimate of one frame: MAD of the finest diagonal Haar coefficients / 0.6745.

    Donoho's estimator, on the central ``crop`` x ``crop`` pixels; fine texture
    also counts, so it is an upper bound for textured scenes. Used to pick the
    decoder's regularization.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> round(noise_sigma(rng.normal(0, 2.0, (256, 256))), 1)
    2.0
    """
    H, W = np.shape(frame)
    r0, c0 = max(0, (H - crop) // 2), max(0, (W - crop) // 2)  # a central crop is plenty
    f = np.asarray(frame[r0 : r0 + crop, c0 : c0 + crop], dtype=np.float64)
    f = f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2]
    d = (f[0::2, 0::2] - f[0::2, 1::2] - f[1::2, 0::2] + f[1::2, 1::2]) / 2
    return float(np.median(np.abs(d)) / 0.6745)


def load_mask_file(path: str | os.PathLike) -> np.ndarray:
    """Read an explicit (B, H, W) binary mask (.npy, .tif, ...) as booleans."""
    from emcs.io import open_stack

    path = os.fspath(path)
    with open_stack(path) as stack:
        data = stack.read()
    values = np.unique(data)
    if not np.all(np.isin(values, (0, 1))):
        shown = ", ".join(str(v) for v in values[:5]) + (" ..." if values.size > 5 else "")
        raise EmcsError(f"the mask is not binary (values {shown}); it must hold only 0 and 1", path)
    return data.astype(bool)


def default_output(input_path: str) -> str:
    """``<stem>.npz`` beside the input (a glob 'dir/*.png' gives 'dir.npz' beside dir)."""
    if any(ch in input_path for ch in "*?[") and not os.path.exists(input_path):
        folder = os.path.dirname(os.path.abspath(input_path))
        return folder.rstrip(os.sep) + ".npz"
    root, ext = os.path.splitext(input_path)
    if ext.lower() in (".tif", ".tiff") and root.lower().endswith(".ome"):
        root = root[:-4]
    return root + ".npz"


def validate_options(B: int | None, density: float, seed: int | None) -> None:
    """Raise :class:`EmcsError` for an impossible -B, --density or --seed."""
    if B is not None and not 1 <= B <= MAX_B:
        raise EmcsError(f"-B must be between 1 and {MAX_B} frames per measurement, got {B}")
    if not 0.0 < density < 1.0:
        raise EmcsError(f"--density must be between 0 and 1 (exclusive), got {density}")
    if seed is not None and not 0 <= seed < 2**32:
        raise EmcsError(f"--seed must be in 0 .. 2**32-1, got {seed}")


def encode_stack(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    B: int = 10,
    seed: int | None = None,
    density: float = 0.5,
    masks: np.ndarray | None = None,
    mask_source: str | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    narrow: bool = True,
    pack: str = "none",
    quantize: float | None = None,
) -> dict:
    """Encode an image stack into a measurement container.

    Parameters
    ----------
    input_path : str
        Any stack :func:`emcs.io.open_stack` reads.
    output_path : str
        The ``.npz`` container to write (atomically).
    B : int
        Frames per measurement (ignored when ``masks`` is given: B = len(masks)).
    seed : int, optional
        Mask seed; a random one (recorded in the container) when None.
    density : float
        Fraction of open mask pixels.
    masks : ndarray, optional
        Explicit (B, H, W) boolean masks, stored bit-packed in the container.
    mask_source : str, optional
        Name of the mask file (recorded).
    force : bool
        Overwrite an existing output.
    progress : callable, optional
        Called with the number of groups done after each group.
    narrow : bool
        Store integer sums in the smallest dtype holding the actual values.
    pack : {"none", "predictive", "jpegxl", "zstd"}
        Code the measurements losslessly (smaller file, no memory-mapping; see
        :class:`emcs.tcs.container.ContainerWriter`); ``predictive`` divides
        the known masks out before coding (:mod:`emcs.tcs.predictive`) and is
        the smallest.
    quantize : float, optional
        Lossy: store the sums quantized in the Anscombe domain with this step
        in shot-noise units (:func:`emcs.tcs.container.anscombe_codes`; needs
        ``pack`` and non-negative integer counts). 1.0 adds 8 % to the noise
        variance and makes the file 1.6-2x smaller again.

    Returns
    -------
    dict
        Summary: input, output, shape, dtype, B, n_measurements, seed,
        measurement dtype, input/output bytes, ratio, seconds, MB/s.
    """
    from emcs import io as eio

    input_path = os.fspath(input_path)
    output_path = os.fspath(output_path)
    validate_options(None if masks is not None else B, density, seed)
    pack = check_pack(pack)
    quantize = check_quantize(quantize, pack)
    eio.check_output(output_path, force)
    t0 = time.perf_counter()
    with eio.open_stack(input_path) as stack:
        T, H, W = stack.shape
        dtype = stack.dtype
        check_quantize(quantize, pack, dtype, input_path)
        if masks is not None:
            masks = np.asarray(masks, dtype=bool)
            if masks.ndim != 3 or masks.shape[1:] != (H, W):
                raise EmcsError(
                    f"the mask has shape {masks.shape}; frames of {input_path} are {(H, W)}, "
                    f"so the mask must be (B, {H}, {W})",
                    mask_source,
                )
            B = masks.shape[0]
            mask_meta = {
                "kind": "explicit",
                "shape": [int(s) for s in masks.shape],
                "density": float(masks.mean()),
                "source": os.path.basename(mask_source) if mask_source else None,
            }
            packed = pack_masks(masks)
        else:
            seed = secrets.randbelow(2**32) if seed is None else int(seed)
            masks = make_masks(seed, B, H, W, density)
            mask_meta = {"kind": "generated", "algorithm": MASK_ALGORITHM, "seed": seed,
                         "density": float(density)}
            packed = None
        pats = bit_masks(masks, dtype)
        del masks
        N = -(-T // B)
        counts = np.array([min(B, T - k * B) for k in range(N)], dtype=np.int64)
        acc = np.zeros((H, W), accumulator_dtype(dtype, B))
        scratch = np.empty((H, W), _bits_dtype(dtype))
        out_dtype = stored_dtype(dtype, B)
        lo = hi = None
        sigmas = []
        noise_every = max(1, N // 8)  # noise estimate from the first frame of <= ~8 groups
        with eio.atomic_output(output_path, force) as tmp:
            writer = ContainerWriter(tmp, N, H, W, out_dtype, narrow=narrow, pack=pack, quantize=quantize)
            try:
                for k in range(N):
                    frames = stack.read(k * B, k * B + int(counts[k]))
                    flo, fhi = frames.min(), frames.max()
                    if dtype.kind == "f" and not (np.isfinite(flo) and np.isfinite(fhi)):
                        raise EmcsError(
                            f"frames {k * B}..{k * B + int(counts[k]) - 1} contain NaN or "
                            "infinite values; emcs cannot encode them",
                            input_path,
                        )
                    lo = flo if lo is None else min(lo, flo)
                    hi = fhi if hi is None else max(hi, fhi)
                    if k % noise_every == 0:
                        sigmas.append(noise_sigma(frames[0]))
                    y = encode_group(frames, pats, out=acc, scratch=scratch)
                    writer.write(y[None])
                    if progress is not None:
                        progress(1)
                as_num = int if dtype.kind in "iu" else float
                input_info = {
                    "name": os.path.basename(input_path),
                    "format": stack.metadata.get("format"),
                    "dtype": dtype.name,
                    "shape": [int(T), int(H), int(W)],
                    "value_range": [as_num(lo), as_num(hi)],
                    "pixel_size": None if stack.pixel_size is None else float(stack.pixel_size),
                    "nbytes": int(stack.nbytes),
                    "noise_sigma": float(np.median(sigmas)),
                }
                meta = base_meta(
                    B=B, n=N, frame_shape=(H, W), mask=mask_meta, input_info=input_info,
                    encoder={"operation": "sum of masked frames (bitwise AND + add)"},
                )
                try:
                    meta = writer.finish(meta, counts, packed)
                except EmcsError as exc:
                    raise EmcsError(exc.message, input_path) from exc
            except BaseException:
                writer.abort()
                raise
        input_bytes = int(stack.nbytes)
    seconds = time.perf_counter() - t0
    out_bytes = os.path.getsize(output_path)
    return {
        "input": input_path,
        "output": output_path,
        "shape": [int(T), int(H), int(W)],
        "dtype": dtype.name,
        "pixel_size": input_info["pixel_size"],
        "B": int(B),
        "n_measurements": int(N),
        "last_group_frames": int(counts[-1]),
        "mask": mask_meta,
        "seed": mask_meta.get("seed"),
        "measurement_dtype": meta["measurement_dtype"],
        "measurement_codec": meta.get("measurement_codec"),
        "measurement_quantization": meta.get("measurement_quantization"),
        "noise_sigma": input_info["noise_sigma"],
        "input_bytes": input_bytes,
        "output_bytes": int(out_bytes),
        "ratio": input_bytes / out_bytes,
        "seconds": seconds,
        "mb_per_s": input_bytes / 1e6 / max(seconds, 1e-9),
    }


__all__ = [
    "accumulator_dtype",
    "bit_masks",
    "default_output",
    "encode_group",
    "encode_stack",
    "load_mask_file",
    "noise_sigma",
    "stored_dtype",
    "validate_options",
]
