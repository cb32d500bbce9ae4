"""Regular sparse-scan grids: which probe positions a sparse STEM scan keeps.

A sparse scan of pitch ``s`` keeps the rows and columns ``o + i*s`` of the
full ``N``-pixel scan, with the grid centred by the offset ``o = (N mod s)//2``
(per axis), as in DLSS-STEM (Ede, arXiv 1910.10467). Coverage is ``1/s**2``.

>>> grid_offset(512, 5), grid_count(512, 5)
(1, 103)
>>> import numpy as np
>>> subsample(np.arange(100.0).reshape(10, 10), 4).shape
(3, 3)
"""

from __future__ import annotations

import math
import re

import numpy as np

from emcs.errors import EmcsError

#: factors the shipped network was trained for (coverage 1/16 ... 1/100)
NET_FACTORS = tuple(range(4, 11))


def grid_offset(n: int, factor: int) -> int:
    """Offset of the first kept position along an axis of ``n`` pixels: ``(n mod s)//2``."""
    return (int(n) % int(factor)) // 2


def grid_count(n: int, factor: int) -> int:
    """Number of kept positions along an axis of ``n`` pixels (``ceil((n - o)/s)``)."""
    o = grid_offset(n, factor)
    return -(-(int(n) - o) // int(factor))


def grid_positions(n: int, factor: int) -> np.ndarray:
    """Indices ``o, o+s, ...`` of the kept positions along one axis."""
    return np.arange(grid_offset(n, factor), int(n), int(factor))


def sparse_shape(full_shape: tuple[int, int], factor: int) -> tuple[int, int]:
    """(h, w) of the sparse scan of a (H, W) image."""
    return grid_count(full_shape[0], factor), grid_count(full_shape[1], factor)


def default_full_size(n_sparse: int, factor: int) -> int:
    """Full size assumed when the original one is unknown: ``n_sparse * s``.

    With this size the grid offset is 0, so the kept positions are
    ``0, s, ..., (n_sparse-1)*s`` and the last ``s-1`` pixels are extrapolated.
    Every ``N`` in ``[n_sparse*s - s + 1 + o, n_sparse*s + o]`` is consistent with
    ``n_sparse``; pass the real one (``size``) to place the grid exactly.
    """
    return int(n_sparse) * int(factor)


def check_full_size(full: int, n_sparse: int, factor: int, axis: str = "size",
                    param: str | None = None) -> None:
    """Raise :class:`EmcsError` unless a full size ``full`` yields ``n_sparse`` positions.

    ``axis`` starts the message (``"size height"``); ``param`` names the
    parameter it is about, if any.
    """
    if full < 1 or grid_count(full, factor) != n_sparse:
        lo, hi = None, None
        for n in range(max(1, (n_sparse - 1) * factor), n_sparse * factor + factor):
            if grid_count(n, factor) == n_sparse:
                lo = n if lo is None else lo
                hi = n
        hint = f" (with factor {factor}, {n_sparse} samples fit {lo}..{hi})" if lo else ""
        raise EmcsError(
            f"{axis} {full} does not match a sparse scan of {n_sparse} samples{hint}", param=param
        )


def sample_mask(full_shape: tuple[int, int], factor: int) -> np.ndarray:
    """Boolean (H, W) mask, True at the kept probe positions."""
    h, w = full_shape
    mask = np.zeros((h, w), bool)
    mask[np.ix_(grid_positions(h, factor), grid_positions(w, factor))] = True
    return mask


def subsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Keep the probe positions of a regular grid of pitch ``factor``.

    Parameters
    ----------
    image : ndarray
        (H, W) or (..., H, W) full scan.
    factor : int
        Grid pitch ``s`` >= 1 (coverage ``1/s**2``).

    Returns
    -------
    ndarray
        (..., ceil((H-oy)/s), ceil((W-ox)/s)), same dtype.
    """
    h, w = image.shape[-2:]
    oy, ox = grid_offset(h, factor), grid_offset(w, factor)
    return np.ascontiguousarray(image[..., oy::factor, ox::factor])


def validate_factor(factor: int, full_shape: tuple[int, int] | None = None) -> int:
    """Check a grid pitch; raise :class:`EmcsError` with a clear message if it is unusable."""
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)):
        raise EmcsError(f"factor must be an integer, got {factor!r}", param="factor")
    factor = int(factor)
    if factor < 2:
        why = "; 1 keeps every pixel" if factor == 1 else ""
        raise EmcsError(f"factor must be an integer >= 2 (got {factor}){why}", param="factor")
    if full_shape is not None and factor > min(full_shape):
        raise EmcsError(
            f"factor {factor} is larger than the image ({full_shape[0]}x{full_shape[1]} pixels)",
            param="factor",
        )
    return factor


def parse_coverage(text: str) -> int:
    """Turn a coverage string (``'1/25'``, ``'0.04'``, ``'4%'``) into the grid pitch ``s``.

    The coverage must be ``1/s**2`` for an integer ``s >= 2``.

    >>> parse_coverage("1/25"), parse_coverage("0.0625"), parse_coverage("1%")
    (5, 4, 10)
    """
    raw = str(text).strip()
    try:
        m = re.fullmatch(r"\s*1\s*/\s*(\d+(?:\.\d*)?)\s*", raw)
        if m:
            value = 1.0 / float(m.group(1))
        elif raw.endswith("%"):
            value = float(raw[:-1]) / 100.0
        else:
            value = float(raw)
    except (ValueError, ZeroDivisionError):
        value = float("nan")
    if not math.isfinite(value) or not 0 < value < 1:
        raise EmcsError(
            f"coverage {raw!r} is not a fraction between 0 and 1 (write e.g. 1/25, 0.04 or 4%)",
            param="coverage",
        )
    s = round(1.0 / math.sqrt(value))
    if s < 2 or abs(1.0 / (s * s) - value) > 1e-3 * value:
        raise EmcsError(
            f"coverage {raw!r} is not 1/s^2 for an integer pitch s (e.g. 1/16, 1/25, ..., 1/100)",
            param="coverage",
        )
    return s
