"""Deterministic, versioned binary coding masks for temporal compressive sensing.

The masks C_b (b = 0 .. B-1) of a container are regenerated at decode time
from ``(algorithm, seed, B, H, W, density)``. They must be bit-identical on
every platform and numpy version, so they do not come from a numpy
``Generator`` (whose streams may change between releases). Instead each pixel
is an independent Bernoulli draw computed by a counter-based hash:

    counter = ((seed * 2**32 + b) * H + i) * W + j      (mod 2**64)
    z       = splitmix64(counter)                         (Steele et al. 2014)
    C_b[i, j] = 1  if  (z >> 11) < floor(density * 2**53)  else 0

Being counter-based, any tile ``[b, i0:i1, j0:j1]`` can be generated on its
own, which keeps memory bounded for 4k frames and lets workers regenerate
just the part they decode. ``MASK_ALGORITHM`` names this recipe; a change to
it must get a new name and keep the old one decodable.
"""

from __future__ import annotations

import numpy as np

MASK_ALGORITHM = "splitmix64-bernoulli-v1"
_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser applied elementwise to a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> _U64(30))) * _M1
        z = (z ^ (z >> _U64(27))) * _M2
        return z ^ (z >> _U64(31))


def _threshold(density: float) -> np.uint64:
    if not 0.0 < density < 1.0:
        raise ValueError(f"mask density must be in (0, 1), got {density}")
    return _U64(int(density * (1 << 53)))


def make_masks(
    seed: int,
    B: int,
    H: int,
    W: int,
    density: float = 0.5,
    *,
    frames: range | None = None,
    rows: tuple[int, int] | None = None,
    cols: tuple[int, int] | None = None,
) -> np.ndarray:
    """Generate binary masks C of shape (B, H, W) (or a sub-block of them).

    Parameters
    ----------
    seed : int
        0 <= seed < 2**32.
    B, H, W : int
        Frames per measurement and frame size of the full mask.
    density : float
        Probability of a 1 (fraction of open pixels), 0 < density < 1.
    frames, rows, cols : optional
        Sub-block to generate: a range of frame indices and (start, stop) row
        and column bounds. The values equal the same block of the full mask.

    Returns
    -------
    ndarray of bool
        Shape (len(frames), rows, cols).

    Examples
    --------
    >>> C = make_masks(seed=7, B=4, H=3, W=5)
    >>> C.shape, C.dtype
    ((4, 3, 5), dtype('bool'))
    >>> bool((make_masks(7, 4, 3, 5, rows=(1, 3))== C[:, 1:3]).all())
    True
    """
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    if B < 1 or H < 1 or W < 1:
        raise ValueError(f"B, H, W must be positive, got {(B, H, W)}")
    thr = _threshold(density)
    frames = range(B) if frames is None else frames
    r0, r1 = (0, H) if rows is None else rows
    c0, c1 = (0, W) if cols is None else cols
    if not (0 <= r0 <= r1 <= H and 0 <= c0 <= c1 <= W):
        raise ValueError("mask block out of range")
    ii = np.arange(r0, r1, dtype=_U64)[:, None]
    jj = np.arange(c0, c1, dtype=_U64)[None, :]
    out = np.empty((len(frames), r1 - r0, c1 - c0), dtype=bool)
    with np.errstate(over="ignore"):
        for k, b in enumerate(frames):
            if not 0 <= b < B:
                raise ValueError(f"frame index {b} out of range for B={B}")
            base = (_U64(seed) * _U64(1 << 32) + _U64(b)) * _U64(H)
            counter = (base + ii) * _U64(W) + jj
            out[k] = (_splitmix64(counter) >> _U64(11)) < thr
    return out


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """Bit-pack a boolean (B, H, W) mask for storage (see :func:`unpack_masks`)."""
    return np.packbits(np.asarray(masks, dtype=bool).ravel())


def unpack_masks(packed: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`pack_masks`."""
    n = int(np.prod(shape))
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), count=n)
    return bits.astype(bool).reshape(shape)
