"""The TCS encoder (``emcs encode``): Y = sum_b C_b * X_b, streamed group by group.

The sums are made exactly and without multiplications by the masks' operator
(:meth:`emcs.tcs.operator.TcsOperator.encode`: one bitwise AND and one
addition per frame). Frames are read one group at a time and each measurement
is written into the container as soon as it is made, so peak memory is a few
groups whatever the movie length. A last group with fewer than B frames uses
the first ``n`` masks. The masks are made once: the container writer takes
the same operator (for the mask-predictive codec's open counts and the stored
explicit mask).

With ``adaptive=True`` a group closes early at a scene change or fast motion
(:mod:`emcs.tcs.adaptive`): groups then hold 1 .. B frames (at least
``min_frames`` but the last), decided while the movie is read.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from emcs.errors import EmcsError
from emcs.tcs import adaptive as adapt
from emcs.tcs.container import ContainerWriter, base_meta
from emcs.tcs.operator import TcsOperator, encode_group, smallest_int_dtype, stored_dtype

MAX_B = 4096
#: bytes of one frame summed at a time (a tile of rows: the group's tiles stay in the cache).
#: 256 KiB: 9-13 % less CPU than 128 KiB at B = 4-30 on a 1024^2 uint16 movie (fewer numpy
#: calls per byte; benchmarks/encode.md section 8)
TILE_BYTES = 1 << 18


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
    return _median(np.abs(d)) / 0.6745


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
    adaptive: bool = False,
    adaptive_threshold: float = adapt.DEFAULT_THRESHOLD,
    min_frames: int = adapt.MIN_FRAMES,
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
    adaptive : bool
        Close a group early (before B frames) at a scene change or fast
        motion (:mod:`emcs.tcs.adaptive`); the measurements are then written
        once the last group is known (through a temporary file beside the output).
    adaptive_threshold : float
        The change ratio above which an adaptive group closes (> 0; default
        :data:`emcs.tcs.adaptive.DEFAULT_THRESHOLD`; lower closes more groups).
    min_frames : int
        Fewest frames of an adaptive group (1 .. B; the movie's last group may have fewer).

    Returns
    -------
    dict
        Summary: input, output, shape, dtype, B, n_measurements, groups (number
        and min / mean / max frames per group), seed, measurement dtype,
        input/output bytes, ratio, seconds, MB/s.

    Raises
    ------
    EmcsError
        A bad option (named by its parameter: ``B``, ``density``, ``seed``,
        ``pack``, ``quantize``, ``adaptive_threshold``, ``min_frames``), an unreadable input, masks that do not fit
        the frames, non-finite frames, an existing output without ``force``.
    """
    from emcs import io as eio

    input_path = os.fspath(input_path)
    output_path = os.fspath(output_path)
    check_mask_options(None if masks is not None else B, density, seed)
    threads = check_threads(threads)
    t0 = time.perf_counter()
    with eio.open_stack(input_path) as stack, eio.atomic_output(output_path, force) as tmp:
        T, H, W = stack.shape
        op = encode_operator(masks, mask_source, B, seed, density, (H, W), input_path)
        if adaptive:
            adapt.check_adaptive_options(adaptive_threshold, min_frames, op.B)
        stats = InputStats(input_path, noise_period(T, op.B))
        encoder = {"operation": "sum of masked frames (bitwise AND + add)"}

        def new_writer(n_groups: int) -> ContainerWriter:
            return ContainerWriter(tmp, n_groups, H, W, stored_dtype(stack.dtype, op.B), narrow=narrow,
                                   pack=pack, quantize=quantize, source=input_path, operator=op)

        if adaptive:
            encoder["groups"] = adapt.rule_meta(adaptive_threshold, min_frames)
            groups = adapt.adaptive_groups(stack.read, T, op.B, noise_sigma,
                                                     adaptive_threshold, min_frames)
            with adapt.Spool(os.path.dirname(os.path.abspath(tmp))) as spool:
                counts = _encode_groups(groups, op, stack.dtype, spool.write, stats, progress, threads)
                writer = new_writer(len(counts))
                meta = _finish(writer, lambda: spool.replay(writer), op, counts, stats, stack, encoder)
        else:
            counts = fixed_counts(T, op.B)
            writer = new_writer(len(counts))
            groups = fixed_groups(lambda a, b: stack.read(a, b, copy=False), counts, op.B)
            meta = _finish(writer, lambda: _encode_groups(groups, op, stack.dtype, writer.write, stats,
                                                          progress, threads, stack.release),
                           op, counts, stats, stack, encoder)
    return encode_summary(input_path, output_path, op, counts, meta, meta["input"],
                          time.perf_counter() - t0)


def _finish(writer: ContainerWriter, fill: Callable[[], object], op: TcsOperator, counts: np.ndarray,
            stats: InputStats, stack, encoder: dict) -> dict:
    """Run ``fill`` (which writes every measurement into ``writer``) and finish the container;
    the writer is aborted on any error. Returns the container's metadata."""
    try:
        fill()
        meta = base_meta(B=op.B, n=len(counts), frame_shape=op.frame_shape, mask=op.meta,
                         input_info=stats.description(stack), encoder=encoder)
        return writer.finish(meta, counts)
    except BaseException:
        writer.abort()
        raise


def fixed_counts(n_frames: int, B: int) -> np.ndarray:
    """Frames per group of fixed groups: B, and a shorter last group when B does not divide T."""
    N = -(-n_frames // B)
    return np.array([min(B, n_frames - k * B) for k in range(N)], dtype=np.int64)


def fixed_groups(read: Callable[[int, int], np.ndarray], counts: np.ndarray,
                 B: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, frames)`` of the fixed groups of ``counts`` (``read(a, b)``: frames a:b)."""
    for k, n in enumerate(counts):
        yield k * B, read(k * B, k * B + int(n))


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
        "groups": adapt.group_sizes(counts),
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
    median of the noise estimates ``sigmas`` (see :class:`InputStats`)."""
    as_num = int if stack.dtype.kind in "iu" else float
    return {
        "name": os.path.basename(input_path),
        "format": stack.metadata.get("format"),
        "dtype": stack.dtype.name,
        "shape": [int(s) for s in stack.shape],
        "value_range": [as_num(lo), as_num(hi)],
        "pixel_size": None if stack.pixel_size is None else float(stack.pixel_size),
        "nbytes": int(stack.nbytes),
        "noise_sigma": _median(sigmas),
    }


def noise_period(n_frames: int, B: int) -> int:
    """Frames between the noise samples: about 8 over the movie, at multiples of B frames.

    The first frame of the group holding frame ``j * noise_period`` gives a
    noise estimate (:class:`InputStats`); with fixed groups these are the
    groups ``0, s, 2s, ...`` with ``s = max(1, N // 8)``.
    """
    return B * max(1, -(-n_frames // B) // 8)


def check_finite(lo, hi, dtype: np.dtype, start: int, n: int, input_path: str) -> None:
    """Refuse float frames ``start`` .. ``start + n - 1`` whose range ``lo`` .. ``hi`` is not finite."""
    if dtype.kind == "f" and not (np.isfinite(lo) and np.isfinite(hi)):
        raise EmcsError(f"frames {start}..{start + n - 1} contain NaN or infinite values; "
                        "emcs cannot encode them", input_path)


@dataclass
class InputStats:
    """What the container's ``input`` description needs, gathered group by group.

    The value range of the frames, and the noise estimate
    (:func:`noise_sigma`) of the first frame of every group that holds a
    multiple of ``period`` frames (:func:`noise_period`). Partial statistics
    (the groups of one chunk) combine with :meth:`merge`.
    """

    input_path: str
    period: int
    lo: object = None
    hi: object = None
    sigmas: dict = field(default_factory=dict)

    def add(self, start: int, frames: np.ndarray, lo, hi) -> None:
        """Record the group of ``frames`` (input frames ``start ...``) whose values span
        ``lo`` .. ``hi``; :class:`EmcsError` for NaN or infinite frames."""
        check_finite(lo, hi, frames.dtype, start, len(frames), self.input_path)
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)
        if -(-start // self.period) * self.period < start + len(frames):
            self.sigmas[start] = noise_sigma(frames[0])

    def merge(self, other: InputStats) -> None:
        """Add the statistics of other groups of the same movie."""
        if other.lo is not None:
            self.lo = other.lo if self.lo is None else min(self.lo, other.lo)
            self.hi = other.hi if self.hi is None else max(self.hi, other.hi)
        self.sigmas.update(other.sigmas)

    def description(self, stack) -> dict:
        """The container's ``input`` description (:func:`input_description`)."""
        return input_description(stack, self.input_path, self.lo, self.hi,
                                 [self.sigmas[k] for k in sorted(self.sigmas)])


def encode_operator(masks, mask_source, B, seed, density, frame_shape, input_path) -> TcsOperator:
    """The masks' operator: explicit ``masks`` (checked against the frames) or generated ones."""
    if masks is None:
        seed = int.from_bytes(os.urandom(4), "little") if seed is None else int(seed)
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


def check_threads(threads: int | None) -> int:
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


def sum_group(frames: np.ndarray, patterns: np.ndarray, pool: Executor | None = None,
              bands: int = 1) -> Callable[[], tuple]:
    """Start the measurement of one group; returns a function that waits for it.

    The one per-group step of every encoder (local and chunked): the exact sum
    of the (n, H, W) ``frames`` with the AND-patterns of the first n masks
    (:meth:`~emcs.tcs.operator.TcsOperator.patterns`), made in ``bands`` row
    bands on ``pool`` (None: here, now), with the frames' value range on the way.

    Returns
    -------
    callable
        ``wait()`` gives ``(y, (lo, hi), (ylo, yhi))``: the (H, W) measurement
        in the smallest type holding it (float64 for float frames), the range
        of the frames and that of the sums.
    """
    if frames.dtype == bool:
        frames = frames.view(np.uint8)
    H = frames.shape[1]
    step = -(-H // bands)
    rows = [slice(r, min(H, r + step)) for r in range(0, H, step)]
    if pool is None:
        done = [_sum_band(frames, patterns, band) for band in rows]
        return lambda: _assemble(frames.shape[1:], done)
    jobs = [pool.submit(_sum_band, frames, patterns, band) for band in rows]
    return lambda: _assemble(frames.shape[1:], [job.result() for job in jobs])


def _assemble(frame_shape: tuple, bands: list) -> tuple:
    """One measurement from the bands of :func:`_sum_band`, in the smallest type holding it."""
    flo, fhi = min(b[1] for b in bands), max(b[2] for b in bands)
    ylo, yhi = min(b[3] for b in bands), max(b[4] for b in bands)
    parts = [part for band in bands for part in band[0]]
    if len(parts) == 1:
        y = parts[0][1]
    else:
        kind = parts[0][1].dtype
        y = np.empty(frame_shape, kind if kind.kind == "f" else smallest_int_dtype(int(ylo), int(yhi)))
        for rows, part in parts:
            y[rows] = part
    return y, (flo, fhi), (ylo, yhi)


def _encode_groups(groups: Iterator[tuple[int, np.ndarray]], op: TcsOperator, dtype, write: Callable,
                   stats: InputStats, progress: Callable[[int], None] | None,
                   threads: int = 1, release: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Encode the ``(start, frames)`` of ``groups`` (frames of ``dtype``) in order into
    ``write(y, value_range, frames)``;
    records the frames in ``stats`` and returns the frames per group. ``release(a, b)``,
    when given, is called once frames a:b are summed (to drop mapped pages of zero-copy reads).

    A pipeline of three stages, a few groups deep (memory stays flat in movie
    length): a reader thread reads (and for adaptive groups, cuts) group k + 1 and the
    calling thread writes group k - 1 while ``threads`` workers sum group k in row bands.
    """
    patterns = op.patterns(dtype, threads)
    counts: list[int] = []
    pending: deque = deque()

    def finish() -> None:
        start, frames, wait = pending.popleft()
        y, frange, yrange = wait()
        stats.add(start, frames, *frange)
        if release is not None:
            release(start, start + len(frames))
        write(y, value_range=yrange, frames=len(frames))
        counts.append(len(frames))
        if progress is not None:
            progress(1)

    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(threads) as pool:
        ahead = reader.submit(next, groups, None)
        while (group := ahead.result()) is not None:
            ahead = reader.submit(next, groups, None)  # one reader thread: the stack is read in order
            start, frames = group
            pending.append((start, frames, sum_group(frames, patterns, pool, threads)))
            if len(pending) > 1:
                finish()
        while pending:
            finish()
    return np.array(counts, dtype=np.int64)


__all__ = [
    "MAX_B",
    "check_finite",
    "check_mask_options",
    "check_threads",
    "default_output",
    "encode_operator",
    "encode_stack",
    "encode_summary",
    "input_description",
    "load_mask_file",
    "InputStats",
    "fixed_counts",
    "fixed_groups",
    "noise_period",
    "noise_sigma",
    "sum_group",
]


def _median(values) -> float:
    """The median by partition (``np.median`` imports ``numpy.ma``, ~50 ms of start-up)."""
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        return float("nan")
    lo, hi = (a.size - 1) // 2, a.size // 2
    part = np.partition(a, (lo, hi))
    return float(part[lo] + part[hi]) / 2
