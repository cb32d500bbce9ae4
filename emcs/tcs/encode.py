"""The TCS encoder (``emcs encode``): Y = sum_b C_b * X_b, streamed group by group.

The sums are made exactly and without multiplications by the masks' operator
(:meth:`emcs.tcs.operator.TcsOperator.encode`: one bitwise AND and one
addition per frame). Frames are read one group at a time and each measurement
is written into the container as soon as it is made, so peak memory is a few
groups whatever the movie length. A last group with fewer than B frames uses
the first ``n`` masks. The masks are made once: the container writer takes
the same operator (for the mask-predictive codec's open counts and the stored
explicit mask).
"""

from __future__ import annotations

import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from emcs.errors import EmcsError
from emcs.tcs.container import ContainerWriter, base_meta
from emcs.tcs.operator import TcsOperator, encode_group, smallest_int_dtype, stored_dtype

MAX_B = 4096
#: bytes of one frame summed at a time (a tile of rows: the group's tiles stay in the cache)
TILE_BYTES = 1 << 17


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


def check_mask_options(B: int | None, density: float, seed: int | None) -> None:
    """Raise :class:`EmcsError` for an impossible ``B``, ``density`` or ``seed``."""
    if B is not None and not 1 <= B <= MAX_B:
        raise EmcsError(f"B must be between 1 and {MAX_B} frames per measurement, got {B}", param="B")
    if not 0.0 < density < 1.0:
        raise EmcsError(f"density must be between 0 and 1 (exclusive), got {density}", param="density")
    if seed is not None and not 0 <= seed < 2**32:
        raise EmcsError(f"seed must be in 0 .. 2**32-1, got {seed}", param="seed")


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
    pack: str | None = "none",
    quantize: float | None = None,
    threads: int | None = None,
) -> dict:
    """Encode an image stack into a measurement container.

    Parameters
    ----------
    input_path : str
        Any stack :func:`emcs.io.open_stack` reads.
    output_path : str
        The ``.npz`` container to write (atomically).
    B : int
        Frames per measurement, 1 .. 4096 (ignored when ``masks`` is given: B = len(masks)).
    seed : int, optional
        Mask seed, 0 .. 2**32-1; a random one (recorded in the container) when None.
    density : float
        Fraction of open mask pixels, in (0, 1).
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
    pack : {"none", "predictive", "jpegxl", "zstd"}, optional
        Code the measurements losslessly (smaller file, no memory-mapping; see
        :class:`emcs.tcs.container.ContainerWriter`); ``predictive`` divides
        the known masks out before coding (:mod:`emcs.tcs.container.predictive`)
        and is the smallest. None: ``predictive`` with ``quantize``, else ``none``.
    quantize : float, optional
        Lossy: store the sums quantized in the Anscombe domain with this step
        in shot-noise units (:func:`emcs.tcs.container.anscombe_codes`; needs
        ``pack`` and non-negative integer counts). 1.0 adds 8 % to the noise
        variance and makes the file 1.6-2x smaller again.
    threads : int, optional
        Threads summing each group (in row bands; numpy releases the GIL) while
        the next group is read and the previous one written. Default: the
        cores this process may use.

    Returns
    -------
    dict
        Summary: input, output, shape, dtype, B, n_measurements, seed,
        measurement dtype, input/output bytes, ratio, seconds, MB/s.

    Raises
    ------
    EmcsError
        A bad option (named by its parameter: ``B``, ``density``, ``seed``,
        ``pack``, ``quantize``), an unreadable input, masks that do not fit
        the frames, non-finite frames, an existing output without ``force``.
    """
    from emcs import io as eio

    input_path = os.fspath(input_path)
    output_path = os.fspath(output_path)
    check_mask_options(None if masks is not None else B, density, seed)
    threads = _check_threads(threads)
    t0 = time.perf_counter()
    with eio.open_stack(input_path) as stack, eio.atomic_output(output_path, force) as tmp:
        T, H, W = stack.shape
        dtype = stack.dtype
        op = encode_operator(masks, mask_source, B, seed, density, (H, W), input_path)
        B = op.B
        N = -(-T // B)
        counts = np.array([min(B, T - k * B) for k in range(N)], dtype=np.int64)
        writer = ContainerWriter(tmp, N, H, W, stored_dtype(dtype, B), narrow=narrow, pack=pack,
                                 quantize=quantize, source=input_path, operator=op)
        try:
            input_info = _encode_groups(stack, op, counts, writer, input_path, progress, threads)
            meta = base_meta(
                B=B, n=N, frame_shape=(H, W), mask=op.meta, input_info=input_info,
                encoder={"operation": "sum of masked frames (bitwise AND + add)"},
            )
            meta = writer.finish(meta, counts)
        except BaseException:
            writer.abort()
            raise
    return encode_summary(input_path, output_path, op, counts, meta, input_info,
                          time.perf_counter() - t0)


def encode_summary(input_path: str, output_path: str, op: TcsOperator, counts: np.ndarray,
                   meta: dict, input_info: dict, seconds: float) -> dict:
    """The summary :func:`encode_stack` returns, from a finished container's parts."""
    out_bytes = os.path.getsize(output_path)
    input_bytes = input_info["nbytes"]
    return {
        "input": input_path,
        "output": output_path,
        "shape": list(input_info["shape"]),
        "dtype": input_info["dtype"],
        "pixel_size": input_info["pixel_size"],
        "B": int(op.B),
        "n_measurements": len(counts),
        "last_group_frames": int(counts[-1]),
        "mask": op.meta,
        "seed": op.seed,
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


def input_description(stack, input_path: str, lo, hi, sigmas: list[float]) -> dict:
    """The container's ``input`` description: the frames' value range ``lo`` .. ``hi`` and the
    median of the noise estimates ``sigmas`` (see :func:`noise_groups`)."""
    as_num = int if stack.dtype.kind in "iu" else float
    return {
        "name": os.path.basename(input_path),
        "format": stack.metadata.get("format"),
        "dtype": stack.dtype.name,
        "shape": [int(s) for s in stack.shape],
        "value_range": [as_num(lo), as_num(hi)],
        "pixel_size": None if stack.pixel_size is None else float(stack.pixel_size),
        "nbytes": int(stack.nbytes),
        "noise_sigma": float(np.median(sigmas)),
    }


def noise_groups(n_groups: int) -> range:
    """The groups whose first frame gives a noise estimate (at most ~8, evenly spaced)."""
    return range(0, n_groups, max(1, n_groups // 8))


def check_finite(lo, hi, dtype: np.dtype, start: int, n: int, input_path: str) -> None:
    """Refuse float frames ``start`` .. ``start + n - 1`` whose range ``lo`` .. ``hi`` is not finite."""
    if dtype.kind == "f" and not (np.isfinite(lo) and np.isfinite(hi)):
        raise EmcsError(f"frames {start}..{start + n - 1} contain NaN or infinite values; "
                        "emcs cannot encode them", input_path)


def encode_operator(masks, mask_source, B, seed, density, frame_shape, input_path) -> TcsOperator:
    """The masks' operator: explicit ``masks`` (checked against the frames) or generated ones."""
    if masks is None:
        seed = secrets.randbelow(2**32) if seed is None else int(seed)
        return TcsOperator.generated(seed, B, frame_shape, density)
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[1:] != tuple(frame_shape):
        H, W = frame_shape
        raise EmcsError(
            f"the mask has shape {masks.shape}; frames of {input_path} are {(H, W)}, "
            f"so the mask must be (B, {H}, {W})",
            mask_source,
        )
    return TcsOperator.from_masks(masks, os.path.basename(mask_source) if mask_source else None)


def _check_threads(threads: int | None) -> int:
    """``threads``, or the cores this process may use; :class:`EmcsError` below 1."""
    if threads is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if int(threads) != threads or threads < 1:
        raise EmcsError(f"threads must be a whole number >= 1, got {threads}", param="threads")
    return int(threads)


def _sum_band(frames: np.ndarray, patterns: np.ndarray, rows: slice) -> tuple:
    """Sum rows ``rows`` of one group, in tiles of :data:`TILE_BYTES` per frame (each summed
    while its frames are in the cache, in the narrowest exact type for their values).

    Returns the tiles' (rows, sums), and (min, max) of the band's frames and of its sums.
    """
    W, itemsize = frames.shape[2], frames.dtype.itemsize
    step = max(1, TILE_BYTES // (W * itemsize))
    parts, ranges = [], []
    for r0 in range(rows.start, rows.stop, step):
        tile = slice(r0, min(rows.stop, r0 + step))
        x = frames[:, tile]
        lo, hi = x.min(), x.max()
        y = encode_group(x, patterns[:, tile], value_range=None if x.dtype.kind == "f" else (lo, hi))
        parts.append((tile, y))
        ranges.append((lo, hi, y.min(), y.max()))
    return (parts, min(r[0] for r in ranges), max(r[1] for r in ranges),
            min(r[2] for r in ranges), max(r[3] for r in ranges))


def _encode_groups(stack, op: TcsOperator, counts: np.ndarray, writer: ContainerWriter, input_path: str,
                   progress: Callable[[int], None] | None, threads: int = 1) -> dict:
    """Encode every group of ``stack`` into ``writer``; returns the container's input description.

    A pipeline of three stages, a few groups deep (memory stays flat in movie
    length): a reader thread reads group k + 1 and the calling thread writes
    group k - 1 while ``threads`` workers sum group k in row bands.
    """
    B, H, dtype = op.B, op.frame_shape[0], stack.dtype
    N = len(counts)
    patterns = op.patterns(dtype, threads)
    step = -(-H // threads)
    bands = [slice(r, min(H, r + step)) for r in range(0, H, step)]
    found = {"lo": None, "hi": None, "sigmas": []}
    noisy = set(noise_groups(N))
    pending: deque = deque()
    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(threads) as pool:
        ahead = reader.submit(stack.read, 0, int(counts[0]))
        for k in range(N):
            frames = ahead.result()
            if k + 1 < N:  # one reader thread: the stack is read in order, by one thread at a time
                ahead = reader.submit(stack.read, (k + 1) * B, (k + 1) * B + int(counts[k + 1]))
            if frames.dtype == bool:
                frames = frames.view(np.uint8)
            jobs = [(rows, pool.submit(_sum_band, frames, patterns, rows)) for rows in bands]
            pending.append((k, k * B, frames, jobs))
            if len(pending) > 1:
                _finish_group(*pending.popleft(), writer, found, noisy, input_path)
                if progress is not None:
                    progress(1)
        while pending:
            _finish_group(*pending.popleft(), writer, found, noisy, input_path)
            if progress is not None:
                progress(1)
    return input_description(stack, input_path, found["lo"], found["hi"], found["sigmas"])


def _finish_group(k: int, start: int, frames: np.ndarray, jobs: list, writer: ContainerWriter,
                  found: dict, noisy: set[int], input_path: str) -> None:
    """Wait for the sums of group ``k`` (frames ``start`` ...), check its frames and write its
    measurement (assembled from the bands in the smallest type holding it)."""
    bands = [job.result() for _, job in jobs]
    flo, fhi = min(b[1] for b in bands), max(b[2] for b in bands)
    check_finite(flo, fhi, frames.dtype, start, len(frames), input_path)
    found["lo"] = flo if found["lo"] is None else min(found["lo"], flo)
    found["hi"] = fhi if found["hi"] is None else max(found["hi"], fhi)
    if k in noisy:
        found["sigmas"].append(noise_sigma(frames[0]))
    ylo, yhi = min(b[3] for b in bands), max(b[4] for b in bands)
    parts = [part for band in bands for part in band[0]]
    if len(parts) == 1:
        y = parts[0][1]
    else:
        kind = parts[0][1].dtype
        y = np.empty(frames.shape[1:], kind if kind.kind == "f" else smallest_int_dtype(int(ylo), int(yhi)))
        for rows, part in parts:
            y[rows] = part
    writer.write(y, value_range=(ylo, yhi), frames=len(frames))


__all__ = [
    "MAX_B",
    "check_finite",
    "check_mask_options",
    "default_output",
    "encode_operator",
    "encode_stack",
    "encode_summary",
    "input_description",
    "load_mask_file",
    "noise_groups",
    "noise_sigma",
]
