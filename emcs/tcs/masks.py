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
#: elements hashed at a time (two uint64 buffers of 256 KiB: in the L2 cache)
_BLOCK = 1 << 15


def _splitmix64(x: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """SplitMix64 finaliser applied elementwise to a uint64 array (wrapping arithmetic), in place
    (``x`` is overwritten and returned; ``scratch``: a uint64 buffer of its shape, optional)."""
    t = np.empty_like(x) if scratch is None else scratch
    with np.errstate(over="ignore"):
        x += _GOLDEN
        for shift, mult in ((_U64(30), _M1), (_U64(27), _M2)):
            np.right_shift(x, shift, out=t)
            x ^= t
            x *= mult
        np.right_shift(x, _U64(31), out=t)
        x ^= t
    return x


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
    out = np.empty((len(frames), r1 - r0, c1 - c0), dtype=bool)
    jj = np.arange(c0, c1, dtype=_U64)[None, :]
    step = max(1, _BLOCK // max(1, c1 - c0))  # rows per block: the hash's buffers stay in the cache
    z = np.empty((min(step, r1 - r0), c1 - c0), dtype=_U64)
    scratch = np.empty_like(z)
    with np.errstate(over="ignore"):
        for k, b in enumerate(frames):
            if not 0 <= b < B:
                raise ValueError(f"frame index {b} out of range for B={B}")
            base = (_U64(seed) * _U64(1 << 32) + _U64(b)) * _U64(H)
            for a in range(r0, r1, step):
                n = min(step, r1 - a)
                counter = z[:n]
                np.multiply(np.arange(a, a + n, dtype=_U64)[:, None] + base, _U64(W), out=counter)
                counter += jj
                _splitmix64(counter, scratch[:n])
                np.right_shift(counter, _U64(11), out=counter)
                np.less(counter, thr, out=out[k, a - r0 : a - r0 + n])
    return out


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """Bit-pack a boolean (B, H, W) mask for storage (see :func:`unpack_masks`)."""
    return np.packbits(np.asarray(masks, dtype=bool).ravel())


def unpack_masks(packed: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`pack_masks`."""
    n = int(np.prod(shape))
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), count=n)
    return bits.astype(bool).reshape(shape)
