"""The encoder's exact kernel: ``Y = sum_b C_b * X_b`` with one bitwise AND and one addition per
frame, and the integer dtypes it needs (re-exported by :mod:`emcs.tcs.operator`).

Each mask is turned once into an all-ones/all-zeros bit pattern of the pixel's
width (:func:`bit_masks`, :func:`generated_patterns`), so that a group costs
``acc += frame & pattern`` per frame, exactly, in the narrowest integer type
holding the sums (:func:`sum_dtype`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np


def smallest_int_dtype(lo: int, hi: int) -> np.dtype:
    """The smallest integer dtype holding every value in [lo, hi] (unsigned preferred).

    Examples
    --------
    >>> smallest_int_dtype(0, 2550), smallest_int_dtype(-3, 100)
    (dtype('uint16'), dtype('int8'))
    """
    for name in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"):
        info = np.iinfo(name)
        if info.min <= lo and hi <= info.max:
            return np.dtype(name)
    raise ValueError(f"no integer dtype holds [{lo}, {hi}]")


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


def bits_dtype(dtype) -> np.dtype:
    """The unsigned integer type of the same width as ``dtype`` (for bitwise ANDs)."""
    return np.dtype(f"u{np.dtype(dtype).itemsize}")


def bit_masks(masks: np.ndarray, dtype) -> np.ndarray:
    """Turn boolean masks into AND-patterns (all ones / all zeros) for pixels of ``dtype``."""
    bits = bits_dtype(dtype)
    # 0 -> 0 and 1 -> 0 - 1 = all ones (unsigned wrap-around)
    return np.negative(np.asarray(masks, dtype=bool).astype(bits))


def sum_dtype(input_dtype, n: int, value_range: tuple | None = None) -> np.dtype:
    """Dtype in which sums of ``n`` frames are made exactly: :func:`accumulator_dtype`, or with
    the frames' actual (min, max) ``value_range`` the smallest integer type (at least as wide
    as the frames) holding n times it: no widening casts for low counts.

    Examples
    --------
    >>> sum_dtype(np.uint16, 10), sum_dtype(np.uint16, 10, (0, 40)), sum_dtype(np.uint8, 10, (0, 40))
    (dtype('uint32'), dtype('uint16'), dtype('uint16'))
    """
    dt = np.dtype(np.uint8 if np.dtype(input_dtype) == bool else input_dtype)
    if value_range is None or dt.kind == "f":
        return accumulator_dtype(dt, n)
    lo, hi = int(value_range[0]), int(value_range[1])
    return np.promote_types(smallest_int_dtype(n * min(lo, 0), n * max(hi, 0)), dt)


def encode_group(frames: np.ndarray, masks: np.ndarray, *, out: np.ndarray | None = None,
                 scratch: np.ndarray | None = None, value_range: tuple | None = None) -> np.ndarray:
    """Encode one group: ``Y = sum_b C_b * X_b`` exactly, without multiplications.

    Each mask is an all-ones/all-zeros bit pattern of the pixel's width, so a
    group costs one bitwise AND and one addition per frame
    (``acc += frame & mask``). Floats go through their bit patterns (an AND
    with zero bits gives +0.0) and are summed in float64; integers are summed
    in :func:`accumulator_dtype`, so the result is exact.

    Parameters
    ----------
    frames : ndarray
        (n, H, W) frames, n <= number of masks.
    masks : ndarray
        (>= n, H, W) masks: booleans, or AND-patterns from :func:`bit_masks`
        (faster; made once per movie). A group of n frames uses masks[:n].
    out : ndarray, optional
        (H, W) accumulator of :func:`accumulator_dtype`; zeroed here.
    scratch : ndarray, optional
        (H, W) buffer of the frames' bit dtype.
    value_range : tuple, optional
        (min, max) of the frames, when known: the sums are made in
        :func:`sum_dtype` of it (e.g. uint16 for low counts), not in the type
        holding any sum of the input type.

    Returns
    -------
    ndarray
        (H, W) measurement in :func:`sum_dtype` (float64 for float input).

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
    bits = bits_dtype(frames.dtype)
    if masks.dtype == bool:
        masks = bit_masks(masks[:n], frames.dtype)
    elif masks.dtype != bits:
        raise ValueError(f"mask patterns are {masks.dtype}, frames need {bits}")
    acc_dtype = sum_dtype(frames.dtype, max(n, 1), value_range)
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


def generated_patterns(make_block, B: int, frame_shape: tuple[int, int], dtype,
                       threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """AND-patterns of B masks made in row blocks by ``threads`` threads, and their open counts.

    ``make_block((r0, r1))`` gives the boolean masks of rows r0..r1 (B, r1 - r0, W);
    the whole boolean masks are never held.
    """
    H, W = frame_shape
    out = np.empty((B, H, W), bits_dtype(dtype))
    counts = np.empty((H, W), np.uint8 if B < 256 else np.uint16)
    step = max(1, -(-H // max(1, threads)))

    def block(r0: int) -> None:
        r1 = min(H, r0 + step)
        masks = make_block((r0, r1))
        out[:, r0:r1] = bit_masks(masks, dtype)
        counts[r0:r1] = masks.sum(0, dtype=counts.dtype)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(block, range(0, H, step)))
    return out, counts


__all__ = [
    "accumulator_dtype",
    "bit_masks",
    "bits_dtype",
    "encode_group",
    "generated_patterns",
    "smallest_int_dtype",
    "stored_dtype",
    "sum_dtype",
]
